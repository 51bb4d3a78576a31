"""The first round of ratings: after confirming, a page of recent papers to rate, one press each.

Through the Flask app, on both databases: which papers the page asks about, the POST with CSRF
and the rules every vote follows, tokens that must not work, and the next digest, which a like
of the first round moves.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from newsletter.core import tokens
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    FeedbackVote,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.delivery import service as sending
from newsletter.editions.readers import load_reader
from newsletter.matching import feedback
from newsletter.matching.combine import ADMIT, boundary_margin
from tests import factories as f
from tests import test_web_e2e as e2e
from tests.html_forms import form_fields

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TITLE = re.compile(r'<h2 id="title-(\d+)">(?:<a [^>]*>)?([^<]+)')
# Stored scores of each topic's papers: chances under the threshold (1.0), keyword scores above.
SCORES = (0.4, 0.45, 0.6, 1.0, 1.2, 2.0, 3.0, 4.0)
NEAREST = {"0.4", "0.45", "0.6", "1.0", "1.2"}  # the five nearest the boundary
ADA, BOB = "ada@example.org", "bob@example.org"


@pytest.fixture
def listing(app):
    """Three topics of eight papers each, scored from the boundary to sure; Ada reads two."""
    with app.transaction() as s:
        topics = {slug: f.topic(s, slug) for slug in ("llm", "rl", "bio")}
        for slug, topic in topics.items():
            for n, score in enumerate(SCORES):
                day = f.DAY - timedelta(days=n % 3)
                f.paper(s, f"{slug} paper at {score}", day=day, topics={topic: score})
        f.paper(s, "A paper no topic took", day=f.DAY)
        ada = f.subscriber(s, ADA, [topics["llm"], topics["rl"]])
        bob = f.subscriber(s, BOB, [topics["bio"]])
        return {"ada": ada.id, "bob": bob.id, **{slug: t.id for slug, t in topics.items()}}


@pytest.fixture
def client(app):
    return f.web_app(app).test_client()


def _start(app, sid):
    with app.sessions() as s:
        key = s.get(Subscriber, sid).link_key
    return f"/start/{tokens.make_token(app.settings, 'start', sid, key)}"


def _shown(client, path):
    """Return (paper id, title) of each paper the page asks about, in its order."""
    page = client.get(path)
    assert page.status_code == 200
    found = TITLE.findall(page.get_data(as_text=True))
    return [(int(pid), html.unescape(title)) for pid, title in found]


def _paper_id(app, title):
    with app.sessions() as s:
        return s.scalar(select(Paper.id).where(Paper.title == title))


def _votes(app):
    with app.sessions() as s:
        return {(v.subscriber_id, v.paper_id): v.vote for v in s.scalars(select(FeedbackVote))}


def _press(client, path, paper_id, vote, **fields):
    csrf = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    data = {"csrf_token": csrf, "paper": str(paper_id), "vote": vote, **fields}
    return client.post(path, data=data)


def test_the_page_asks_about_ten_papers_of_the_readers_topics_nearest_their_boundary(
    app, client, listing
):
    path = _start(app, listing["ada"])
    shown = _shown(client, path)
    titles = [title for _, title in shown]
    assert len(titles) == 10
    llm = [t for t in titles if t.startswith("llm ")]
    rl = [t for t in titles if t.startswith("rl ")]
    assert len(llm) == len(rl) == 5  # spread over both topics, never another's
    assert {t.rsplit(" ", 1)[1] for t in llm} == {t.rsplit(" ", 1)[1] for t in rl} == NEAREST
    # In turn: one topic's paper, then the other's.
    assert all(a.split()[0] != b.split()[0] for a, b in zip(titles, titles[1:], strict=False))
    assert _shown(client, path) == shown  # a reload asks about the same papers
    assert _votes(app) == {}  # showing them voted nothing


def test_papers_sent_or_voted_on_before_are_not_asked_again(app, client, listing):
    sid = listing["ada"]
    voted, sent = _paper_id(app, "llm paper at 0.4"), _paper_id(app, "rl paper at 0.4")
    with app.transaction() as s:
        yesterday = utcnow() - timedelta(days=1)
        feedback.record_vote(sid, voted, feedback.LESS, session=s, now=yesterday)
        edition = Edition(listing_date=f.DAY)
        s.add(edition)
        s.flush()
        s.add(Delivery(edition_id=edition.id, subscriber_id=sid, status=DeliveryStatus.SENT,
                       paper_ids=[sent]))  # fmt: skip
    titles = {title for _, title in _shown(client, _start(app, sid))}
    assert len(titles) == 10
    assert "llm paper at 0.4" not in titles and "rl paper at 0.4" not in titles
    assert {"llm paper at 2.0", "rl paper at 2.0"} <= titles  # the next nearest come instead


def test_a_press_records_a_vote_and_a_second_press_changes_it_never_doubles_it(
    app, client, listing
):
    sid, path = listing["ada"], _start(app, listing["ada"])
    before = _shown(client, path)
    paper_id = before[0][0]
    done = _press(client, path, paper_id, "more")
    assert done.status_code == 303
    assert done.headers["Location"] == f"{path}#paper-{paper_id}"
    assert _votes(app) == {(sid, paper_id): feedback.MORE}
    page = client.get(path).get_data(as_text=True)
    assert "Noted: more like this" in page and page.count('aria-pressed="true"') == 1
    assert _shown(client, path) == before  # the paper stays on the page, marked
    assert _press(client, path, paper_id, "more").status_code == 303
    assert _press(client, path, paper_id, "less").status_code == 303
    assert _votes(app) == {(sid, paper_id): feedback.LESS}
    assert "Noted: less like this" in client.get(path).get_data(as_text=True)
    # The page's own form, as a browser sends it with the button pressed: still one vote.
    fields = form_fields(client.get(path).get_data(as_text=True), "/start/")
    assert fields["paper"] == str(paper_id)
    assert client.post(path, data={**fields, "vote": "more"}).status_code == 303
    assert _votes(app) == {(sid, paper_id): feedback.MORE}


def test_a_post_without_csrf_token_is_refused_and_writes_nothing(app, client, listing):
    path = _start(app, listing["ada"])
    paper_id = _shown(client, path)[0][0]
    refused = client.post(path, data={"paper": str(paper_id), "vote": "more"})
    assert refused.status_code == 400 and "could not be verified" in refused.get_data(as_text=True)
    forged = client.post(path, data={"paper": str(paper_id), "vote": "more", "csrf_token": "x"})
    assert forged.status_code == 400
    assert _votes(app) == {}


def test_forged_other_purpose_and_dead_tokens_write_nothing(app, client, listing):
    ada, bob = listing["ada"], listing["bob"]
    path = _start(app, ada)
    paper_id = _shown(client, path)[0][0]
    with app.sessions() as s:
        bob_key = s.get(Subscriber, bob).link_key
    token = path.rsplit("/", 1)[1]
    forged = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # tampered signature
        tokens.make_token(app.settings, "manage", ada, _key(app, ada)),  # another purpose
    ]
    for bad in forged:
        assert client.get(f"/start/{bad}").status_code == 400
        data = {"paper": paper_id, "vote": "more", "csrf_token": _csrf(client)}
        assert client.post(f"/start/{bad}", data=data).status_code == 400
    # Signed, but Ada's id with Bob's link key: no such reader.
    mixed = f"/start/{tokens.make_token(app.settings, 'start', ada, bob_key)}"
    assert client.get(mixed).status_code == 404
    data = {"paper": paper_id, "vote": "more", "csrf_token": _csrf(client)}
    assert client.post(mixed, data=data).status_code == 404
    assert _votes(app) == {}
    # Bob's own link cannot vote on a paper of Ada's page: his page does not ask about it.
    bob_path = _start(app, bob)
    bobs = {pid for pid, _ in _shown(client, bob_path)}
    adas_only = next(pid for pid, _ in _shown(client, path) if pid not in bobs)
    refused = _press(client, bob_path, adas_only, "more")
    assert refused.status_code == 400 and "Please reload the page" in refused.get_data(as_text=True)
    assert _votes(app) == {}
    # A deleted reader's link works for no one, even after their id's row is gone.
    with app.transaction() as s:
        s.delete(s.get(Subscriber, ada))
    assert client.get(path).status_code == 404
    data = {"paper": paper_id, "vote": "more", "csrf_token": _csrf(client)}
    assert client.post(path, data=data).status_code == 404 and _votes(app) == {}


def _key(app, sid):
    with app.sessions() as s:
        return s.get(Subscriber, sid).link_key


def _csrf(client):
    return CSRF.search(client.get("/").get_data(as_text=True)).group(1)


def test_only_the_pages_papers_and_its_two_buttons_are_taken(app, client, listing):
    path = _start(app, listing["ada"])
    surest = _paper_id(app, "llm paper at 4.0")  # the reader's topic, but sure: not asked
    assert _press(client, path, surest, "more").status_code == 400
    shown = _shown(client, path)[0][0]
    for vote, paper in [("maybe", shown), ("more", "１"), ("more", ""), ("more", "-1")]:
        assert _press(client, path, paper, vote).status_code == 400
    assert _votes(app) == {}


def test_votes_follow_the_vote_links_rules(app, client, listing):
    sid, path = listing["ada"], _start(app, listing["ada"])
    first, second = [pid for pid, _ in _shown(client, path)][:2]
    limit = app.settings.votes_per_link_per_hour
    for n in range(limit):
        assert _press(client, path, first, "more" if n % 2 else "less").status_code == 303
    limited = _press(client, path, first, "more")
    assert limited.status_code == 429 and limited.headers["Retry-After"]
    # The paper's vote link from a digest counts against the same limit.
    link = tokens.feedback_url(app.settings, sid, _key(app, sid), first)
    assert client.post(link.split("news.example.test", 1)[1] + "/more").status_code == 429
    assert _votes(app) == {(sid, first): feedback.MORE}  # the last counted press
    # Votes count only from current subscribers.
    csrf = _csrf(client)
    with app.transaction() as s:
        s.get(Subscriber, sid).status = SubscriberStatus.UNSUBSCRIBED
    assert client.get(path).status_code == 403
    data = {"csrf_token": csrf, "paper": str(second), "vote": "more"}
    assert client.post(path, data=data).status_code == 403
    assert _votes(app) == {(sid, first): feedback.MORE}


def test_a_reader_without_topics_gets_a_spread_of_recent_papers(app, client, listing):
    with app.transaction() as s:
        sid = f.subscriber(s, "new@example.org", []).id
    titles = [title for _, title in _shown(client, _start(app, sid))]
    assert len(titles) == 10 and len(set(titles)) == 10
    assert {t.split()[0] for t in titles} == {"llm", "rl", "bio"}  # every topic, in turn
    assert all(t.rsplit(" ", 1)[1] in NEAREST for t in titles)


def test_the_spread_fills_a_round_its_topics_leave_short(app, client):
    with app.transaction() as s:
        thin, other = f.topic(s, "thin"), f.topic(s, "other")
        f.paper(s, "The thin topic's one paper", topics={thin: 1.5})
        for n in range(12):
            f.paper(s, f"Other paper {n}", topics={other: 2.0 + n})
        f.paper(s, "Nobody's paper")
        sid = f.subscriber(s, "thin@example.org", [thin]).id
    titles = [title for _, title in _shown(client, _start(app, sid))]
    assert titles[0] == "The thin topic's one paper" and len(titles) == 10


def test_the_confirmed_page_offers_the_first_round(app, client, listing):
    page = client.get("/")
    csrf = CSRF.search(page.get_data(as_text=True)).group(1)
    data = {"email": "new@example.org", "frequency": "daily", "hour": "8", "timezone": "UTC",
            "topics": ["llm"], "csrf_token": csrf}  # fmt: skip
    assert client.post("/", data=data).status_code == 303
    message = _last_mail(app)
    link = re.search(r"https://news\.example\.test(/confirm/\S+)", message).group(1)
    fields = form_fields(client.get(link).get_data(as_text=True), "/confirm/")
    confirmed = client.get(client.post(link, data=fields).headers["Location"])
    body = confirmed.get_data(as_text=True)
    assert "Your subscription is confirmed" in body
    start = re.search(r'href="(/start/[^"]+)">rate a few papers to start', body).group(1)
    titles = [title for _, title in _shown(client, start)]
    # Its one topic's papers, nearest the boundary first, then the spread fills the round.
    assert titles[:8] == [f"llm paper at {score}" for score in SCORES]
    assert len(titles) == 10 and not titles[8].startswith("llm ")
    preferences = client.get(re.search(r'href="(/manage/[^"]+)">Done', client.get(start)
                                       .get_data(as_text=True)).group(1))  # fmt: skip
    assert "rate a few papers" not in preferences.get_data(as_text=True)  # offered once


def _last_mail(app):
    import email
    import email.policy
    import mailbox

    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    (message,) = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    return message.get_body(("plain",)).get_content()


NEXT_DAY = f.DAY + timedelta(days=1)


def test_a_like_in_the_first_round_lifts_papers_like_it_in_the_next_digest(app, client):
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        graphs = f.paper(s, "Message passing graph neural networks", topics={ml: 0.5})
        graphs.abstract = "Graph neural networks pass messages between the nodes of graphs."
        for n in range(3):
            f.paper(s, f"Unrelated paper {n}", topics={ml: 3.0})
        ada = f.subscriber(s, ADA, [ml]).id
        f.subscriber(s, BOB, [ml])
    path = _start(app, ada)
    assert graphs.id in {pid for pid, _ in _shown(client, path)}
    assert _press(client, path, graphs.id, "more").status_code == 303
    with app.transaction() as s:  # the next listing: the day's order puts the robots first
        robots = f.paper(s, "Legged robots walk", day=NEXT_DAY, topics={ml: 2.0}, upvotes=90)
        robots.abstract = "A robot policy walks legged robots over rough terrain."
        similar = f.paper(s, "Graph transformers", day=NEXT_DAY, topics={ml: 2.0}, upvotes=10)
        similar.abstract = "Graph neural networks pass messages between graph nodes."
    assert _digest(app, BOB) == ["Legged robots walk", "Graph transformers"]
    assert _digest(app, ADA) == ["Graph transformers", "Legged robots walk"]


def test_a_paper_rated_in_the_first_round_does_not_come_again_in_a_digest(app, client):
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        subjects = ("Robots walk on legs", "Proteins fold in cells", "Galaxies merge slowly",
                    "Markets clear at prices")  # fmt: skip
        papers = [f.paper(s, title, topics={ml: 0.6 + n}) for n, title in enumerate(subjects)]
        for paper in papers:
            paper.abstract = f"{paper.title}: a study of its own kind."
        rated = [p.id for p in papers]
        ada = f.subscriber(s, ADA, [ml]).id
        f.subscriber(s, BOB, [ml])
    path = _start(app, ada)
    shown = [pid for pid, _ in _shown(client, path)]
    assert set(shown) == set(rated)
    assert _press(client, path, shown[0], "more").status_code == 303
    assert _press(client, path, shown[1], "less").status_code == 303
    titles = _digest(app, ADA, f.DAY)  # the day's edition, composed after the round
    assert len(titles) == 2 and len(_digest(app, BOB, f.DAY)) == 4
    with app.sessions() as s:
        gone = {s.get(Paper, pid).title for pid in shown[:2]}
    assert gone.isdisjoint(titles)  # seen and rated: not sent again


def _digest(app, address, day=NEXT_DAY):
    selection = sending.make_selection(app, Edition(listing_date=day, kind="daily"))
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
        reader = load_reader(sub, session=s)
    return [p.title for p in selection.papers_for(reader)]


def test_the_boundary_margin_meets_at_the_threshold_and_grows_inward():
    assert boundary_margin(ADMIT) == 0.0
    assert boundary_margin(0.999) == pytest.approx(1.0, abs=0.01)
    assert boundary_margin(1.0) == 1.0 < boundary_margin(1.5) < boundary_margin(3.0)
    assert boundary_margin(2.0, threshold=2.0) == 1.0 and boundary_margin(0.2, 0.3) == 0.0


def test_each_paper_shows_its_title_authors_and_abstract_without_latex(app, client, listing):
    with app.transaction() as s:
        paper = s.get(Paper, _paper_id(app, "llm paper at 0.4"))
        paper.title = r"Bounds for $\alpha$-divergences in $\mathbb{R}^n$"
        paper.abstract = r"We show $O(n^2)$ \textbf{bold} results. " + "Long words here. " * 60
        paper.authors = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"]
    page = client.get(_start(app, listing["ada"])).get_data(as_text=True)
    assert "Bounds for α-divergences in ℝⁿ" in page and "$" not in page
    assert "We show O(n²) bold results." in page and "textbf" not in page
    assert "Ada Lovelace" in page and page.count("Long words here.") < 60  # shortened


def test_no_paper_stored_gives_an_empty_round_with_the_way_on(app, client):
    with app.transaction() as s:
        sid = f.subscriber(s, ADA, []).id
    page = client.get(_start(app, sid)).get_data(as_text=True)
    assert "no recent papers to rate yet" in page and 'href="/manage/' in page
    with app.sessions() as s:
        assert s.scalar(select(func.count(FeedbackVote.id))) == 0


# --- in a real browser ----------------------------------------------------------------------


@pytest.fixture
def chromium():
    if not e2e.CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(e2e.CHROMIUM), args=e2e.CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_in_a_browser_confirm_then_rate_the_first_round(app, listing, chromium):
    with e2e._served(app) as site:
        # Without scripts: every press is a form's POST and a redirect back.
        page = chromium.new_context(java_script_enabled=False).new_page()
        page.goto(site + "/")
        page.get_by_label("Email address").fill("new@example.org")
        page.get_by_label("Llm").check()
        page.get_by_label("Rl").check()
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        (confirmation,) = e2e._messages(app)
        page.goto(e2e._link(confirmation, "confirm"))
        page.get_by_role("button", name="Confirm my subscription").click()
        page.get_by_role("link", name="rate a few papers to start").click()
        page.get_by_role("heading", name="Rate a few papers to start").wait_for()
        cards = page.locator("article.rate")
        assert cards.count() == 10
        ids = [int(cards.nth(n).get_attribute("id").removeprefix("paper-")) for n in range(3)]
        presses = [(ids[0], "More like this"), (ids[1], "Less like this"),
                   (ids[2], "More like this"), (ids[2], "Less like this")]  # fmt: skip
        for paper_id, button in presses:
            card = page.locator(f"#paper-{paper_id}")
            card.get_by_role("button", name=button).click()
            page.locator(f"#paper-{paper_id}").get_by_role("status").filter(
                has_text=f"Noted: {button.lower()}"
            ).wait_for()
        e2e._shoot(page, "first-round")
        assert page.locator("article.rate").count() == 10  # the same page, papers marked
        page.get_by_role("link", name="Done").click()
        page.get_by_role("heading", name="Your preferences").wait_for()
        page.context.close()
    with app.sessions() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == "new@example.org"))
    assert _votes(app) == {
        (sid, ids[0]): feedback.MORE,
        (sid, ids[1]): feedback.LESS,
        (sid, ids[2]): feedback.LESS,  # changed, not doubled
    }
