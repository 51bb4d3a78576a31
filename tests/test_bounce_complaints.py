"""Complaints: what holds the next edition, and a reader's own report about their copy."""

from __future__ import annotations

import json
import mailbox
from datetime import timedelta
from email import message_from_bytes
from email.utils import parseaddr

from sqlalchemy import select

from newsletter.core.models import BounceEvent, Subscriber, Suppression
from tests import factories as f
from tests.bounce_mail import BOUNCES, make_maildir

BEFORE = (f.DAY - timedelta(days=1)).isoformat()
DAY = f.DAY.isoformat()
BOUNCE_DOMAIN = 'bounce_domain = "news.example.test"\n'


def _list_of(app, n: int) -> None:
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.paper(s, "Yesterday's model", day=f.DAY - timedelta(days=1), topics={t: 2.0})
        f.bulk_subscribers(s, n, [t])


def _copies(app) -> dict[str, str]:
    """Each reader's copy in the outbox: the return path it came with, by reader."""
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=False)
    copies = {}
    for key in box.keys():
        msg = message_from_bytes(box.get_bytes(key))
        copies[parseaddr(msg["To"])[1]] = parseaddr(msg["Return-Path"])[1]
    return copies


def _recipients(app) -> list[str]:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=False)
    return [parseaddr(message_from_bytes(box.get_bytes(k))["To"])[1] for k in box.keys()]


def _own_report(reader: str, return_path: str) -> bytes:
    """An abuse report the reader's mail client sends from their own address."""
    return (
        f"Return-Path: <{reader}>\nDelivered-To: {return_path}\nFrom: <{reader}>\n"
        f"To: <{return_path}>\nSubject: Spam report\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nThis message is spam.\n\n"
        "--b\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: abuse\nUser-Agent: SomeClient/1.0\nVersion: 1\n"
        f"Original-Mail-From: <{return_path}>\nOriginal-Rcpt-To: <{reader}>\n\n"
        "--b--\n"
    ).encode()


def _feedback_loop(reader: str, return_path: str) -> bytes:
    """A provider's feedback-loop report about the reader's copy."""
    data = (BOUNCES / "arf_abuse.eml").read_bytes()
    data = data.replace(b"bounces+VERPTOKEN@news.example.test", return_path.encode())
    return data.replace(b"angry@example.net", reader.encode())


def test_a_readers_own_report_does_not_hold_the_next_edition_of_a_small_list(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)
    _list_of(app, 3)
    assert run("send", "--yes", "--date", BEFORE).exit_code == 0
    copies = _copies(app)
    reader = sorted(copies)[0]
    make_maildir(tmp_path / "box", [_own_report(reader, copies[reader])])

    processed = run("bounces", "process", str(tmp_path / "box"), "--json")

    assert processed.exit_code == 0, processed.output
    sent = run("send", "--yes", "--date", DAY)
    assert sent.exit_code == 0, sent.output  # not held
    outcome = json.loads(processed.stdout)["outcomes"][0]
    assert (outcome["action"], outcome["email"]) == ("unsubscribed_by_mail", reader)
    with app.sessions() as s:
        kinds = s.scalars(select(BounceEvent.kind)).all()
        status = s.scalar(select(Subscriber.status).where(Subscriber.email == reader))
        suppressed = s.scalars(select(Suppression.email)).all()
    assert kinds == ["reader-report"]  # never a complaint
    assert status.value == "unsubscribed" and suppressed == []
    assert sorted(_recipients(app)) == sorted([*copies, *(set(copies) - {reader})])


def test_one_feedback_loop_complaint_on_a_small_list_does_not_hold(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)
    _list_of(app, 3)
    assert run("send", "--yes", "--date", BEFORE).exit_code == 0
    copies = _copies(app)
    reader = sorted(copies)[0]
    make_maildir(tmp_path / "box", [_feedback_loop(reader, copies[reader])])
    assert run("bounces", "process", str(tmp_path / "box")).exit_code == 0

    health = json.loads(run("bounces", "health", "--date", BEFORE, "--json").stdout)
    assert health["complaints"] == 1  # 33% of the edition, but one reader
    assert run("send", "--yes", "--date", DAY).exit_code == 0


def test_complaints_at_the_minimum_count_and_above_the_rate_hold(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)
    _list_of(app, 10)
    assert run("send", "--yes", "--date", BEFORE).exit_code == 0
    copies = _copies(app)
    readers = sorted(copies)[:3]
    make_maildir(tmp_path / "box", [_feedback_loop(r, copies[r]) for r in readers[:2]])
    assert run("bounces", "process", str(tmp_path / "box")).exit_code == 0
    assert run("plan", "--date", DAY).exit_code == 0  # 2 of 10: above the rate, below 3

    make_maildir(tmp_path / "box2", [_feedback_loop(readers[2], copies[readers[2]])])
    assert run("bounces", "process", str(tmp_path / "box2")).exit_code == 0
    refused = run("send", "--yes", "--date", DAY)
    assert refused.exit_code == 1
    assert "3 complaints in 10 messages" in refused.output
    assert "complaint_min_count 3" in refused.output


def test_the_minimum_count_is_a_setting(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN + "complaint_min_count = 1\n")
    _list_of(app, 3)
    assert run("send", "--yes", "--date", BEFORE).exit_code == 0
    copies = _copies(app)
    reader = sorted(copies)[0]
    make_maildir(tmp_path / "box", [_feedback_loop(reader, copies[reader])])
    assert run("bounces", "process", str(tmp_path / "box")).exit_code == 0
    refused = run("send", "--yes", "--date", DAY)
    assert refused.exit_code == 1 and "1 complaints in 3 messages" in refused.output
