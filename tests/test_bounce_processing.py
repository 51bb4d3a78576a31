"""Processing returned mail from a Maildir, an mbox, stdin and IMAP; edition health."""

from __future__ import annotations

import dataclasses
import io
import json
import mailbox
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.bounces.classify import verp_token
from newsletter.bounces.mailboxes import ImapSource, StdinSource
from newsletter.bounces.process import _health, edition_health, process_bounces
from newsletter.bounces.signing import quoted_message_tokens
from newsletter.core.app import App
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from tests import factories as f
from tests.bounce_mail import (
    BOUNCES,
    HARD,
    SAMPLES,
    add_sent_deliveries,
    make_maildir,
    quoting,
    returned,
    statuses,
    suppression_reasons,
    unsigned,
)
from tests.imap_server import DovecotServer
from tests.imap_server import available as dovecot_available


@pytest.fixture
def deliveries(app: App) -> dict[str, int]:
    """One delivery sent just now per sample's subscriber, plus an untouched reader."""
    return add_sent_deliveries(app)


def forged(app: App, deliveries: dict[str, int]) -> bytes:
    """A hard bounce naming the happy reader with a token whose signature is wrong."""
    real = verp_token(app.settings, deliveries["happy@example.com"])
    token = real[:-1] + ("a" if real[-1] != "a" else "b")
    data = (BOUNCES / "postfix_hard.eml").read_bytes().replace(b"VERPTOKEN", token.encode())
    return data.replace(b"gone@example.org", b"happy@example.com")


def test_a_mixed_maildir_suppresses_exactly_the_right_addresses(app, deliveries, run, tmp_path):
    messages = [returned(app, name, deliveries[email]) for name, email in SAMPLES.items()]
    junk = (BOUNCES / "junk.bin").read_bytes()
    box = make_maildir(tmp_path / "Maildir", [*messages, junk, forged(app, deliveries)])

    result = run("bounces", "process", str(tmp_path / "Maildir"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["suppressed_addresses"] == sorted(HARD | {"angry@example.net"})
    assert (report["suppressed"], report["unsubscribed"], report["counted"]) == (4, 1, 3)
    assert (report["ignored"], report["kept"], report["messages"]) == (1, 3, 12)
    reasons = suppression_reasons(app)
    assert set(reasons) == HARD | {"angry@example.net"}
    assert reasons["angry@example.net"] == "complaint"
    assert reasons["gone@example.org"].startswith("hard bounce 5.1.1 (bad-mailbox): 550 5.1.1")
    now = statuses(app)
    assert {e for e, s in now.items() if s == "bounced"} == HARD
    assert now["angry@example.net"] == "unsubscribed"
    for email in ("slow@example.net", "later@example.com", "away@example.com", "happy@example.com"):
        assert now[email] == "confirmed"
    assert now["closed@example.com"] == "confirmed"  # a disabled mailbox, reported once
    # The three not understood stay in the inbox; the rest moved to .processed.
    kept = sorted(box.get_bytes(k) for k in box.keys())
    assert kept == sorted(
        [
            returned(app, "human_reply.eml", deliveries["curious@example.org"]),
            junk,
            forged(app, deliveries),
        ]
    )
    assert len(box.get_folder("processed")) == 9
    details = {o["detail"] for o in report["outcomes"] if o["action"] == "kept"}
    assert details == {
        "not an email message",
        "not a bounce, complaint or auto-reply",
        "no valid return path (its token is forged or not ours)",
    }


def test_a_second_run_only_reports_what_is_still_kept(app, deliveries, run, tmp_path):
    make_maildir(
        tmp_path / "box",
        [
            returned(app, "gmail_hard.eml", deliveries[SAMPLES["gmail_hard.eml"]]),
            (BOUNCES / "junk.bin").read_bytes(),
        ],
    )
    run("bounces", "process", str(tmp_path / "box"))
    again = run("bounces", "process", str(tmp_path / "box"))
    assert again.exit_code == 0
    assert "2 messages" not in again.stdout and "1 message:" in again.stdout
    assert "0 suppressed" in again.stdout and "1 kept" in again.stdout
    assert "kept " in again.stderr


def test_the_verp_token_wins_over_the_address_the_report_names(app, deliveries):
    # A forwarding address bounced: the report names it, the token names our subscriber.
    data = returned(app, "postfix_hard.eml", deliveries["slow@example.net"])
    data = data.replace(b"gone@example.org", b"forwarded@elsewhere.example")
    run = process_bounces(app, StdinSource(io.BytesIO(data), Path(app.settings.var_dir)))
    assert run.suppressed == ["slow@example.net"]
    with app.sessions() as s:
        event = s.scalars(select(BounceEvent)).one()
    assert event.delivery_id == deliveries["slow@example.net"]


def soft(app: App, deliveries: dict[str, int], n: int) -> bytes:
    data = returned(app, "postfix_delayed.eml", deliveries["slow@example.net"])
    return data.replace(b"Message-Id: <", f"Message-Id: <{n}.".encode(), 1)


def process_one(app: App, data: bytes):
    return process_bounces(app, StdinSource(io.BytesIO(data), Path(app.settings.var_dir)))


def test_soft_bounces_suppress_at_the_limit_within_the_window(app, deliveries):
    assert process_one(app, soft(app, deliveries, 1)).outcomes[0].action == "counted"
    assert process_one(app, soft(app, deliveries, 2)).outcomes[0].action == "counted"
    assert "slow@example.net" not in suppression_reasons(app)
    third = process_one(app, soft(app, deliveries, 3))
    assert third.outcomes[0].action == "suppressed"
    assert suppression_reasons(app)["slow@example.net"] == "soft bounces: 3 within 14 days"
    assert statuses(app)["slow@example.net"] == "bounced"


def test_soft_bounces_outside_the_window_do_not_count(app, deliveries):
    with app.transaction() as s:
        for n in range(5):
            s.add(
                BounceEvent(
                    email="SLOW@example.net",
                    kind="soft",
                    diagnostic="",
                    message_hash=f"old{n}",
                    created_at=utcnow() - timedelta(days=15),
                )
            )
    assert process_one(app, soft(app, deliveries, 1)).outcomes[0].detail == "1 of 3 soft bounces"
    assert "slow@example.net" not in suppression_reasons(app)


def test_soft_bounce_limit_is_a_setting(app, deliveries):
    strict = App(dataclasses.replace(app.settings, soft_bounce_limit=1))
    assert process_one(strict, soft(app, deliveries, 1)).outcomes[0].action == "suppressed"
    strict.close()


def test_the_same_message_read_twice_counts_once(app, deliveries):
    data = soft(app, deliveries, 1)
    process_one(app, data)
    assert process_one(app, data).outcomes[0].action == "duplicate"
    with app.sessions() as s:
        assert len(s.scalars(select(BounceEvent)).all()) == 1


# --- forged reports: the bounce address is public --------------------------------------

BOUNCE_DOMAIN = 'bounce_domain = "news.example.test"\n'


def test_with_a_bounce_domain_only_signed_return_paths_are_believed(app, deliveries, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(BOUNCE_DOMAIN)  # bounce_require_verp: default on
    signed = returned(app, "gmail_hard.eml", deliveries["no.such.reader@gmail.example"])
    forgeries = [
        unsigned("postfix_hard.eml", "happy@example.com"),  # a reader mailed just now
        unsigned("postfix_hard.eml", "stranger@example.org"),  # someone never subscribed
        unsigned("arf_abuse.eml", "happy@example.com"),
    ]
    box = make_maildir(tmp_path / "Maildir", [signed, *forgeries])

    result = run("bounces", "process", str(tmp_path / "Maildir"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["suppressed_addresses"] == ["no.such.reader@gmail.example"]
    assert (report["kept"], report["unsubscribed"]) == (3, 0)
    details = {o["detail"] for o in report["outcomes"] if o["action"] == "kept"}
    assert details == {"no valid return path (bounce_require_verp is on)"}
    assert set(suppression_reasons(app)) == {"no.such.reader@gmail.example"}
    assert statuses(app)["happy@example.com"] == "confirmed"
    assert sorted(box.get_bytes(k) for k in box.keys()) == sorted(forgeries)


@pytest.mark.parametrize(
    "config",
    [
        "",  # no bounce domain: no return path is signed, so none can be required
        BOUNCE_DOMAIN + "bounce_require_verp = false\n",
    ],
    ids=["no-bounce-domain", "verp-not-required"],
)
def test_without_a_signed_return_path_only_a_quoted_message_of_ours_names_a_delivery(
    app, deliveries, run, tmp_path, config
):
    (tmp_path / "newsletter.toml").write_text(config)
    with app.transaction() as s:
        old = f.subscriber(s, "old@example.com", [])
        edition = s.scalar(select(Edition))
        sent = utcnow() - timedelta(days=31)
        row = Delivery(edition_id=edition.id, subscriber_id=old.id, status="sent", sent_at=sent)
        s.add(row)
        s.flush()
        old_delivery = row.id
    happy = quoting(app, "postfix_hard.eml", deliveries["happy@example.com"], "happy@example.com")
    (token,) = quoted_message_tokens(happy)
    forged = happy.replace(
        token.encode(), token[:-1].encode() + (b"a" if token[-1] != "a" else b"b")
    )
    messages = [
        quoting(app, "postfix_hard.eml", deliveries["gone@example.org"]),
        unsigned("postfix_hard.eml", "HAPPY@example.com"),  # mailed just now, quotes nothing
        forged,  # a Message-ID of our shape, not signed by us
        # A reader quoting their own copy while naming another: only their own counts.
        quoting(app, "exim_text_hard.eml", deliveries["curious@example.org"], "happy@example.com"),
        quoting(app, "exim_text_hard.eml", old_delivery, "old@example.com"),  # 31 days ago
        unsigned("arf_abuse.eml", "stranger@example.org"),
    ]
    make_maildir(tmp_path / "Maildir", messages)

    result = run("bounces", "process", str(tmp_path / "Maildir"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["suppressed_addresses"] == ["curious@example.org", "gone@example.org"]
    assert set(suppression_reasons(app)) == {"curious@example.org", "gone@example.org"}
    assert statuses(app)["happy@example.com"] == "confirmed"
    assert statuses(app)["old@example.com"] == "confirmed"
    kept = sorted(o["detail"] for o in report["outcomes"] if o["action"] == "kept")
    unsigned_detail = "no signed return path, and it quotes no message of ours"
    assert kept == [
        unsigned_detail,
        unsigned_detail,
        unsigned_detail,
        "quotes a message of ours not sent within 30 days",
    ]


def test_recent_days_is_a_setting(app, deliveries, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text("bounce_recent_days = 60\n")
    with app.transaction() as s:
        old = f.subscriber(s, "old@example.com", [])
        sent = utcnow() - timedelta(days=31)
        row = Delivery(edition_id=s.scalar(select(Edition.id)), subscriber_id=old.id,
                       status="sent", sent_at=sent)  # fmt: skip
        s.add(row)
        s.flush()
        delivery_id = row.id
    data = quoting(app, "exim_text_hard.eml", delivery_id, "old@example.com")
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0 and "suppressed old@example.com" in result.stdout


def test_a_signed_return_path_of_a_delivery_no_longer_stored_names_nobody(
    app, deliveries, run, tmp_path
):
    # The token is genuine (the reader saw it in their copy's Return-Path), but their data
    # was deleted since: the address the report names must not be believed instead.
    data = returned(app, "postfix_hard.eml", deliveries["happy@example.com"])
    data = data.replace(b"gone@example.org", b"stranger@example.org")
    with app.transaction() as s:
        s.delete(s.get(Delivery, deliveries["happy@example.com"]))
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0, result.output
    assert "return path names a delivery no longer stored" in result.stderr
    assert suppression_reasons(app) == {}


@pytest.mark.parametrize(
    "config",
    [
        'bounce_require_verp = "maybe"\n',  # refused even where no return path is signed
        BOUNCE_DOMAIN + 'bounce_require_verp = "maybe"\n',
        BOUNCE_DOMAIN + "bounce_recent_days = 0\n",
    ],
)
def test_a_bad_trust_setting_stops_before_reading(app, deliveries, run, tmp_path, config):
    (tmp_path / "newsletter.toml").write_text(config)
    make_maildir(tmp_path / "Maildir", [unsigned("postfix_hard.eml", "stranger@example.org")])
    result = run("bounces", "process", str(tmp_path / "Maildir"))
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert suppression_reasons(app) == {}


def test_stdin_keeps_what_it_does_not_understand_under_var(app, deliveries, run, tmp_path):
    result = run("bounces", "process", "-", input=(BOUNCES / "junk.bin").read_bytes())
    assert result.exit_code == 0  # an MTA pipe must not bounce the bounce
    kept = list((Path(app.settings.var_dir) / "bounces" / "kept").iterdir())
    assert [p.read_bytes() for p in kept] == [(BOUNCES / "junk.bin").read_bytes()]
    assert str(kept[0]) in result.stderr


def test_stdin_with_a_from_line_is_processed(app, deliveries, run):
    data = b"From MAILER-DAEMON Fri Nov 27 08:00:05 2026\n" + returned(
        app, "exim_text_hard.eml", deliveries["nobody@example.com"]
    )
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0 and "suppressed nobody@example.com" in result.stdout
    assert statuses(app)["nobody@example.com"] == "bounced"


def subjects(path: Path) -> list[str]:
    box = mailbox.mbox(path, create=False)
    try:
        return [m["Subject"] for m in box]
    finally:
        box.close()


def test_mbox_moves_processed_messages_and_keeps_the_rest(app, deliveries, run, tmp_path):
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    box.add(returned(app, "microsoft_hard.eml", deliveries["absent@outlook.example"]))
    box.add(returned(app, "human_reply.eml", deliveries["curious@example.org"]))
    box.close()
    result = run("bounces", "process", str(path))
    assert result.exit_code == 0, result.output
    assert subjects(path) == ["Re: Daily Papers: 27 November 2026"]
    archive = tmp_path / "bounces.mbox.processed"
    assert subjects(archive) == ["Undeliverable: Daily Papers: 27 November 2026"]
    assert statuses(app)["absent@outlook.example"] == "bounced"


def test_bad_sources_are_usage_errors_that_change_nothing(app, run, tmp_path):
    missing = run("bounces", "process", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such Maildir or mbox file" in missing.stderr
    (tmp_path / "plain").mkdir()
    not_maildir = run("bounces", "process", str(tmp_path / "plain"))
    assert not_maildir.exit_code == 2 and "not a Maildir" in not_maildir.stderr
    both = run("bounces", "process", "-", "--imap", "imaps://u@h/INBOX")
    assert both.exit_code == 2
    plain = run("bounces", "process", "--imap", "imap://u:secret@mail.example/INBOX")
    assert plain.exit_code == 2 and "TLS only" in plain.stderr and "secret" not in plain.stderr


# --- IMAP -------------------------------------------------------------------------------


class FakeImap:
    """Speaks the part of imaplib.IMAP4's interface the IMAP source uses, over a dict."""

    def __init__(self, messages: dict[str, bytes], *, uidplus: bool = True) -> None:
        self.messages = messages
        self.flags: dict[str, set[str]] = {uid: set() for uid in messages}
        self.expunged: list[str] = []
        self.uidplus = uidplus
        self.calls: list[tuple] = []

    def __call__(self, host: str, port: int) -> FakeImap:
        self.calls.append(("connect", host, port))
        return self

    def login(self, user: str, password: str) -> tuple[str, list[bytes]]:
        self.calls.append(("login", user, password))
        return "OK", [b"logged in"]

    def select(self, folder: str) -> tuple[str, list[bytes]]:
        self.calls.append(("select", folder))
        return "OK", [str(len(self.messages)).encode()]

    def capability(self) -> tuple[str, list[bytes]]:
        return "OK", [b"IMAP4rev1 UIDPLUS" if self.uidplus else b"IMAP4rev1"]

    def uid(self, command: str, *args: object) -> tuple[str, list]:
        self.calls.append(("uid", command, *args))
        if command == "SEARCH":
            live = [u for u in self.messages if "\\Deleted" not in self.flags[u]]
            return "OK", [" ".join(live).encode()]
        if command == "FETCH":
            uid, what = args
            # Fetching must not mark messages \Seen, and takes only the first 2 MB.
            assert what == "(BODY.PEEK[]<0.2000000>)"
            return "OK", [(f"{uid} (UID {uid} BODY[] {{n}}".encode(), self.messages[uid]), b")"]
        if command == "STORE":
            uids, op, flags = args
            assert op == "+FLAGS"
            for uid in str(uids).split(","):
                self.flags[uid] |= set(str(flags).strip("()").split())
            return "OK", []
        if command == "EXPUNGE":
            (uids,) = args
            for uid in str(uids).split(","):
                assert "\\Deleted" in self.flags[uid]
                del self.messages[uid]
                self.expunged.append(uid)
            return "OK", []
        raise AssertionError(f"unexpected UID {command}")

    def logout(self) -> tuple[str, list[bytes]]:
        return "BYE", []


def test_imap_flags_and_expunges_only_what_it_understood(app, deliveries):
    fake = FakeImap(
        {
            "11": returned(app, "gmail_hard.eml", deliveries["no.such.reader@gmail.example"]),
            "12": returned(app, "human_reply.eml", deliveries["curious@example.org"]),
            "13": returned(app, "arf_abuse.eml", deliveries["angry@example.net"]),
        }
    )
    source = ImapSource(
        "imaps://bounces%40news.example.test:p%40ss@imap.example:1993/Bounces", connect=fake
    )
    run = process_bounces(app, source)
    source.close()
    assert ("login", "bounces@news.example.test", "p@ss") in fake.calls
    assert ("connect", "imap.example", 1993) in fake.calls
    assert ("select", '"Bounces"') in fake.calls
    assert sorted(fake.expunged) == ["11", "13"]
    # The one not understood is left unread, marked only with the keyword that puts it last.
    assert list(fake.messages) == ["12"] and fake.flags["12"] == {"NewsletterKept"}
    assert run.suppressed == ["angry@example.net", "no.such.reader@gmail.example"]
    assert "p@ss" not in source.name


def test_imap_without_uidplus_only_flags(app, deliveries):
    fake = FakeImap(
        {"5": returned(app, "gmail_hard.eml", deliveries["no.such.reader@gmail.example"])},
        uidplus=False,
    )
    source = ImapSource("imaps://u@imap.example/INBOX", connect=fake, password="pw")
    process_bounces(app, source)
    assert fake.expunged == [] and fake.flags["5"] == {"\\Seen", "\\Deleted"}


@pytest.mark.skipif(not dovecot_available(), reason="needs dovecot-imapd, run as root")
def test_a_real_imap_folder_keeps_what_was_not_understood_unread(app, deliveries):
    with DovecotServer() as server:
        server.append(
            "Bounces", returned(app, "gmail_hard.eml", deliveries[SAMPLES["gmail_hard.eml"]])
        )
        server.append(
            "Bounces", returned(app, "human_reply.eml", deliveries["curious@example.org"])
        )
        server.append("Bounces", returned(app, "arf_abuse.eml", deliveries["angry@example.net"]))
        source = ImapSource(server.url("Bounces"), connect=server.connect)
        try:
            run = process_bounces(app, source)
        finally:
            source.close()
        imap = server.client("Bounces")
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        imap.logout()
    assert run.suppressed == ["angry@example.net", "no.such.reader@gmail.example"]
    assert [o.action for o in run.outcomes] == ["suppressed", "kept", "unsubscribed"]
    headers = [part for part in data if isinstance(part, tuple)]
    assert len(headers) == 1  # the two understood were expunged
    assert b"Re: Daily Papers" in headers[0][1] and b"\\Seen" not in headers[0][0]


# --- edition health ---------------------------------------------------------------------


def test_edition_health_counts_bounces_and_complaints_of_its_deliveries(app, deliveries):
    for name in ("gmail_hard.eml", "arf_abuse.eml", "postfix_delayed.eml"):
        process_one(app, returned(app, name, deliveries[SAMPLES[name]]))
    with app.sessions() as s:
        edition_id = s.scalar(select(Edition.id))
    health = edition_health(app, edition_id)
    # 11 sent copies: 1 hard bounce, 1 complaint, 1 soft bounce.
    assert health["attempted"] == 11
    assert (health["hard_bounces"], health["soft_bounces"], health["complaints"]) == (1, 1, 1)
    assert health["complaint_rate"] == pytest.approx(1 / 11)
    assert len(health["warnings"]) == 2


def test_health_warns_above_the_limits_only() -> None:
    assert _health(1, 1000, {"complaint": 1, "hard": 20})["warnings"] == []
    warned = _health(1, 1000, {"complaint": 2, "hard": 21})["warnings"]
    assert warned[0].startswith("complaint rate 0.20% is above 0.1%")
    assert warned[1].startswith("hard bounce rate 2.10% is above 2%")
    assert _health(1, 0, {})["hard_bounce_rate"] == 0.0


def test_health_command_prints_rates(app, deliveries, run):
    process_one(app, returned(app, "gmail_hard.eml", deliveries["no.such.reader@gmail.example"]))
    with app.transaction() as s:
        f.paper(s, "A language model")
    result = run("bounces", "health", "--date", f.DAY.isoformat())
    assert result.exit_code == 0, result.output
    assert "11 sent, 1 hard bounce (9.09%)" in result.stdout
    assert "warning: hard bounce rate 9.09% is above 2%" in result.stderr
    assert run("bounces", "health", "--date", "2026-01-01").exit_code == 2


def test_status_counts_are_unchanged_by_processing(app, deliveries):
    process_one(app, returned(app, "gmail_hard.eml", deliveries["no.such.reader@gmail.example"]))
    with app.sessions() as s:
        assert {d.status for d in s.scalars(select(Delivery))} == {DeliveryStatus.SENT}
        assert (
            s.scalar(select(Subscriber.status).where(Subscriber.email == "happy@example.com"))
            == SubscriberStatus.CONFIRMED
        )


def test_a_disabled_mailbox_is_suppressed_when_reported_again(app, deliveries):
    def disabled(n: int) -> bytes:
        data = returned(app, "exim_dsn_hard.eml", deliveries["closed@example.com"])
        return data.replace(b"Message-Id: <", f"Message-Id: <{n}.".encode(), 1)

    first = process_one(app, disabled(1)).outcomes[0]
    assert (first.action, first.reason) == ("counted", "mailbox-disabled")
    assert "closed@example.com" not in suppression_reasons(app)
    second = process_one(app, disabled(2)).outcomes[0]
    assert second.action == "suppressed"
    assert suppression_reasons(app)["closed@example.com"].startswith(
        "mailbox disabled, reported again"
    )


def test_a_blocked_report_is_recorded_and_suppresses_nobody(app, deliveries, run):
    data = (
        (BOUNCES / "gmail_dmarc.eml")
        .read_bytes()
        .replace(b"VERPTOKEN", verp_token(app.settings, deliveries["happy@example.com"]).encode())
    )
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0, result.output
    assert "blocked (authentication) happy@example.com" in result.stdout
    assert suppression_reasons(app) == {}
    assert statuses(app)["happy@example.com"] == "confirmed"
    with app.sessions() as s:
        event = s.scalars(select(BounceEvent)).one()
    assert (event.kind, event.reason, event.status) == ("blocked", "authentication", "5.7.26")
