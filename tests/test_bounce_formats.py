"""Returned mail as real mail systems write it: each report lands as the rules say.

The samples under fixtures/bounces/flufl/ are real bounces collected by the flufl.bounce
project; the .eml samples follow the formats and wording of the systems they are named after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.bounces.classify import BounceKind, parse_bounce, verp_token
from newsletter.core.app import App
from newsletter.core.models import BounceEvent, Delivery, Edition
from tests import factories as f
from tests.bounce_mail import BOUNCES, make_maildir, statuses, suppression_reasons

FLUFL = BOUNCES / "flufl"

# sample: (kind, reason, the failed recipient the report names)
CASES = {
    # RFC 3464 reports
    "postfix_hard.eml": ("hard", "bad-mailbox", "gone@example.org"),
    "exim_dsn_hard.eml": ("soft", "mailbox-disabled", "closed@example.com"),
    "gmail_hard.eml": ("hard", "bad-mailbox", "no.such.reader@gmail.example"),
    "microsoft_hard.eml": ("hard", "bad-mailbox", "absent@outlook.example"),
    "postfix_mailbox_full.eml": ("soft", "mailbox-full", "hoarder@example.org"),
    "gmail_dmarc.eml": ("blocked", "authentication", "dmarc.reader@gmail.example"),
    "outlook_blocklist.eml": ("blocked", "reputation", "listed@hotmail.example"),
    "yahoo_policy.eml": ("blocked", "policy", "filtered@yahoo.example"),
    "flufl/dsn_11.txt": ("hard", "bad-mailbox", "joem@example.com"),  # Sendmail
    "flufl/dsn_16.txt": ("hard", "bad-mailbox", "userx@example.com"),  # Postfix, 5.0.0
    "flufl/dsn_17.txt": ("soft", "mailbox-full", "xxx@example.fi"),  # 4.3.0 "Quota exceeded"
    "flufl/dsn_02.txt": ("soft", "expired", "zzzzz@example.uk"),  # X.400 gateway
    "flufl/simple_42.txt": ("blocked", "spam", "david...@gmail.com"),  # Gmail spam block
    # plain-text formats
    "exim_text_hard.eml": ("hard", "bad-mailbox", "nobody@example.com"),
    "flufl/exim_01.txt": ("hard", "bad-mailbox", "userx@its.example.nl"),
    "flufl/qmail_05.txt": ("hard", "bad-mailbox", "userx@example.com"),
    "flufl/qmail_01.txt": ("soft", "unclassified", "userx@example.de"),  # no reason given
    "flufl/sendmail_01.txt": ("soft", "network", "zzzzz@nfg.nl"),  # a loop: too many hops
    "flufl/microsoft_01.txt": ("hard", "bad-mailbox", "userx@example.COM"),  # Exchange
    "flufl/groupwise_01.txt": ("hard", "bad-mailbox", "userx@example.EDU"),
    "flufl/yahoo_11.txt": ("hard", "bad-mailbox", "bad_user@aol.com"),
    "flufl/yahoo_05.txt": ("soft", "mailbox-disabled", "userx@example.com"),
    "flufl/yahoo_01.txt": ("soft", "expired", "userx@example.com"),  # gave up on 4.4.1
    "flufl/aol_01.txt": ("blocked", "policy", "screenname@aol.com"),
    "flufl/smtp32_01.txt": ("soft", "unclassified", "userx@example.ph"),
    "flufl/simple_05.txt": ("hard", "bad-mailbox", "userx@example.net"),  # sbcglobal text
    "flufl/simple_07.txt": ("soft", "mailbox-full", "userx@example.net"),
    "flufl/hotpop_01.txt": ("soft", "mailbox-full", "userx@example.com"),
    "flufl/newmailru_01.txt": ("soft", "mailbox-full", "zzzzz@newmail.ru"),
    "flufl/netscape_01.txt": ("soft", "unclassified", "aaaaa@corel.com"),
    "unknown_charset.eml": ("hard", "bad-mailbox", "weg@kabelnetz.example"),
    # complaints from three providers, each naming the reader another way
    "arf_abuse.eml": ("complaint", "complaint", "angry@example.net"),  # Original-Rcpt-To
    "arf_yahoo.eml": ("complaint", "complaint", "tired.reader@yahoo.example"),  # enclosed To
    "arf_outlook_redacted.eml": ("complaint", "complaint", None),  # only the return path
}


def sample(name: str) -> bytes:
    return (BOUNCES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_format_is_read_as_the_rules_say(name: str) -> None:
    report = parse_bounce(sample(name))
    assert report is not None
    assert (report.kind.value, report.reason, report.recipient) == CASES[name]


@pytest.mark.parametrize("name", ["flufl/qmail_08.txt", "flufl/simple_38.txt", "auto_reply.eml"])
def test_auto_replies_are_not_bounces(name: str) -> None:
    report = parse_bounce(sample(name))
    assert report is not None and report.kind == BounceKind.AUTO_REPLY


def test_every_real_sample_is_read_without_error_and_failures_have_a_reason() -> None:
    samples = sorted(FLUFL.glob("*.txt"))
    assert len(samples) > 100
    understood = 0
    for path in samples:
        report = parse_bounce(path.read_bytes())
        assert report is not None, path.name
        if report.kind in (BounceKind.HARD, BounceKind.SOFT, BounceKind.BLOCKED):
            assert report.reason and report.recipient, path.name
            understood += 1
    # Mailman's detectors find a recipient in all but a handful (no address, or not a bounce).
    assert understood >= 105


def test_a_report_nobody_reads_at_a_signed_return_path_counts_as_soft() -> None:
    report = parse_bounce(sample("unrecognized_report.eml"))
    assert report is not None
    assert (report.kind, report.reason, report.verp_token) == (
        BounceKind.SOFT,
        "unrecognized",
        "verptoken",
    )
    # The same words from a person, or not sent to a return path, are left for a person.
    person = (
        sample("unrecognized_report.eml")
        .replace(b"Return-Path: <>", b"Return-Path: <someone@example.org>")
        .replace(b"mailer-daemon@", b"someone@")
    )
    assert parse_bounce(person).kind == BounceKind.UNKNOWN
    elsewhere = sample("unrecognized_report.eml").replace(b"bounces+VERPTOKEN@", b"info@")
    assert parse_bounce(elsewhere).kind == BounceKind.UNKNOWN


def test_a_token_only_in_the_enclosed_original_is_not_an_arrival() -> None:
    # Forwarding a digest (with its Return-Path) to the bounce address is not a bounce.
    forwarded = (
        b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.org\nTo: bounces@news.example.test\n"
        b"Subject: fwd\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: message/rfc822\n\n"
        b"Return-Path: <bounces+1-abcdefghijkl@news.example.test>\nSubject: x\n\nbody\n--b--\n"
    )
    report = parse_bounce(forwarded)
    assert report is not None and report.kind == BounceKind.UNKNOWN


def deeply_nested(depth: int = 3000) -> bytes:
    """A message whose MIME parts nest deeper than any reader recurses."""
    head = b"From: MAILER-DAEMON@mx.example.org\nSubject: x\nMIME-Version: 1.0\n"
    data = head + b'Content-Type: multipart/mixed; boundary="b0"\n\n'
    for level in range(1, depth):
        data += b'--b%d\nContent-Type: multipart/mixed; boundary="b%d"\n\n' % (level - 1, level)
    return data + b"--b%d\nContent-Type: text/plain\n\nx\n" % (depth - 1)


# --- a Maildir of all of them, through the command -------------------------------------

BOUNCE_DOMAIN = 'bounce_domain = "news.example.test"\n'


def reader(name: str) -> str:
    """The subscriber a sample comes back about: one per sample, named after it."""
    return Path(name).stem.replace("_", ".") + "@readers.example"


def delivered_to_return_path(app: App, name: str, delivery_id: int) -> bytes:
    """A sample as it arrives at one delivery's signed return path."""
    token = verp_token(app.settings, delivery_id).encode()
    data = sample(name).replace(b"VERPTOKEN", token)
    if token in data:
        return data
    # The flufl samples come from other lists: the receiving MTA adds where it delivered them.
    return b"Delivered-To: bounces+" + token + b"@news.example.test\n" + data


def send_to_readers(app: App, names: list[str]) -> dict[str, int]:
    with app.transaction() as s:
        edition = Edition(listing_date=f.DAY)
        s.add(edition)
        s.flush()
        ids = {}
        for name in names:
            sub = f.subscriber(s, reader(name), [])
            row = Delivery(edition_id=edition.id, subscriber_id=sub.id, status="sent")
            s.add(row)
            s.flush()
            ids[name] = row.id
    return ids


def test_a_maildir_of_returned_mail_from_many_systems(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)
    names = [*CASES, "unrecognized_report.eml", "auto_reply.eml"]
    ids = send_to_readers(app, names)
    messages = [delivered_to_return_path(app, n, ids[n]) for n in names]
    broken = deeply_nested()
    box = make_maildir(tmp_path / "Maildir", [*messages, broken])

    result = run("bounces", "process", str(tmp_path / "Maildir"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_reader = {o["email"]: o for o in report["outcomes"] if o["email"]}
    for name, (kind, reason, _) in CASES.items():
        outcome = by_reader[reader(name)]
        assert (outcome["kind"], outcome["reason"]) == (kind, reason), name
    hard = {reader(n) for n, (kind, _, _) in CASES.items() if kind == "hard"}
    complained = {reader(n) for n, (kind, _, _) in CASES.items() if kind == "complaint"}
    assert set(suppression_reasons(app)) == hard | complained
    now = statuses(app)
    blocked = [reader(n) for n, (kind, _, _) in CASES.items() if kind == "blocked"]
    assert blocked and all(now[email] == "confirmed" for email in blocked)
    assert report["blocked"] == len(blocked)
    assert by_reader[reader("unrecognized_report.eml")]["action"] == "counted"
    assert [o["action"] for o in report["outcomes"] if o["kind"] == "auto-reply"] == ["ignored"]
    # The one message that could not be read is kept and says why; nothing else stopped.
    kept = [o for o in report["outcomes"] if o["action"] == "kept"]
    assert [o["detail"].split(":")[0] for o in kept] == ["could not be read"]
    assert "RecursionError" in kept[0]["detail"]
    assert [box.get_bytes(k) for k in box.keys()] == [broken]
    with app.sessions() as s:
        events = {e.email: e.reason for e in s.scalars(select(BounceEvent))}
    assert events[reader("gmail_dmarc.eml")] == "authentication"
    assert events[reader("postfix_mailbox_full.eml")] == "mailbox-full"


def test_health_and_status_count_by_reason(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)
    names = ["postfix_hard.eml", "gmail_hard.eml", "gmail_dmarc.eml", "postfix_mailbox_full.eml"]
    ids = send_to_readers(app, names)
    make_maildir(tmp_path / "box", [delivered_to_return_path(app, n, ids[n]) for n in names])
    assert run("bounces", "process", str(tmp_path / "box")).exit_code == 0
    with app.transaction() as s:
        f.paper(s, "A language model")

    health = json.loads(run("bounces", "health", "--json").stdout)
    status = json.loads(run("status", "--json").stdout)
    text = run("bounces", "health").stdout
    status_text = run("status").stdout

    expected = {"bad-mailbox": 2, "authentication": 1, "mailbox-full": 1}
    assert health["by_reason"] == expected
    assert list(health["by_reason"]) == ["bad-mailbox", "authentication", "mailbox-full"]
    assert (health["hard_bounces"], health["soft_bounces"], health["blocked"]) == (2, 1, 1)
    assert status["health"]["by_reason"] == expected
    assert "by reason: bad-mailbox 2, authentication 1, mailbox-full 1" in text
    assert "1 blocked" in text
    assert "by reason: bad-mailbox 2, authentication 1, mailbox-full 1" in status_text


TEXT_DSN = b"""Return-Path: <>
From: MAILER-DAEMON@mx.example.org
To: bounces+VERPTOKEN@news.example.test
Subject: Delivery failure

This message could not be delivered.

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; gone@example.org
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 no such user
"""


def test_report_fields_a_mail_system_writes_into_plain_text_are_read() -> None:
    report = parse_bounce(TEXT_DSN)
    assert report is not None
    assert (report.kind, report.reason, report.recipient) == (
        BounceKind.HARD,
        "bad-mailbox",
        "gone@example.org",
    )
    # The same text from a person (a reader quoting a report) is no report.
    person = TEXT_DSN.replace(b"Return-Path: <>", b"Return-Path: <me@example.org>").replace(
        b"MAILER-DAEMON@", b"me@"
    )
    quoted = parse_bounce(person)
    assert quoted is not None and quoted.kind != BounceKind.HARD
