"""Confirmation and preferences emails: built with the digests' header builder."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header

import pytest

from newsletter.content.notices import Notice, build_notice
from newsletter.core.errors import InputError
from newsletter.delivery.mail_queue import send_notice
from tests.test_hostile_headers import ENCODED_ATTACK

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Auto-Submitted",
           "Content-Type"]  # fmt: skip
FIELD_OR_FOLD = re.compile(rb"[!-9;-~]+: [ -~]*|[ \t]+[!-~][ -~]*")


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.parametrize("kind", ["confirm", "manage"])
def test_a_notice_has_exactly_its_headers_and_our_two_bodies(settings, kind):
    raw = build_notice(settings, Notice(kind, 42, "ada@example.org", "Ada Lovelace"), now=NOW)

    head, body = raw.split(b"\r\n\r\n", 1)
    assert [line for line in head.split(b"\r\n") if not FIELD_OR_FOLD.fullmatch(line)] == []
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    message = _parse(raw)
    assert list(message.keys()) == HEADERS
    assert message["To"] == "Ada Lovelace <ada@example.org>"
    assert message["Date"].datetime == NOW
    assert message["Auto-Submitted"] == "auto-generated"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    link = f"https://news.example.test/{kind}/"
    assert link in message.get_body(("plain",)).get_content()
    assert link in message.get_body(("html",)).get_content()


def test_an_encoded_attack_in_the_name_is_shown_literally(settings):
    raw = build_notice(settings, Notice("confirm", 42, "eve@example.org", ENCODED_ATTACK))

    message = _parse(raw)
    assert list(message.keys()) == HEADERS
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    [to] = [line[4:].decode() for line in head.split(b"\r\n") if line.startswith(b"To: ")]
    assert str(make_header(decode_header(to))) == f"{ENCODED_ATTACK} <eve@example.org>"
    assert "<h1>" not in message.get_body(("html",)).get_content()


def test_line_breaks_and_controls_in_a_stored_name_become_spaces(settings):
    name = "Ada\r\nBcc: x@evil.example\u2028X-Evil: 1\x85Y"
    message = _parse(build_notice(settings, Notice("manage", 1, "ada@example.org", name)))
    assert list(message.keys()) == HEADERS
    assert message["To"].addresses[0].display_name == "Ada Bcc: x@evil.example X-Evil: 1 Y"


def test_an_address_the_mailer_cannot_build_is_refused_before_sending(settings):
    with pytest.raises(InputError, match="non-ASCII local part"):
        build_notice(settings, Notice("confirm", 1, "jösé@example.org", "José"))


def test_send_notice_puts_an_idn_domain_in_the_envelope_as_its_a_label(settings):
    send_notice(settings, Notice("confirm", 1, "zoe@bücher.example", "Zoë"))

    [stored] = mailbox.Maildir(settings.transport.removeprefix("maildir:"))
    message = _parse(bytes(stored))
    assert message["Delivered-To"] == "zoe@xn--bcher-kva.example"
    assert message["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"
