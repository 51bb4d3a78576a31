"""The sending services the CLI prints and a web page could show: the check before a send,
planning that a complaint hold stops, one reader's preview, the status report."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from newsletter.bounces.mailboxes import MaildirSource
from newsletter.bounces.process import process_bounces
from newsletter.core.errors import NotFound, SendingHeld
from newsletter.core.models import Delivery, DeliveryStatus, Edition, utcnow
from newsletter.delivery import service as sending
from newsletter.delivery.status import bounce_health, status_report
from tests import factories as f
from tests.bounce_mail import make_maildir, returned
from tests.factories import dump_database

DAY = f.DAY.isoformat()


@pytest.fixture
def world(app):
    """Two topics, one with papers today; three readers of the first, one of the second."""
    with app.transaction() as s:
        llm, bio = f.topic(s, "llm"), f.topic(s, "bio")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Instruction tuning revisited", topics={llm: 1.2}, upvotes=10)
        for name in ("ada", "alan", "grace"):
            f.subscriber(s, f"{name}@example.org", [llm])
        f.subscriber(s, "rosalind@example.org", [bio])
    return app


def _confirm_above(app, n: int):
    app.settings = dataclasses.replace(app.settings, confirm_above=n)
    return app


def test_the_check_before_a_send_counts_the_owed_readers_and_writes_nothing(world):
    before = dump_database(world.engine)

    check = sending.check_before_send(_confirm_above(world, 2), f.DAY)

    assert (check.listing_date, check.owed, check.to_send) == (f.DAY, 3, 3)
    assert check.confirm_above == 2 and check.needs_confirmation
    assert dump_database(world.engine) == before  # planned and rolled back: not even an edition
    limited = sending.check_before_send(world, f.DAY, limit=2)
    assert (limited.owed, limited.to_send, limited.needs_confirmation) == (3, 2, False)


def test_the_check_counts_only_what_is_still_owed(world):
    sending.send(world, f.DAY)

    check = sending.check_before_send(_confirm_above(world, 0), f.DAY)

    assert (check.owed, check.to_send, check.needs_confirmation) == (0, 0, False)


def test_the_check_refuses_a_paused_edition_unless_it_resumes(world):
    stats = sending.plan(world, f.DAY)
    with world.transaction() as s:
        s.execute(update(Edition).where(Edition.id == stats.edition_id)
                  .values(paused_at=utcnow(), pause_reason="5 address failures"))  # fmt: skip
    before = dump_database(world.engine)

    with pytest.raises(SendingHeld, match="paused: 5 address failures"):
        sending.check_before_send(world, f.DAY)

    assert sending.check_before_send(world, f.DAY, resume=True).owed == 3
    assert dump_database(world.engine) == before


def test_planning_stops_after_an_edition_with_many_complaints_unless_forced(world, tmp_path):
    yesterday = f.DAY - timedelta(days=1)
    with world.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        f.paper(s, "Yesterday's model", day=yesterday, topics={llm: 2.0})
    sending.send(world, yesterday)
    with world.reading() as s:
        sent = select(Delivery.id).where(Delivery.status == DeliveryStatus.SENT)
        ids = list(s.scalars(sent.order_by(Delivery.id)))
    make_maildir(tmp_path / "box", [returned(world, "arf_abuse.eml", i) for i in ids])
    process_bounces(world, MaildirSource(tmp_path / "box"))  # 3 complaints in 3 messages
    before = dump_database(world.engine)

    with pytest.raises(SendingHeld, match="3 complaints in 3 messages.*--force"):
        sending.plan_unless_held(world, f.DAY)

    assert dump_database(world.engine) == before
    forced = sending.plan_unless_held(world, f.DAY, force=True)
    # The three who complained unsubscribed: the one left has no paper today.
    assert (forced.listing_date, forced.planned, forced.pending) == (f.DAY, 1, 0)


def test_a_preview_gives_the_subject_and_both_parts_the_cli_prints_and_writes(world, run, tmp_path):
    shown = sending.build_preview(world, "ada@example.org", f.DAY)

    assert "Scaling laws for tiny models" in shown.text
    assert "Scaling laws for tiny models" in shown.html and shown.html.lstrip().startswith("<")
    assert shown.subject == "Your daily papers — Nov 27: Scaling laws for tiny models (+1 more)"
    assert shown.data.startswith(b"From: ") and b"\r\nTo: Ada <ada@example.org>\r\n" in shown.data
    assert [p.title for p in shown.papers] == [
        "Scaling laws for tiny models", "Instruction tuning revisited",
    ]  # fmt: skip
    printed = run("preview", "ada@example.org").stdout  # the runner reads CRLF as LF
    assert printed == f"Subject: {shown.subject}\n\n{shown.text}".replace("\r\n", "\n")
    assert run("preview", "ada@example.org", "--output", "ada.html").exit_code == 0
    assert (tmp_path / "ada.html").read_bytes() == shown.html.encode()


def test_the_status_report_holds_what_status_prints(world, run):
    sending.send(world, f.DAY)

    report = status_report(world, f.DAY)

    assert report.counts == {"pending": 0, "sending": 0, "sent": 3, "failed": 0, "skipped": 1}
    assert report.edition["date"] == DAY and report.edition["planned"]
    assert report.quiet_topics == ["bio"]  # it matched no paper of the recent listings
    assert report.disliked_topics == []
    assert report.mail_queue == {"waiting": 0, "failed": 0, "last_error": None}
    assert not report.by_meaning and "match_neighbours is false" in report.matching
    printed = run("status", "--date", DAY, "--json")
    assert json.loads(printed.stdout) == json.loads(json.dumps(report.to_dict(), default=str))
    assert "sent 3" in run("status", "--date", DAY).stdout


def test_the_status_report_of_a_day_not_planned_yet(world):
    report = status_report(world, f.DAY)

    assert not report.edition["planned"] and set(report.counts.values()) == {0}
    assert report.edition["health"] is None and report.edition["guard"] is None


def test_the_bounce_health_of_a_day_with_an_edition_and_of_one_without(world, run):
    with pytest.raises(NotFound, match=f"no edition for {DAY}"):
        bounce_health(world, f.DAY)
    stats = sending.send(world, f.DAY).plan

    health = bounce_health(world)  # the newest listing's

    assert (health["edition_id"], health["attempted"], health["hard_bounces"]) == (
        stats.edition_id, 3, 0,
    )  # fmt: skip
    assert health["warnings"] == [] and health["complaint_rate"] == 0
    printed = json.loads(run("bounces", "health", "--json").stdout)
    assert printed == json.loads(json.dumps(health, default=str))
