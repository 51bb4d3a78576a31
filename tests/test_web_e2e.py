"""End to end in a real browser: subscribe, confirm by email, change topics, get the digest,
unsubscribe with the digest's RFC 8058 one-click POST; vote on papers and get digests
ranked by the votes; upload one's own papers and get papers like them, never them.

Set NEWSLETTER_SCREENSHOTS=DIR to also save full-page screenshots at 375 and 1200 px.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
import os
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from newsletter.core import tokens
from newsletter.core.models import Paper, Subscriber, SubscriberStatus
from newsletter.delivery import service as sending
from newsletter.matching.embeddings import load_encoder
from newsletter.matching.matches import embed_papers
from newsletter.web import create_app
from tests import factories as f
from tests import test_seeds as seeds_test

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADDRESS = "ada@example.org"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@contextmanager
def _served(app) -> Iterator[str]:
    """Serve the web app on 127.0.0.1 in a thread; base_url is its real address."""
    holder: dict[str, object] = {}
    server = make_server(
        "127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True
    )
    base = f"http://127.0.0.1:{server.server_port}"
    app.settings = dataclasses.replace(app.settings, base_url=base)
    holder["app"] = create_app(app.settings, app=app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def site(app) -> Iterator[str]:
    """The served app with two topics and one paper in each."""
    with _served(app) as base:
        with app.transaction() as s:
            llm = f.topic(s, "llm")
            llm.description = "Large language models."
            rl = f.topic(s, "rl")
            rl.description = "Reinforcement learning."
            f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
            f.paper(s, "Policy gradients with a twist", topics={rl: 1.5}, upvotes=25)
        yield base


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _messages(app) -> list[email.message.EmailMessage]:
    """Return the outbox, once the web's mail queue has sent what it was given."""
    assert f.mail_queue_emptied(app)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def _link(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"(http://127\.0\.0\.1:\d+/{path}/\S+)", text).group(1)


def _in_thread(func, *args):
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(func(*args)))
    worker.start()
    worker.join()
    assert result, "the call in the worker thread failed"
    return result[0]


def _shoot(page, name: str) -> None:
    folder = os.environ.get("NEWSLETTER_SCREENSHOTS")
    if not folder:
        return
    for width in (375, 1200):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)


def test_subscribe_confirm_change_topics_receive_and_unsubscribe(site, browser, app):
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp_errors.append(m.text))

    page.goto(site + "/")
    # The browser's time zone is preselected by the script, which the CSP allows.
    assert page.locator("#field-timezone").input_value() == "Asia/Tokyo"
    _shoot(page, "subscribe")
    page.get_by_role("button", name="Subscribe").click()
    assert page.locator("#error-summary").is_visible()  # nothing filled in: errors, not a crash
    _shoot(page, "subscribe-errors")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("Llm").check()
    page.get_by_label("Delivery time").select_option("7")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    _shoot(page, "check-inbox")

    (confirmation,) = _messages(app)
    assert confirmation["To"].addresses[0].addr_spec == ADDRESS
    # The link's page shows the sign-up's choices; only pressing its button confirms.
    page.goto(_link(confirmation, "confirm"))
    assert page.get_by_label("Name").input_value() == "Ada"
    assert page.get_by_label("Llm").is_checked() and not page.get_by_label("Rl").is_checked()
    _shoot(page, "confirm")
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_text("Your subscription is confirmed").wait_for()
    _shoot(page, "confirmed")

    page.get_by_label("Llm").uncheck()
    page.get_by_label("Rl").check()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_text("Your preferences are saved.").wait_for()
    assert page.get_by_label("Rl").is_checked() and not page.get_by_label("Llm").is_checked()
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        assert (sub.status, sub.timezone, sub.delivery_hour) == (
            SubscriberStatus.CONFIRMED,
            "Asia/Tokyo",
            7,
        )
        assert sub.consent["user_agent"] and sub.consent["ip"] == "127.0.0.1"

    _in_thread(sending.send, app, f.DAY)  # Playwright's loop runs in this thread
    digest = next(m for m in _messages(app) if m["List-Unsubscribe"])
    body = digest.get_body(("plain",)).get_content()
    assert "Policy gradients with a twist" in body and "Scaling laws" not in body

    page.goto(site + f"/archive/{f.DAY.isoformat()}")
    assert "Scaling laws for tiny models" in page.content() and ADDRESS not in page.content()
    _shoot(page, "archive-edition")

    url = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", digest["List-Unsubscribe"]).group(1)
    page.goto(url)
    _shoot(page, "unsubscribe")
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request) as response:  # as a mail provider would: no cookies
        assert response.status == 200 and response.geturl() == url  # no redirect
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        assert sub.status == SubscriberStatus.UNSUBSCRIBED
    page.goto(url)
    assert "You are unsubscribed" in page.content()
    _shoot(page, "unsubscribed")
    assert csp_errors == []
    context.close()


def test_a_link_scanner_running_scripts_confirms_nothing(site, browser, app):
    """A mail filter opens the link in a headless browser and lets its scripts run."""
    _in_thread(_sign_up_over_http, site, ADDRESS)
    (confirmation,) = _messages(app)
    link = _link(confirmation, "confirm")
    scanner = browser.new_context(java_script_enabled=True)
    page = scanner.new_page()
    page.goto(link, wait_until="load")
    page.wait_for_load_state("networkidle")  # whatever a script would send, it has sent
    assert page.url == link and _status(app) == SubscriberStatus.PENDING
    for other in (scanner.new_page(), scanner.new_page()):  # opened again, and again
        other.goto(link, wait_until="networkidle")
    assert _status(app) == SubscriberStatus.PENDING
    scanner.close()

    person = browser.new_context().new_page()
    person.goto(link)
    person.get_by_role("button", name="Confirm my subscription").click()
    person.get_by_text("Your subscription is confirmed").wait_for()
    assert _status(app) == SubscriberStatus.CONFIRMED

    # Afterwards the confirm link leads nowhere: no manage page, no token of one.
    later = browser.new_context().new_page()
    response = later.goto(link)
    assert response.status == 200 and later.url == link
    assert "Already confirmed" in later.content() and "/manage/" not in later.content()
    with urllib.request.urlopen(link) as plain:  # without a browser: not a redirect either
        assert plain.status == 200 and plain.geturl() == link
        assert b"/manage/" not in plain.read()
    later.context.close()
    person.context.close()


def _sign_up_over_http(base: str, address: str) -> None:
    """Post the sign-up form as a browser without JavaScript would."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(base + "/") as response:
        page = response.read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode(
        {"email": address, "name": "Ada", "topics": "llm", "frequency": "daily", "hour": "8",
         "timezone": "UTC", "csrf_token": csrf}
    ).encode()  # fmt: skip
    with opener.open(base + "/", data=body) as response:
        assert response.status == 200 and response.geturl().endswith("/subscribed")


def _status(app) -> SubscriberStatus:
    with app.sessions() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == ADDRESS))


# Three listing days of one topic. Each day has a robot-learning paper (the day's most upvoted),
# a graph-learning paper (the least upvoted) and three papers on unrelated subjects.
ROBOTS = [
    ("Reinforcement learning for legged robot locomotion",
     "A robot policy trained with reinforcement learning walks legged robots over rough terrain."),
    ("Sim-to-real transfer of robot grasping policies",
     "Robot grasping policies trained with reinforcement learning in simulation transfer to "
     "real robots."),
    ("Reward shaping for robot manipulation",
     "Reward shaping speeds reinforcement learning of robot manipulation policies on real robots."),
]  # fmt: skip
GRAPHS = [
    ("Message passing graph neural networks for molecules",
     "Graph neural networks pass messages between the nodes of molecular graphs."),
    ("Graph transformers on citation graphs",
     "Graph transformers with node attention scale message passing to large citation graphs."),
    ("Graph neural networks for traffic on road graphs",
     "Message passing between the nodes of road graphs with graph neural networks predicts "
     "traffic."),
]  # fmt: skip
OTHERS = [
    ("Compiler autotuning with learned cost models",
     "A learned cost model picks loop tiling and unrolling for tensor compilers."),
    ("Precipitation nowcasting from radar sequences",
     "Rainfall in the next hour is predicted from sequences of weather radar images."),
    ("Speech recognition for low-resource languages",
     "Acoustic models and pronunciation lexicons transcribe speech with little audio."),
    ("Fair allocation of kidney exchanges",
     "An auction mechanism matches donors and patients fairly across hospitals."),
    ("Sparse solvers for sea ice simulation",
     "Preconditioned sparse linear solvers speed up climate simulations of sea ice."),
    ("Counting bird species from citizen photos",
     "Volunteers' photographs estimate bird populations with detection and counting."),
    ("Lossless compression of genome reads",
     "Entropy coding of DNA sequencing reads shrinks genome archives."),
    ("Type inference for dynamic scripting languages",
     "Static analysis infers the types of variables in untyped scripts."),
    ("Quantum error correction with surface codes",
     "Decoders for surface codes correct qubit errors in quantum memories."),
]  # fmt: skip
DAYS = [f.DAY + timedelta(days=n) for n in range(3)]
VOTER, QUIET = "voter@example.org", "quiet@example.org"


@pytest.fixture
def voting_site(app) -> Iterator[str]:
    """The served app with three days of papers and two readers of the same topic."""
    with _served(app) as base:
        with app.transaction() as s:
            ml = f.topic(s, "ml")
            for n, day in enumerate(DAYS):
                others = zip(OTHERS[3 * n : 3 * n + 3], (70, 50, 30), strict=True)
                day_papers = [(ROBOTS[n], 90), *others, (GRAPHS[n], 10)]
                for (title, abstract), upvotes in day_papers:
                    paper = f.paper(s, title, day=day, topics={ml: 2.0}, upvotes=upvotes)
                    paper.abstract = abstract
            f.subscriber(s, VOTER, [ml])
            f.subscriber(s, QUIET, [ml])
        yield base


def _send_day(app, day) -> dict[str, email.message.EmailMessage]:
    """Send one listing date's digests; return the new digest of each reader by address."""
    before = {m["Message-ID"] for m in _messages(app)}
    _in_thread(sending.send, app, day)  # Playwright's loop runs in this thread
    return {
        m["To"].addresses[0].addr_spec: m
        for m in _messages(app)
        if m["Message-ID"] not in before and m["List-Unsubscribe"]
    }


def _titles(message) -> list[str]:
    """Return the digest's paper titles in the order it shows them."""
    text = message.get_body(("plain",)).get_content()
    return re.findall(r"^\d+\. (.+)$", text, re.MULTILINE)


def _vote_in_browser(page, message, title: str, button: str) -> None:
    """Open the digest's HTML, follow one paper's vote link, then press the page's button."""
    page.set_content(message.get_body(("html",)).get_content())
    position = _titles(message).index(title)
    page.get_by_role("link", name=button, exact=True).nth(position).click()
    page.get_by_text(title).wait_for()  # the page names the paper; nothing is voted yet
    page.get_by_role("button", name=button).click()
    page.get_by_role("heading", name=f"Noted: {button.lower()}").wait_for()


def test_votes_in_the_browser_rank_the_next_digests(voting_site, browser, app):
    page = browser.new_context().new_page()
    robots, graphs = [t for t, _ in ROBOTS], [t for t, _ in GRAPHS]

    first = _send_day(app, DAYS[0])
    assert _titles(first[VOTER]) == _titles(first[QUIET])  # no votes yet: the day's order
    assert _titles(first[VOTER])[0] == robots[0]
    _vote_in_browser(page, first[VOTER], robots[0], "Less like this")

    second = _send_day(app, DAYS[1])
    quiet, voter = _titles(second[QUIET]), _titles(second[VOTER])
    assert quiet[0] == robots[1]  # without votes the robot paper leads the day
    assert robots[1] not in voter or voter.index(robots[1]) > quiet.index(robots[1])
    assert voter[0] != robots[1]
    _vote_in_browser(page, second[VOTER], graphs[1], "More like this")

    third = _send_day(app, DAYS[2])
    quiet, voter = _titles(third[QUIET]), _titles(third[VOTER])
    assert quiet[-1] == graphs[2]  # without votes the graph paper comes last
    assert voter.index(graphs[2]) < quiet.index(graphs[2])
    assert robots[2] not in voter or voter.index(robots[2]) > quiet.index(robots[2])
    page.context.close()


@pytest.fixture
def seeded_site(app) -> Iterator[str]:
    """The served app, matching by meaning, with a day of real quantum-physics and mathematics
    papers in one topic (the quantum paper of the reader's library among them) and a reader."""
    app.settings = dataclasses.replace(app.settings, match_neighbours=True)
    with _served(app) as base:
        with app.transaction() as s:
            physics = f.topic(s, "physics")
            for p in seeds_test.QUANTUM + seeds_test.MATHS:
                seeds_test._paper(s, physics, title=p["title"], abstract=p["abstract"],
                                  arxiv_id=p["key"])  # fmt: skip
            own = seeds_test._csl_paper()
            seeds_test._paper(s, physics, title=own["title"], abstract=own["abstract"],
                              arxiv_id="2410.00917")  # fmt: skip
            embed_papers(session=s, paper_ids=s.scalars(select(Paper.id)), encoder=load_encoder())
            f.subscriber(s, ADDRESS, [physics], max_papers=5)
        yield base


def test_a_reader_seeded_with_their_papers_gets_papers_like_them_never_their_own(
    seeded_site, browser, app
):
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        token = tokens.make_token(app.settings, "manage", sub.id, sub.link_key)
    page = browser.new_context().new_page()
    page.goto(f"{seeded_site}/manage/{token}")
    page.get_by_role("button", name="Upload my papers").click()
    page.locator("#error-summary").wait_for()  # no file chosen: a message, not a crash
    page.set_input_files("#field-library-file", str(seeds_test.LIBRARIES / "zotero_quantum.json"))
    page.get_by_role("button", name="Upload my papers").click()
    page.get_by_text("Your papers are saved").wait_for()
    own = seeds_test._csl_paper()["title"]
    assert page.get_by_text(own).is_visible()
    _shoot(page, "own-papers")

    digest = _send_day(app, f.DAY)[ADDRESS]
    text = " ".join(digest.get_body(("plain",)).get_content().split())
    assert own not in text  # their own paper, though the day's closest to it, never comes
    quantum, maths = seeds_test._quantum_shown(text)
    assert quantum >= 3 and quantum + maths == 5  # by title alone, mathematics came first
    page.context.close()
