"""Sending an edition: every owed message once, replies handled, state explicit."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from newsletter.core.errors import TransportError
from newsletter.core.models import Delivery, DeliveryStatus, utcnow
from newsletter.delivery import service as sending
from newsletter.delivery.engine import SendOptions
from tests import factories as f
from tests.smtp_server import Fault, SmtpTestServer

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "max_wait": 5.0}


@pytest.fixture
def world(app):
    """Three topics, four papers today, five confirmed subscribers (one with nothing today)."""
    with app.transaction() as s:
        llm, rl, bio = f.topic(s, "llm"), f.topic(s, "rl"), f.topic(s, "bio")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Instruction tuning revisited", topics={llm: 1.2}, upvotes=10)
        f.paper(s, "Policy gradients with a twist", topics={rl: 1.5}, upvotes=25)
        f.paper(s, "Agents that plan", topics={llm: 1.1, rl: 1.1}, upvotes=5)
        f.subscriber(s, "ada@example.org", [llm])
        f.subscriber(s, "alan@example.org", [llm, rl])
        f.subscriber(s, "grace@example.org", [rl], max_papers=1)
        f.subscriber(s, "barbara@example.org", [llm])
        f.subscriber(s, "rosalind@example.org", [bio])
    return app


def _with_transport(app, spec):
    app.settings = dataclasses.replace(app.settings, transport=spec)
    return app


def _rows(app):
    with app.sessions() as s:
        return {d.subscriber.email: d for d in s.scalars(select(Delivery))}


def _opts(**kw):
    return SendOptions(**{**FAST, **kw})


def test_maildir_send_delivers_each_owed_message_once(world, settings):
    report = sending.send(world, f.DAY, options=_opts())
    assert (report.summary.sent, report.summary.failed, report.summary.owed) == (4, 0, 0)
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=False)
    messages = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == [
        "ada@example.org",
        "alan@example.org",
        "barbara@example.org",
        "grace@example.org",
    ]
    rows = _rows(world)
    assert rows["rosalind@example.org"].status == DeliveryStatus.SKIPPED
    ada = rows["ada@example.org"]
    assert ada.status == DeliveryStatus.SENT and ada.sent_at and ada.attempts == 1
    assert ada.message_id.startswith("<") and len(ada.paper_ids) == 3
    assert rows["grace@example.org"].paper_ids and len(rows["grace@example.org"].paper_ids) == 1

    again = sending.send(world, f.DAY, options=_opts())
    assert again.summary.sent == 0 and len(list(box)) == 4


def test_the_digest_carries_the_subscribers_papers_and_unsubscribe_headers(world, settings):
    with SmtpTestServer() as srv:
        sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    by_rcpt = {m.recipients[0]: m for m in srv.messages}
    msg = email.message_from_bytes(by_rcpt["grace@example.org"].data, policy=email.policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "Policy gradients with a twist" in text and "Scaling laws" not in text
    assert msg["List-Unsubscribe"].startswith(f"<{settings.base_url}/unsubscribe/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == _rows(world)["grace@example.org"].message_id


def test_temporary_failures_are_retried_until_sent(world):
    faults = [
        Fault(reply="451 4.3.0 try again later", recipient="ada@example.org", times=2),
        Fault(reply="421 4.7.0 too busy", stage="mail", times=1),
    ]
    with SmtpTestServer(faults=faults) as srv:
        report = sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    assert report.summary.sent == 4 and report.summary.owed == 0
    assert Counter(m.recipients[0] for m in srv.messages)["ada@example.org"] == 1
    rows = _rows(world)
    assert rows["ada@example.org"].status == DeliveryStatus.SENT
    assert rows["ada@example.org"].attempts >= 3  # two 451s, maybe the 421 too
    assert sum(r.attempts for r in rows.values()) == 4 + 2 + 1


@pytest.mark.parametrize("reply", ["550 5.1.1 no such user", "552 5.2.2 mailbox full"])
def test_permanent_failures_fail_the_row_at_once_with_the_reply(world, reply):
    faults = [Fault(reply=reply, recipient="alan@example.org")]
    with SmtpTestServer(faults=faults) as srv:
        report = sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    assert (report.summary.sent, report.summary.failed) == (3, 1)
    alan = _rows(world)["alan@example.org"]
    assert alan.status == DeliveryStatus.FAILED and alan.attempts == 1
    assert alan.last_reply.startswith(reply[:3])


def test_retries_give_up_after_max_attempts(world):
    faults = [Fault(reply="452 4.2.2 over quota", recipient="ada@example.org")]
    with SmtpTestServer(faults=faults) as srv:
        report = sending.send(_with_transport(world, srv.url), f.DAY, options=_opts(max_attempts=3))
    ada = _rows(world)["ada@example.org"]
    assert ada.status == DeliveryStatus.FAILED and ada.attempts == 3
    assert "gave up after 3 attempts" in ada.last_reply and "452" in ada.last_reply
    assert report.summary.sent == 3


def test_a_dropped_connection_mid_data_is_retried(world):
    faults = [Fault(stage="data", drop=True, recipient="barbara@example.org", times=1)]
    with SmtpTestServer(faults=faults) as srv:
        report = sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    assert report.summary.sent == 4
    assert _rows(world)["barbara@example.org"].attempts == 2


def test_retries_not_due_within_the_run_stay_owed(world):
    faults = [Fault(reply="451 4.3.0 later", recipient="ada@example.org")]
    with SmtpTestServer(faults=faults) as srv:
        report = sending.send(
            _with_transport(world, srv.url),
            f.DAY,
            options=_opts(backoff_base=600, backoff_max=3600, max_wait=0),
        )
    ada = _rows(world)["ada@example.org"]
    assert report.summary.owed == 1 and ada.status == DeliveryStatus.PENDING
    assert ada.next_attempt_at > utcnow() + timedelta(seconds=200)


def test_server_down_is_a_clear_error_and_everything_stays_owed(world):
    with SmtpTestServer() as srv:
        url = srv.url
    with pytest.raises(TransportError, match="4 deliveries are still owed"):
        sending.send(_with_transport(world, url), f.DAY, options=_opts())
    rows = _rows(world)
    owed = [r for r in rows.values() if r.status == DeliveryStatus.PENDING]
    assert len(owed) == 4 and all(r.attempts == 0 and r.claimed_by is None for r in owed)


def test_an_expired_lease_is_taken_over(world):
    sending.plan(world, f.DAY)
    with world.transaction() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by="dead:1",
                attempts=1,
                lease_until=utcnow() - timedelta(seconds=1),
            )
        )
    report = sending.send(world, f.DAY, options=_opts())
    assert report.summary.sent == 4
    assert {r.attempts for r in _rows(world).values() if r.status == "sent"} == {2}


def test_a_live_lease_is_left_alone(world):
    sending.plan(world, f.DAY)
    with world.transaction() as s:
        s.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by="other:1",
                lease_until=utcnow() + timedelta(minutes=5),
            )
        )
    report = sending.send(world, f.DAY, options=_opts())
    assert report.summary.sent == 0 and report.summary.owed == 4


def test_limit_sends_at_most_n(world):
    report = sending.send(world, f.DAY, options=_opts(limit=2))
    assert report.summary.sent == 2 and report.summary.owed == 2
    assert sending.send(world, f.DAY, options=_opts()).summary.sent == 2


def test_note_policy_sends_a_nothing_today_note(world):
    report = sending.send(world, f.DAY, options=_opts(empty_policy="note"))
    assert report.summary.sent == 4  # planning under "skip" settings already skipped rosalind
    world.settings = dataclasses.replace(world.settings, empty_policy="note")
    with world.transaction() as s:
        f.subscriber(s, "mary@example.org", [f.topic(s, "quiet")])
    report = sending.send(world, f.DAY, options=_opts(empty_policy="note"))
    assert report.summary.sent == 1
    assert _rows(world)["mary@example.org"].paper_ids == []


def test_test_copy_leaves_the_edition_untouched(world):
    with SmtpTestServer() as srv:
        _with_transport(world, srv.url)
        sending.send_test_copy(world, "editor@example.net", f.DAY)
        sending.send_test_copy(world, "ada@example.org", f.DAY)
    assert [m.recipients[0] for m in srv.messages] == ["editor@example.net", "ada@example.org"]
    assert _rows(world) == {}
    editor = email.message_from_bytes(srv.messages[0].data, policy=email.policy.default)
    assert "Agents that plan" in editor.get_body(preferencelist=("plain",)).get_content()


def test_test_copies_to_suppressed_addresses_need_force(world, run):
    from newsletter.core.errors import InputError
    from newsletter.core.models import Suppression

    with world.transaction() as s:
        s.add(Suppression(email="gone@example.net", reason="hard bounce"))
    with SmtpTestServer() as srv:
        _with_transport(world, srv.url)
        with pytest.raises(InputError, match="suppressed"):
            sending.send_test_copy(world, "Gone@example.net", f.DAY)
        sending.send_test_copy(world, "gone@example.net", f.DAY, force=True)
    assert [m.recipients[0] for m in srv.messages] == ["gone@example.net"]


def test_status_shows_counts_per_status_and_health(world, run):
    sending.send(world, f.DAY, options=_opts())
    result = run("status", "--date", f.DAY.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    data = __import__("json").loads(result.stdout)
    assert {k: data[k] for k in ("pending", "sending", "sent", "failed", "skipped")} == {
        "pending": 0,
        "sending": 0,
        "sent": 4,
        "failed": 0,
        "skipped": 1,
    }
    assert data["health"]["attempted"] == 4 and data["health"]["warnings"] == []
    text = run("status", "--date", f.DAY.isoformat())
    assert "sent 4" in text.output and "health: hard bounces 0" in text.output


def test_a_refused_mailbox_is_suppressed_but_a_full_one_is_not(world):
    from newsletter.core.models import Suppression

    faults = [
        Fault(reply="550 5.1.1 no such user", recipient="alan@example.org"),
        Fault(reply="552 5.2.2 mailbox full", recipient="ada@example.org"),
    ]
    with SmtpTestServer(faults=faults) as srv:
        sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    with world.sessions() as s:
        assert [x.email for x in s.scalars(select(Suppression))] == ["alan@example.org"]


def test_verp_return_path_names_the_delivery_when_bounces_come_back(world):
    from newsletter.bounces.classify import parse_verp

    world.settings = dataclasses.replace(world.settings, bounce_domain="bounces.example.test")
    with SmtpTestServer() as srv:
        sending.send(_with_transport(world, srv.url), f.DAY, options=_opts())
    rows = _rows(world)
    for message in srv.messages:
        assert message.sender.startswith("bounces+")
        assert message.sender.endswith("@bounces.example.test")
        assert parse_verp(world.settings, message.sender) == rows[message.recipients[0]].id
