"""Unsubscribe requests mailed to the List-Unsubscribe address, read by `bounces process`."""

from __future__ import annotations

import base64
import dataclasses
import json
import mailbox
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import select

from newsletter.bounces.mailboxes import ImapSource
from newsletter.bounces.process import process_bounces
from newsletter.core.app import App
from newsletter.core.models import Delivery, Edition, Subscriber
from newsletter.core.tokens import make_token
from newsletter.delivery.compose import unsubscribe_mailto
from tests import factories as f
from tests.bounce_mail import add_sent_deliveries, make_maildir, statuses
from tests.imap_server import DovecotServer
from tests.imap_server import available as dovecot_available


@pytest.fixture
def ids(app: App) -> dict[str, int]:
    """Subscriber ids by address, each sent one digest just now."""
    add_sent_deliveries(app)
    with app.sessions() as s:
        return {sub.email: sub.id for sub in s.scalars(select(Subscriber))}


def request(subject: str, to: str = "unsubscribe@news.example.test") -> bytes:
    """A message as a mail client sends it, with a ready-made Subject header value."""
    return (
        f"From: Some Reader <reader@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <req@example.com>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nThis message will unsubscribe.\r\n"
    ).encode()


def key_of(app: App, subscriber_id: int) -> str:
    with app.sessions() as s:
        return s.get(Subscriber, subscriber_id).link_key


def token_of(app: App, purpose: str, subscriber_id: int) -> str:
    return make_token(app.settings, purpose, subscriber_id, key_of(app, subscriber_id))


def advertised(app: App, subscriber_id: int) -> bytes:
    """The request for the `mailto:` List-Unsubscribe a subscriber's digest offers."""
    url = urlsplit(unsubscribe_mailto(app.settings, subscriber_id, key_of(app, subscriber_id)))
    return request(unquote(url.query.partition("subject=")[2]), unquote(url.path))


def encoded_words(text: str) -> str:
    """The subject as RFC 2047 base64 words folded over two lines, as some clients send it."""
    half = len(text) // 2
    words = [base64.b64encode(part.encode()).decode() for part in (text[:half], text[half:])]
    return f"=?utf-8?b?{words[0]}?=\r\n =?UTF-8?B?{words[1]}?="


def forged_token(app: App, subscriber_id: int) -> str:
    token = token_of(app, "unsubscribe", subscriber_id)
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


def test_a_maildir_of_requests_unsubscribes_exactly_the_token_holders(app, ids, run, tmp_path):
    token = token_of(app, "unsubscribe", ids["slow@example.net"])
    genuine = [
        advertised(app, ids["happy@example.com"]),
        request(encoded_words(f"UNSUBSCRIBE  {token}")),
    ]
    refused = [
        request(f"unsubscribe {forged_token(app, ids['gone@example.org'])}"),
        # Signed by us, but for the preferences page: not an unsubscribe token.
        request(f"unsubscribe {token_of(app, 'manage', ids['closed@example.com'])}"),
        request("unsubscribe"),
        request("Unsubscribe me please, nobody@example.com"),
    ]
    box = make_maildir(tmp_path / "Maildir", [*genuine, *refused])

    result = run("bounces", "process", str(tmp_path / "Maildir"), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unsubscribed_by_mail"] == 2 and report["kept"] == 4
    assert report["unsubscribed_by_mail_addresses"] == ["happy@example.com", "slow@example.net"]
    now = statuses(app)
    assert {e for e, st in now.items() if st == "unsubscribed"} == {
        "happy@example.com",
        "slow@example.net",
    }
    assert sorted(box.get_bytes(k) for k in box.keys()) == sorted(refused)
    assert len(box.get_folder("processed")) == 2
    text = run("bounces", "process", str(tmp_path / "Maildir"))
    assert "0 unsubscribed by mail" in text.stdout and "4 kept" in text.stdout
    assert text.stderr.count("unsubscribe request without a valid token") == 4


def test_a_piped_request_unsubscribes_like_the_one_click_link(app, ids, run):
    with app.transaction() as s:
        tomorrow = Edition(listing_date=f.DAY + timedelta(days=1))
        s.add(tomorrow)
        s.flush()
        pending = Delivery(
            edition_id=tomorrow.id, subscriber_id=ids["happy@example.com"], status="pending"
        )
        s.add(pending)
    data = advertised(app, ids["happy@example.com"])
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0, result.output
    assert "1 unsubscribed by mail" in result.stdout
    assert "unsubscribed by mail happy@example.com" in result.stdout
    with app.sessions() as s:
        happy = s.get(Subscriber, ids["happy@example.com"])
        assert happy.status.value == "unsubscribed" and happy.unsubscribed_at is not None
        assert s.get(Delivery, pending.id).status.value == "skipped"


def test_a_piped_forged_request_is_kept(app, ids, run):
    data = request(f"unsubscribe {forged_token(app, ids['happy@example.com'])}")
    result = run("bounces", "process", "-", input=data)
    assert result.exit_code == 0, result.output
    kept = list((Path(app.settings.var_dir) / "bounces" / "kept").iterdir())
    assert [p.read_bytes() for p in kept] == [data]
    assert statuses(app)["happy@example.com"] == "confirmed"


def test_an_mbox_request_is_processed_and_a_forged_one_kept(app, ids, run, tmp_path):
    path = tmp_path / "requests.mbox"
    box = mailbox.mbox(path)
    box.add(advertised(app, ids["angry@example.net"]))
    box.add(request(f"unsubscribe {forged_token(app, ids['happy@example.com'])}"))
    box.close()
    result = run("bounces", "process", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["unsubscribed_by_mail_addresses"] == ["angry@example.net"]
    left = mailbox.mbox(path, create=False)
    assert len(left) == 1
    left.close()
    assert statuses(app)["happy@example.com"] == "confirmed"


@pytest.mark.skipif(not dovecot_available(), reason="needs dovecot-imapd, run as root")
def test_an_imap_request_is_expunged_and_a_forged_one_left_unread(app, ids):
    with DovecotServer() as server:
        server.append("Bounces", advertised(app, ids["later@example.com"]))
        server.append("Bounces", request("unsubscribe not-a-token"))
        source = ImapSource(server.url("Bounces"), connect=server.connect)
        try:
            run = process_bounces(app, source)
        finally:
            source.close()
        imap = server.client("Bounces")
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        imap.logout()
    assert [o.action for o in run.outcomes] == ["unsubscribed_by_mail", "kept"]
    assert statuses(app)["later@example.com"] == "unsubscribed"
    headers = [part for part in data if isinstance(part, tuple)]
    assert len(headers) == 1 and b"not-a-token" in headers[0][1]


def test_the_unsubscribe_mailto_setting_names_the_address_digests_offer(app: App) -> None:
    assert unsubscribe_mailto(app.settings, 1, "k").startswith(
        "mailto:unsubscribe@news.example.test?subject=unsubscribe%20"
    )
    own = dataclasses.replace(app.settings, unsubscribe_mailto="leave@lists.example.org")
    assert unsubscribe_mailto(own, 1, "k").startswith("mailto:leave@lists.example.org?subject=")
