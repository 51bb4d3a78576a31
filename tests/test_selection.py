"""One selection: the preview, the test copy, planning and the send give a reader the same papers.

Every path is taken as an admin takes it (the CLI), and every digest is read back as the reader
gets it: the preview's HTML file and text, and the messages in the Maildir outbox.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import mailbox
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from newsletter.core.models import Delivery, Edition, EditionKind, Frequency, Paper
from newsletter.editions.schedule import ScheduleConfig
from newsletter.matching import feedback
from newsletter.runners import tick
from tests import factories as f
from tests.factories import dump_database

DAY1, DAY2 = f.DAY, f.DAY + timedelta(days=1)
ROBOTS = [
    ("Reinforcement learning for legged robot locomotion",
     "A policy trained with reinforcement learning walks legged robots over rough terrain."),
    ("Sim-to-real reinforcement learning for robot grasping",
     "Robot grasping policies learned with reinforcement learning in simulation transfer."),
    ("Reward shaping for robot arms with reinforcement learning",
     "Reward shaping speeds reinforcement learning of robot manipulation policies."),
]  # fmt: skip
GRAPHS = [
    ("Message passing graph neural networks for molecules",
     "We train graph neural networks with message passing over molecular graphs and atoms."),
    ("Scalable graph transformers on citation graphs",
     "Graph transformers with node attention scale message passing to large citation graphs."),
    ("Graph neural networks for traffic forecasting",
     "Node embeddings and message passing on road network graphs forecast traffic."),
]  # fmt: skip
FOLLOWED = "Protein folding by diffusion"
# Five authors: a card names three, so hers would be cut off if she kept her place.
FOLLOWED_AUTHORS = ["Ann Lee", "Bo Chen", "Cy Park", "Dee Roe", "García, María"]
MUTED = "Graph neural networks for traffic forecasting"


@pytest.fixture
def world(app, run):
    """Two days of robot and graph papers on one topic, a paper by a followed author outside
    it on the second, and a reader with votes on the first day, a followed author and a muted
    word."""
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        bio = f.topic(s, "bio")
        f.topic(s, "astro")  # no paper matches it
        voted = []
        for day in (DAY1, DAY2):
            for n, (title, abstract) in enumerate(ROBOTS + GRAPHS):
                # Robots are the most upvoted: first for a reader without votes.
                upvotes = 60 - n if (title, abstract) in ROBOTS else 20 - n
                paper = f.paper(s, _dated(title, day), day=day, topics={ml: 2.0}, upvotes=upvotes)
                paper.abstract = abstract
                if day == DAY1 and (title, abstract) in ROBOTS[:2]:
                    voted.append(paper.id)
        paper = f.paper(s, _dated(FOLLOWED, DAY2), day=DAY2, topics={bio: 2.0}, upvotes=3)
        paper.authors, paper.abstract = FOLLOWED_AUTHORS, "Proteins fold by denoising diffusion."
        ada = f.subscriber(s, "ada@example.org", [ml], max_papers=5)
        f.subscriber(s, "bob@example.org", [ml], max_papers=5)
        for paper_id in voted:
            feedback.record_vote(ada.id, paper_id, feedback.LESS, session=s)
    for args in (["--follow-authors", "María García"], ["--mute", "traffic"]):
        result = run("subscribers", "edit", "ada@example.org", *args)
        assert result.exit_code == 0, result.output


def _dated(title: str, day) -> str:
    return f"{title} ({day:%d %b})"


def _text_titles(text: str) -> list[str]:
    return re.findall(r"^\d+\. (.+)$", text, re.MULTILINE)


def _html_titles(document: str) -> list[str]:
    found = re.findall(r'class="title"[^>]*>(?:<a [^>]*>)?([^<]+)<', document)
    return [html.unescape(t) for t in found]


def _outbox(app) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def _digests_to(app, address: str) -> list[email.message.EmailMessage]:
    return [m for m in _outbox(app) if m["To"].addresses[0].addr_spec == address]


def _parts(message) -> tuple[list[str], list[str]]:
    text = message.get_body(("plain",)).get_content()
    return _text_titles(text), _html_titles(message.get_body(("html",)).get_content())


def test_preview_test_copy_and_send_hold_the_same_papers_in_the_same_order(
    app, run, world, tmp_path
):
    day = DAY2.isoformat()
    page = tmp_path / "ada.html"
    assert run("preview", "ada@example.org", "--date", day, "--output", str(page)).exit_code == 0
    shown = run("preview", "ada@example.org", "--date", day)
    assert shown.exit_code == 0, shown.output
    copy = run("send", "--date", day, "--to", "ada@example.org")
    assert copy.exit_code == 0, copy.output
    (test_copy,) = _digests_to(app, "ada@example.org")
    sent = run("send", "--date", day, "--yes")
    assert sent.exit_code == 0, sent.output
    (digest,) = [
        m for m in _digests_to(app, "ada@example.org") if m["Message-ID"] != test_copy["Message-ID"]
    ]

    preview_html = _html_titles(page.read_text(encoding="utf-8"))
    assert _parts(digest) == (preview_html, preview_html)
    assert _parts(test_copy) == (preview_html, preview_html)
    assert _text_titles(shown.stdout) == preview_html
    # What the reader's signals did, so the lists compared are the shaped ones.
    assert preview_html[0] == _dated(FOLLOWED, DAY2)  # the followed author's paper first
    assert _dated(MUTED, DAY2) not in preview_html  # the muted word's paper never
    assert preview_html[1] == _dated(GRAPHS[0][0], DAY2)  # "less like this": robots sank


def test_a_reader_without_signals_gets_the_days_order_everywhere(app, run, world, tmp_path):
    day = DAY2.isoformat()
    page = tmp_path / "bob.html"
    assert run("preview", "bob@example.org", "--date", day, "--output", str(page)).exit_code == 0
    run("send", "--date", day, "--yes")
    (digest,) = _digests_to(app, "bob@example.org")
    titles = _html_titles(page.read_text(encoding="utf-8"))
    assert _parts(digest) == (titles, titles)
    assert titles == [_dated(t, DAY2) for t, _ in ROBOTS + GRAPHS[:2]]  # most upvoted first


def test_a_followed_author_is_named_first_on_the_card(app, run, world):
    run("send", "--date", DAY2.isoformat(), "--yes")
    (digest,) = _digests_to(app, "ada@example.org")
    text = digest.get_body(("plain",)).get_content()
    card = text[text.index(_dated(FOLLOWED, DAY2)) :]
    assert card.splitlines()[1].strip() == "García, María, Ann Lee, Bo Chen et al."
    assert "You follow García, María" in card
    page = digest.get_body(("html",)).get_content()
    assert re.search(r'class="authors"[^>]*>García, María, Ann Lee, Bo Chen et al\.<', page)
    (other,) = _digests_to(app, "bob@example.org")  # not followed: the paper's own order
    assert "García" not in other.get_body(("plain",)).get_content()


@pytest.fixture
def outsiders(app, run, world):
    """Readers of a topic with no paper today: one follows an author, one has a keyword of
    their own, one has neither."""
    with app.transaction() as s:
        astro = s.query(f.Topic).filter_by(slug="astro").one()
        for name in ("cy", "dee", "eve"):
            f.subscriber(s, f"{name}@example.org", [astro])
    for address, rule, value in (("cy", "--follow-authors", "M. Garcia"),
                                 ("dee", "--keywords", "diffusion")):  # fmt: skip
        result = run("subscribers", "edit", f"{address}@example.org", rule, value)
        assert result.exit_code == 0, result.output


def test_a_reader_whose_only_match_is_a_followed_author_gets_a_digest(app, run, outsiders):
    result = run("send", "--date", DAY2.isoformat(), "--yes")
    assert result.exit_code == 0, result.output
    for address in ("cy@example.org", "dee@example.org"):
        (digest,) = _digests_to(app, address)
        assert _parts(digest)[0] == [_dated(FOLLOWED, DAY2)], address
    assert _digests_to(app, "eve@example.org") == []  # nothing for her: skipped
    status = json.loads(run("status", "--date", DAY2.isoformat(), "--json").stdout)
    assert (status["sent"], status["skipped"]) == (4, 1)


def test_the_nothing_today_note_goes_only_to_readers_the_selection_finds_nothing_for(
    app, run, outsiders, tmp_path
):
    run.env["NEWSLETTER_EMPTY_POLICY"] = "note"
    day = DAY2.isoformat()
    page = tmp_path / "cy.html"
    assert run("preview", "cy@example.org", "--date", day, "--output", str(page)).exit_code == 0
    assert _html_titles(page.read_text(encoding="utf-8")) == [_dated(FOLLOWED, DAY2)]
    assert "nothing new today" in run("preview", "eve@example.org", "--date", day).stdout
    assert run("send", "--date", day, "--yes").exit_code == 0
    (cy,) = _digests_to(app, "cy@example.org")
    (eve,) = _digests_to(app, "eve@example.org")
    assert "nothing new today" not in cy.get_body(("plain",)).get_content()
    assert "nothing new today" in eve.get_body(("plain",)).get_content()


def test_dry_run_lists_who_gets_which_papers_as_the_send_does(app, run, outsiders):
    day = DAY2.isoformat()
    before = dump_database(app.engine)
    listed = run("send", "--date", day, "--dry-run", "--json")
    assert listed.exit_code == 0, listed.output
    assert dump_database(app.engine) == before  # nothing written
    data = json.loads(listed.stdout)
    plan = {r["email"]: [p["title"] for p in r["papers"]] for r in data["readers"]}
    assert set(plan) == {"ada@example.org", "bob@example.org", "cy@example.org",
                         "dee@example.org"}  # fmt: skip
    assert data["skipped"] == 1
    text = run("send", "--date", day, "--dry-run")
    assert "ada@example.org: 3 papers" in text.stdout
    assert f"  1. {_dated(FOLLOWED, DAY2)}" in text.stdout
    run("send", "--date", day, "--yes")
    for address, titles in plan.items():
        (digest,) = _digests_to(app, address)
        assert _parts(digest)[0] == titles, address


def test_send_for_a_day_without_a_listing_is_one_line_and_exit_1(app, run, world):
    before = dump_database(app.engine)
    for args in (["--yes"], ["--dry-run"], ["--to", "ada@example.org"]):
        result = run("send", "--date", "2026-12-25", *args)
        assert result.exit_code == 1, result.output
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.output
        assert "no papers listed on 2026-12-25" in result.stderr
    assert dump_database(app.engine) == before
    assert _outbox(app) == []


def test_preview_without_output_prints_the_readable_text(run, world):
    result = run("preview", "bob@example.org", "--date", DAY2.isoformat())
    assert result.exit_code == 0, result.output
    assert "Content-Type" not in result.stdout and "=C3" not in result.stdout
    assert result.stdout.startswith("Subject: ")
    assert "1. " + _dated(ROBOTS[0][0], DAY2) in result.stdout


def test_subscribers_show_separates_followed_authors_unambiguously(run, world):
    assert run("subscribers", "edit", "ada@example.org", "--follow-authors",
               "Jane Doe; García, M.").exit_code == 0  # fmt: skip
    shown = run("subscribers", "show", "ada@example.org")
    assert "follow_authors:  Jane Doe; García, M.\n" in shown.stdout
    data = json.loads(run("subscribers", "show", "ada@example.org", "--json").stdout)
    assert data["follow_authors"] == ["Jane Doe", "García, M."]


def test_a_weekly_readers_preview_and_test_copy_are_the_digest_the_scheduler_sends(
    app, run, tmp_path
):
    week = [date(2026, 3, 23) + timedelta(days=i) for i in range(5)]  # Monday to Friday
    with app.transaction() as s:
        llm, bio = f.topic(s, "llm"), f.topic(s, "bio")
        for i, day in enumerate(week):
            f.paper(s, f"Language paper {i}", day=day, topics={llm: 2.0}, upvotes=10 * i)
        f.paper(s, "Language paper on tokenizers", day=week[1], topics={llm: 2.0}, upvotes=99)
        followed = f.paper(s, "Protein paper", day=week[0], topics={bio: 2.0}, upvotes=1)
        followed.authors = FOLLOWED_AUTHORS
        reader = f.subscriber(s, "weekly@example.org", [llm], max_papers=4)
        reader.frequency, reader.weekly_day = Frequency.WEEKLY, 4  # Friday, 08:00 UTC
        # Wednesday's paper reached them in a daily digest before they switched.
        daily = Edition(kind=EditionKind.DAILY, listing_date=week[2])
        s.add(daily)
        s.flush()
        wednesday = s.scalar(select(Paper.id).where(Paper.title == "Language paper 2"))
        s.add(Delivery(edition_id=daily.id, subscriber_id=reader.id, status="sent",
                       paper_ids=[wednesday]))  # fmt: skip
    for args in (["--follow-authors", "María García"], ["--mute", "tokenizers"]):
        assert run("subscribers", "edit", "weekly@example.org", *args).exit_code == 0
    friday = week[-1].isoformat()
    page = tmp_path / "weekly.html"
    shown = run("preview", "weekly@example.org", "--date", friday, "--output", str(page))
    assert shown.exit_code == 0, shown.output
    assert run("send", "--date", friday, "--to", "weekly@example.org").exit_code == 0
    (test_copy,) = _digests_to(app, "weekly@example.org")
    report = tick.run_due(app, datetime(2026, 3, 27, 8, tzinfo=UTC),
                          config=ScheduleConfig(sources=()), fetch=False)  # fmt: skip
    assert report.sent == 1
    (digest,) = [
        m for m in _digests_to(app, "weekly@example.org")
        if m["Message-ID"] != test_copy["Message-ID"]
    ]  # fmt: skip

    titles = _html_titles(page.read_text(encoding="utf-8"))
    assert titles == ["Protein paper", "Language paper 4", "Language paper 3", "Language paper 1"]
    assert _parts(digest) == (titles, titles) and _parts(test_copy) == (titles, titles)


def test_a_reader_whose_likes_bring_papers_from_outside_their_topics_gets_a_digest(
    app, run, world
):
    with app.transaction() as s:
        astro = s.query(f.Topic).filter_by(slug="astro").one()
        fay = f.subscriber(s, "fay@example.org", [astro])
        liked = s.scalars(select(Paper.id).where(Paper.listing_date == DAY1)).all()[:3]
        for paper_id in liked:  # three robot papers: enough likes for discoveries
            feedback.record_vote(fay.id, paper_id, feedback.MORE, session=s)
    assert run("send", "--date", DAY2.isoformat(), "--yes").exit_code == 0
    (digest,) = _digests_to(app, "fay@example.org")
    text = digest.get_body(("plain",)).get_content()
    assert "Because you liked" in text
    assert set(_text_titles(text)) <= {_dated(t, DAY2) for t, _ in ROBOTS}
