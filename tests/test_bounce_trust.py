"""Whom a returned message may name without a signed return path: the delivery it quotes.

With no `bounce_domain` (the default) every digest goes out with the plain From address as its
return path, so a report proves nothing by where it arrives. It is believed only when it quotes
the original we sent, whose Message-ID carries a signed token naming the delivery.
"""

from __future__ import annotations

import json
import mailbox
from email import message_from_bytes
from email.utils import parseaddr

from sqlalchemy import select

from newsletter.bounces.signing import message_id_delivery_id, quoted_message_tokens
from newsletter.core.models import Delivery
from tests import factories as f
from tests.bounce_mail import BOUNCES, make_maildir, statuses, suppression_reasons

DAY = f.DAY.isoformat()


def _sent_copies(app, run) -> dict[str, bytes]:
    """Send the day's edition to two readers; return each one's copy, as the outbox holds it."""
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.subscriber(s, "reader@example.org", [t])
        f.subscriber(s, "victim@example.org", [t])
    assert run("send", "--yes", "--date", DAY).exit_code == 0
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=False)
    copies = {}
    for key in box.keys():
        data = box.get_bytes(key)
        copies[parseaddr(message_from_bytes(data)["To"])[1]] = data
    return copies


def _dsn(recipient: str, original_headers: bytes) -> bytes:
    """Postfix's hard bounce for `recipient`, sent to the plain From address, quoting headers."""
    data = (BOUNCES / "postfix_hard.eml").read_bytes()
    data = data.replace(b"bounces+VERPTOKEN@news.example.test", b"papers@news.example.test")
    data = data.replace(b"gone@example.org", recipient.encode())
    cut = data.index(b"Return-Path: <papers@news.example.test>")
    boundary = b"--4ZxQ1b2cD3z9.1795939205/mail.news.example.test--"
    return data[:cut] + original_headers + b"\n" + boundary + b"\n"


def _headers(copy: bytes) -> bytes:
    return copy.split(b"\n\n", 1)[0] + b"\n"


def test_a_forged_report_without_our_message_suppresses_nobody(app, run, tmp_path):
    copies = _sent_copies(app, run)
    stranger = b"From: x@example.net\nTo: victim@example.org\nMessage-ID: <1@example.net>\n"
    make_maildir(tmp_path / "box", [_dsn("victim@example.org", stranger)])

    result = run("bounces", "process", str(tmp_path / "box"), "--json")

    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)["outcomes"][0]
    assert outcome["action"] == "kept"
    assert outcome["detail"] == "no signed return path, and it quotes no message of ours"
    assert suppression_reasons(app) == {}
    assert statuses(app)["victim@example.org"] == "confirmed"
    assert set(copies) == {"reader@example.org", "victim@example.org"}


def test_a_report_quoting_the_copy_we_sent_suppresses_that_reader_only(app, run, tmp_path):
    copies = _sent_copies(app, run)
    # Genuine: the reader's own copy's headers. Forged: the reader's headers, naming the victim.
    genuine = _dsn("reader@example.org", _headers(copies["reader@example.org"]))
    forged = _dsn("victim@example.org", _headers(copies["reader@example.org"]).replace(
        b"reader@example.org", b"victim@example.org"))  # fmt: skip
    make_maildir(tmp_path / "box", [genuine])
    make_maildir(tmp_path / "forged", [forged])

    result = run("bounces", "process", str(tmp_path / "box"), "--json")
    again = run("bounces", "process", str(tmp_path / "forged"), "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["suppressed_addresses"] == ["reader@example.org"]
    # The forgery quotes the reader's Message-ID, so it can only ever name the reader.
    assert json.loads(again.stdout)["outcomes"][0]["email"] == "reader@example.org"
    assert set(suppression_reasons(app)) == {"reader@example.org"}
    assert statuses(app)["victim@example.org"] == "confirmed"


def test_each_digest_has_a_message_id_naming_its_delivery(app, run):
    copies = _sent_copies(app, run)
    with app.sessions() as s:
        rows = {d.message_id: d.id for d in s.scalars(select(Delivery))}
    for copy in copies.values():
        message_id = message_from_bytes(copy)["Message-ID"]
        (token,) = quoted_message_tokens(message_id.encode())
        assert message_id_delivery_id(app.settings, token) == rows[message_id]
