"""Parsing returned mail, and the signed VERP return path."""

from __future__ import annotations

import dataclasses

import pytest

from newsletter.bounces.classify import (
    BounceKind,
    bounce_domain,
    parse_bounce,
    parse_verp,
    permanent_recipient_failure,
    token_in_address,
    verp_address,
    verp_token,
)
from newsletter.core.config import Settings
from tests.conftest import FIXTURES

BOUNCES = FIXTURES / "bounces"


def sample(name: str) -> bytes:
    return (BOUNCES / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "kind", "recipient", "status"),
    [
        ("postfix_hard.eml", BounceKind.HARD, "gone@example.org", "5.1.1"),
        ("postfix_delayed.eml", BounceKind.SOFT, "slow@example.net", "4.4.1"),
        ("exim_dsn_hard.eml", BounceKind.SOFT, "closed@example.com", "5.2.1"),
        ("exim_text_hard.eml", BounceKind.HARD, "nobody@example.com", "5.1.1"),
        ("exim_text_delayed.eml", BounceKind.SOFT, "later@example.com", "4.7.1"),
        ("gmail_hard.eml", BounceKind.HARD, "no.such.reader@gmail.example", "5.1.1"),
        ("microsoft_hard.eml", BounceKind.HARD, "absent@outlook.example", "5.1.10"),
        ("arf_abuse.eml", BounceKind.COMPLAINT, "angry@example.net", None),
        ("auto_reply.eml", BounceKind.AUTO_REPLY, "away@example.com", None),
        ("human_reply.eml", BounceKind.UNKNOWN, None, None),
    ],
)
def test_samples_are_classified(name: str, kind: BounceKind, recipient: str, status: str) -> None:
    report = parse_bounce(sample(name))
    assert report is not None
    assert (report.kind, report.recipient, report.status) == (kind, recipient, status)
    # Every sample was sent back to the VERP address, whichever header carries it.
    assert report.verp_token == "verptoken"


def test_the_remote_servers_reply_is_the_diagnostic() -> None:
    gmail = parse_bounce(sample("gmail_hard.eml"))
    microsoft = parse_bounce(sample("microsoft_hard.eml"))
    exim = parse_bounce(sample("exim_text_hard.eml"))
    assert gmail and gmail.diagnostic.startswith("550-5.1.1 The email account")
    assert microsoft and "RESOLVER.ADR.RecipientNotFound" in microsoft.diagnostic
    assert exim and exim.diagnostic == (
        "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"
    )


def test_bytes_that_are_no_message_give_none() -> None:
    assert parse_bounce(sample("junk.bin")) is None
    assert parse_bounce(b"") is None


def _dsn(action: str, status: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces+abc@news.example.test\r\n"
        "Subject: report\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; r@example.org\r\nAction: {action}\r\nStatus: {status}\r\n"
        "\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("action", "status", "kind"),
    [
        ("failed", "5.1.1", BounceKind.HARD),
        ("failed", "4.4.7", BounceKind.SOFT),  # gave up retrying: not proof the box is gone
        ("failed", "5.2.2", BounceKind.SOFT),  # mailbox full
        ("delayed", "4.4.1", BounceKind.SOFT),
        ("delivered", "2.0.0", BounceKind.UNKNOWN),  # a success notice acts on nobody
    ],
)
def test_dsn_action_and_status_decide_the_kind(action: str, status: str, kind: BounceKind) -> None:
    report = parse_bounce(_dsn(action, status))
    assert report is not None and report.kind == kind


def test_a_feedback_report_other_than_abuse_is_not_a_complaint() -> None:
    data = sample("arf_abuse.eml").replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    report = parse_bounce(data)
    assert report is not None and report.kind == BounceKind.UNKNOWN


def test_verp_address_round_trips_and_rejects_forgeries(settings: Settings) -> None:
    address = verp_address(settings, 12345)
    assert address.startswith("bounces+") and address.endswith("@news.example.test")
    assert parse_verp(settings, address) == 12345
    # Some servers lowercase or uppercase local parts; the token survives both.
    assert parse_verp(settings, address.upper()) == 12345
    token = verp_token(settings, 12345)
    assert token.startswith("9ix-")  # 12345 in base 36
    forged_id = "bounces+" + "9iy" + token[token.index("-") :] + "@news.example.test"
    assert parse_verp(settings, forged_id) is None
    other_key = dataclasses.replace(settings, secret_key="another-key")
    assert parse_verp(other_key, address) is None
    assert parse_verp(settings, "papers@news.example.test") is None
    assert parse_verp(settings, "bounces+@news.example.test") is None


def test_verp_prefix_and_domain_come_from_settings(settings: Settings) -> None:
    custom = dataclasses.replace(settings, bounce_domain="Bounce.Example.ORG", bounce_prefix="rp")
    address = verp_address(custom, 7)
    assert address.startswith("rp+") and address.endswith("@bounce.example.org")
    assert parse_verp(custom, address) == 7
    assert parse_verp(settings, address) is None  # another prefix is not ours
    assert bounce_domain(settings) == "news.example.test"


def test_token_is_found_in_a_display_form_address() -> None:
    assert token_in_address("Bounces <bounces+1-abc@x.org>") == "1-abc"
    assert token_in_address("other+1-abc@x.org") is None


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        ("550 5.1.1 <a@example.org>: Recipient address rejected: User unknown", True),
        ("550 5.2.1 mailbox disabled", False),  # soft until reported again
        ("550 no such user here", True),  # no enhanced code: the words decide
        ("554 delivery error: dd This user doesn't have a yahoo.example account", True),
        ("553 sorry, that domain isn't in my list of allowed rcpthosts", False),  # relay refused
        ("550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy", False),
        ("550 5.1.1 <a@example.org>: blocked by policy", True),  # the code's family decides
        ("554 5.7.1 Message rejected as spam", False),  # the content, not the address
        ("550 5.1.8 Sender address rejected", False),  # our sender, not the recipient
        ("552 5.2.2 mailbox full", False),
        ("451 4.3.0 try again later", False),
        ("gave up after 5 attempts: 421 4.7.0 too many connections", False),
        ("invalid envelope address", False),
    ],
)
def test_permanent_recipient_failure(reply: str, permanent: bool) -> None:
    assert permanent_recipient_failure(reply) is permanent
