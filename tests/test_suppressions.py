"""The suppression list: service, commands, and what it protects against."""

from __future__ import annotations

import dataclasses
import json
import mailbox
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.audience.suppressions import (
    add_suppression,
    check_test_recipient,
    list_suppressions,
    remove_suppression,
    suppression_reason,
)
from newsletter.bounces.refusals import suppress_after_permanent_failure
from newsletter.cli import cli
from newsletter.cli.bounces import register
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    Suppression,
)
from newsletter.delivery import service as sending
from newsletter.delivery.engine import SendOptions
from tests import factories as f
from tests.smtp_server import Fault, SmtpTestServer

FAST = SendOptions(backoff_base=0.05, backoff_max=0.2, max_wait=5.0)


@pytest.fixture(autouse=True)
def suppression_commands() -> None:
    if "suppressions" not in cli.commands:
        register(cli)


@pytest.fixture
def world(app):
    """Two papers today and three confirmed readers of them."""
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0})
        f.paper(s, "Instruction tuning revisited", topics={llm: 1.5})
        for email in ("ada@example.org", "alan@example.org", "grace@example.org"):
            f.subscriber(s, email, [llm])
    return app


def test_add_is_idempotent_and_keeps_the_first_reason(app):
    with app.transaction() as s:
        row, created = add_suppression("Gone@Example.org", "hard bounce 5.1.1", session=s)
        again, created_again = add_suppression("gone@example.org", "operator", session=s)
    assert (created, created_again) == (True, False)
    assert again.id == row.id and again.reason == "hard bounce 5.1.1"
    assert row.email == "Gone@example.org"  # the domain normalised, the local part as given


def test_suppression_reason_ignores_case_and_remove_lifts_it(app):
    with app.transaction() as s:
        add_suppression("gone@example.org", "complaint", session=s)
    with app.transaction() as s:
        assert suppression_reason("GONE@example.ORG", session=s) == "complaint"
        assert suppression_reason("other@example.org", session=s) is None
        remove_suppression("Gone@example.org", session=s)
    with app.sessions() as s:
        assert suppression_reason("gone@example.org", session=s) is None
        with pytest.raises(NotFound, match="is not suppressed"):
            remove_suppression("gone@example.org", session=s)


def test_list_filters_by_reason_prefix(app):
    with app.transaction() as s:
        add_suppression("a@example.org", "complaint", session=s)
        add_suppression("b@example.org", "hard bounce 5.1.1: user unknown", session=s)
    with app.sessions() as s:
        assert [r.email for r in list_suppressions(session=s, reason="Hard")] == ["b@example.org"]
        assert len(list_suppressions(session=s)) == 2


def test_commands_add_list_and_remove(app, run):
    added = run("suppressions", "add", "gone@example.org", "--reason", "asked by phone")
    assert added.exit_code == 0 and added.stdout == "suppressed gone@example.org (asked by phone)\n"
    again = run("suppressions", "add", "GONE@example.org")
    assert "already suppressed (asked by phone)" in again.stdout
    listed = json.loads(run("suppressions", "list", "--json").stdout)
    assert [(r["email"], r["reason"]) for r in listed] == [("gone@example.org", "asked by phone")]
    assert listed[0]["created_at"].startswith("20")
    removed = run("suppressions", "remove", "gone@example.org")
    assert removed.exit_code == 0 and "was: asked by phone" in removed.stdout
    assert json.loads(run("suppressions", "list", "--json").stdout) == []


def test_bad_input_is_one_line_exit_2_and_changes_nothing(app, run):
    from tests.factories import dump_database

    before = dump_database(app.engine)
    bad = run("suppressions", "add", "not-an-address")
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "invalid email address 'not-an-address'" in bad.stderr
    missing = run("suppressions", "remove", "nobody@example.org")
    assert missing.exit_code == 2 and "'nobody@example.org' is not suppressed" in missing.stderr
    empty = run("suppressions", "add", "x@example.org", "--reason", "  ")
    assert empty.exit_code == 2 and "needs a reason" in empty.stderr
    assert dump_database(app.engine) == before


def outbox_recipients(app) -> list[str]:
    path = Path(app.settings.transport.removeprefix("maildir:"))
    box = mailbox.Maildir(path, create=False)
    return sorted(m["To"] for m in box)


def test_a_suppressed_address_is_neither_planned_nor_sent_to(world, run):
    run("suppressions", "add", "ALAN@example.org", "--reason", "complaint")
    report = sending.send(world, f.DAY, options=FAST)
    assert report.summary.sent == 2
    with world.sessions() as s:
        planned = {d.subscriber.email for d in s.scalars(select(Delivery))}
    assert planned == {"ada@example.org", "grace@example.org"}
    assert not any("alan" in to for to in outbox_recipients(world))


def test_a_test_copy_to_a_suppressed_address_needs_force(app):
    with app.transaction() as s:
        add_suppression("gone@example.org", "hard bounce 5.1.1", session=s)
    with app.sessions() as s:
        with pytest.raises(InputError, match=r"suppressed \(hard bounce 5.1.1\).*--force"):
            check_test_recipient("Gone@example.org", session=s)
        check_test_recipient("Gone@example.org", session=s, force=True)
        check_test_recipient("fine@example.org", session=s)


def test_smtp_5xx_on_rcpt_during_a_send_suppresses_only_that_recipient(world):
    faults = [
        Fault(reply="550 5.1.1 <alan@example.org>: no such user", recipient="alan@example.org"),
        # Refusing the content is not the recipient's fault: no suppression.
        Fault(reply="554 5.7.1 message rejected as spam", stage="end", times=1),
    ]
    with SmtpTestServer(faults=faults) as srv:
        app = world
        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        report = sending.send(app, f.DAY, options=FAST)
    assert report.summary.failed == 2
    with app.transaction() as s:
        failed = s.execute(
            select(Delivery.id, Delivery.last_reply).where(Delivery.status == DeliveryStatus.FAILED)
        ).all()
        # The sender suppressed alan while recording the 550; doing it again adds nothing.
        assert len(failed) == 2
        assert suppress_after_permanent_failure(s.connection(), failed) == []
    with app.sessions() as s:
        reasons = {r.email: r.reason for r in s.scalars(select(Suppression))}
        alan = s.scalar(select(Subscriber).where(Subscriber.email == "alan@example.org"))
        events = s.scalars(select(BounceEvent)).all()
    assert list(reasons) == ["alan@example.org"]
    assert reasons["alan@example.org"].startswith("hard bounce (SMTP): 550 5.1.1")
    assert alan.status == "bounced"
    # The spam refusal is recorded as blocked, for the edition's health, and suppresses nobody.
    assert sorted((e.kind, e.status, e.reason) for e in events) == [
        ("blocked", "5.7.1", "spam"),
        ("hard", "5.1.1", "bad-mailbox"),
    ]
    assert all(e.delivery_id is not None for e in events)


def test_a_mailbox_refused_as_disabled_twice_during_sends_is_suppressed(app):
    with app.transaction() as s:
        reader = f.subscriber(s, "dormant@example.org", [])
        rows = []
        for day in (f.DAY, f.DAY.replace(day=f.DAY.day + 1)):
            edition = Edition(listing_date=day)
            s.add(edition)
            s.flush()
            row = Delivery(edition_id=edition.id, subscriber_id=reader.id, status="failed")
            s.add(row)
            s.flush()
            rows.append(row.id)
    reply = "550 5.2.1 The email account that you tried to reach is disabled"
    with app.transaction() as s:
        assert suppress_after_permanent_failure(s.connection(), [(rows[0], reply)]) == []
    with app.transaction() as s:
        newly = suppress_after_permanent_failure(s.connection(), [(rows[1], reply)])
    assert newly == ["dormant@example.org"]
    with app.sessions() as s:
        events = s.scalars(select(BounceEvent)).all()
        reason = s.scalar(select(Suppression.reason))
    assert [(e.kind, e.reason) for e in events] == [("soft", "mailbox-disabled")] * 2
    assert reason.startswith("mailbox disabled, reported again (SMTP): 550 5.2.1")
