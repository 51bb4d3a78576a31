"""What strangers, forwarded emails and scripts can do with the public pages, through HTTP:
sign-ups for someone else's address, old links, vote floods, forwarded headers, locks."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.client
import mailbox
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from newsletter.core import tokens
from newsletter.core.app import App
from newsletter.core.models import (
    ConsentEvent,
    FeedbackVote,
    QueuedMail,
    RateLimit,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.delivery import mail_queue
from newsletter.delivery import service as sending
from tests import factories as f
from tests.html_forms import form_fields

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OWNER = "owner@example.org"
EVIL_NAME = "SECURITY NOTICE: your account is locked, see https://evil.example"


@pytest.fixture
def client(app):
    with app.transaction() as s:
        llm, rl = f.topic(s, "llm"), f.topic(s, "rl")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Policy gradients with a twist", topics={rl: 1.5}, upvotes=25)
    return f.web_app(app).test_client()


def _sign_up(client, address=OWNER, **fields):
    csrf = CSRF.search(client.get("/").get_data(as_text=True)).group(1)
    data = {"frequency": "daily", "hour": "8", "timezone": "UTC", "topics": ["llm"]}
    return client.post("/", data={**data, "email": address, "csrf_token": csrf, **fields})


def _mails(app, to=OWNER):
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    found = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    return [m for m in found if m["To"].addresses[0].addr_spec == to]


def _link(message, purpose):
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https://news\.example\.test(/{purpose}/\S+)", text).group(1)


def _row(app, address=OWNER):
    with app.sessions() as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email == address))
        if row is not None:
            row.slugs = sorted(x.topic.slug for x in row.subscriptions)
        return row


def _next_mail_allowed(app):
    """Let the form mail the address again (as ten minutes later)."""
    with app.transaction() as s:
        s.execute(delete(RateLimit).where(RateLimit.key.startswith("mail:")))


def _press_confirm(client, link):
    """Open the confirm link and press the button, leaving the form as it came."""
    return client.post(link, data=form_fields(client.get(link).get_data(as_text=True), "/confirm/"))


def _digests(app, to=OWNER):
    return [m for m in _mails(app, to) if m["List-Unsubscribe"]]


# --- the sign-up form takes what it shows; a confirm link applies its own sign-up -------


def test_the_sign_up_form_ignores_fields_it_does_not_show(client, app):
    hidden = {
        "muted_words": "transformers; diffusion",
        "personal_keywords": "crypto",
        "follow_authors": "Mallory Evil",
        "max_papers": "1",
        "weekly_day": "4",
        "paused": "on",
    }
    assert _sign_up(client, name="Owner", **hidden).status_code == 303
    (confirmation,) = _mails(app)
    link = _link(confirmation, "confirm")
    assert _press_confirm(client, link).status_code == 303
    row = _row(app)
    assert row.status == SubscriberStatus.CONFIRMED and row.name == "Owner"
    assert (row.muted_words, row.personal_keywords, row.follow_authors) == ([], [], [])
    assert (row.max_papers, row.weekly_day, row.paused) == (10, 0, False)
    with app.sessions() as s:
        stored = [e.details.get("prefs", {}) for e in s.scalars(select(ConsentEvent))]
    assert all(p.get("muted_words") is None and p.get("max_papers") != 1 for p in stored)


def test_the_owners_link_applies_the_owners_sign_up_never_a_strangers(client, app):
    assert _sign_up(client, name="Owner", topics=["llm"]).status_code == 303
    (own_mail,) = _mails(app)
    stranger = f.web_app(app).test_client()  # another visitor, minutes later
    assert _sign_up(stranger, name=EVIL_NAME, topics=["rl"]).status_code == 303
    assert len(_mails(app)) == 1  # one email per address per ten minutes

    own = _link(own_mail, "confirm")
    page = client.get(own).get_data(as_text=True)
    fields = form_fields(page, "/confirm/")
    assert client.post(own, data=fields).status_code == 303  # the owner presses the button

    row = _row(app)
    assert (row.status, row.name, row.slugs) == (SubscriberStatus.CONFIRMED, "Owner", ["llm"])
    # What the page showed before the button: the owner's own choices.
    assert (fields.get("name"), fields.get("topics")) == ("Owner", "llm")
    assert "evil.example" not in page
    sending.send(app, f.DAY)
    (digest,) = _digests(app)
    assert digest["To"].addresses[0].display_name == "Owner"
    assert "Owner" in digest.get_body(("plain",)).get_content()
    assert "evil.example" not in digest.as_string() and "SECURITY NOTICE" not in str(digest["To"])
    assert "Scaling laws" in digest.as_string() and "Policy gradients" not in digest.as_string()


def test_a_strangers_sign_up_is_shown_to_the_owner_who_can_change_it(client, app):
    stranger = f.web_app(app).test_client()
    assert _sign_up(stranger, name=EVIL_NAME, topics=["rl"]).status_code == 303
    (mail,) = _mails(app)
    link = _link(mail, "confirm")
    page = client.get(link).get_data(as_text=True)
    assert "SECURITY NOTICE" in page and 'value="rl" id="topic-rl" checked' in page
    assert _row(app).status == SubscriberStatus.PENDING
    fields = {**form_fields(page, "/confirm/"), "name": "Owner", "topics": ["llm"]}
    bad = client.post(link, data={**fields, "topics": [], "hour": "99"})  # mistakes: shown
    assert bad.status_code == 400 and _row(app).status == SubscriberStatus.PENDING
    assert "Choose at least one topic" in bad.get_data(as_text=True)
    assert client.post(link, data=fields).status_code == 303
    row = _row(app)
    assert (row.status, row.name, row.slugs) == (SubscriberStatus.CONFIRMED, "Owner", ["llm"])
    with app.sessions() as s:
        confirm = s.scalars(select(ConsentEvent).where(ConsentEvent.kind == "confirm")).one()
    assert confirm.details["prefs"]["name"] == "Owner"  # what was applied, in the history


def test_after_confirming_the_confirm_link_gives_no_manage_page(client, app):
    _sign_up(client, name="Owner")
    link = _link(_mails(app)[0], "confirm")
    assert _press_confirm(client, link).status_code == 303
    again = client.get(link)
    assert again.status_code == 200 and "Location" not in again.headers
    page = again.get_data(as_text=True)
    assert "Already confirmed" in page and "/manage/" not in page and "/unsubscribe/" not in page
    csrf = CSRF.search(client.get("/").text).group(1)
    posted = client.post(link, data={"csrf_token": csrf})
    assert posted.status_code == 200 and "/manage/" not in posted.get_data(as_text=True)


# --- an unsubscribe link undoes itself only for a while -----------------------------------


def _unsubscribed(app, client, hours_ago: float):
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        reader = f.subscriber(s, OWNER, [llm])
        reader.confirmed_at = utcnow() - timedelta(days=30)
        sid, key = reader.id, reader.link_key
    token = tokens.make_token(app.settings, "unsubscribe", sid, key)
    done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    with app.transaction() as s:
        s.get(Subscriber, sid).unsubscribed_at = utcnow() - timedelta(hours=hours_ago)
    return token, done


def test_an_old_unsubscribe_link_no_longer_resubscribes(client, app):
    token, done = _unsubscribed(app, client, hours_ago=25)
    assert "You are unsubscribed" in done.get_data(as_text=True)
    page = client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    assert "/resubscribe/" not in page and 'href="/"' in page  # a new sign-up instead
    csrf = CSRF.search(client.get("/").text).group(1)
    back = client.post(f"/resubscribe/{token}", data={"csrf_token": csrf})
    assert back.status_code == 400 and "subscribe again" in back.get_data(as_text=True)
    assert _row(app).status == SubscriberStatus.UNSUBSCRIBED
    sending.send(app, f.DAY)
    assert _digests(app) == []


def test_the_unsubscribe_link_undoes_within_the_window(client, app):
    token, _ = _unsubscribed(app, client, hours_ago=23)
    page = client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    back = client.post(f"/resubscribe/{token}", data={"csrf_token": CSRF.search(page).group(1)})
    assert back.status_code == 200 and "Welcome back" in back.get_data(as_text=True)
    assert _row(app).status == SubscriberStatus.CONFIRMED


def test_the_window_is_a_setting(client, app):
    token, _ = _unsubscribed(app, client, hours_ago=3)
    app.settings = dataclasses.replace(app.settings, resubscribe_window_hours=2)
    short = f.web_app(app).test_client()
    csrf = CSRF.search(short.get("/").text).group(1)
    assert short.post(f"/resubscribe/{token}", data={"csrf_token": csrf}).status_code == 400


# --- votes: only from subscribers, and not in floods ------------------------------------


def _vote_path(app, address=OWNER, title="Scaling laws for tiny models"):
    with app.sessions() as s:
        reader = s.scalar(select(Subscriber).where(Subscriber.email == address))
        paper = s.scalar(select(f.Paper).where(f.Paper.title == title))
        url = tokens.feedback_url(app.settings, reader.id, reader.link_key, paper.id)
    return url.split("news.example.test", 1)[1]


def _votes(app):
    with app.sessions() as s:
        return s.scalar(select(func.count(FeedbackVote.id)))


@pytest.fixture
def reader(app, client):
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        return f.subscriber(s, OWNER, [llm]).id


def test_votes_of_someone_no_longer_subscribed_do_not_count(app, client, reader):
    path = _vote_path(app)
    with app.transaction() as s:
        s.get(Subscriber, reader).status = SubscriberStatus.UNSUBSCRIBED
    nobody = f.web_app(app).test_client(use_cookies=False)
    refused = nobody.post(path + "/more")
    assert refused.status_code == 403 and "not counted" in refused.get_data(as_text=True)
    assert nobody.post(path + "/undo").status_code == 403
    assert _votes(app) == 0
    assert nobody.get(path + "/more").status_code == 200  # the page itself still opens


def test_two_hundred_vote_posts_with_one_link_are_limited(app, client, reader):
    path = _vote_path(app) + "/less"
    voter = f.web_app(app).test_client(use_cookies=False)
    answers = [voter.post(path).status_code for _ in range(200)]
    limit = 10  # the default of votes_per_link_per_hour
    assert answers[:limit] == [200] * limit and set(answers[limit:]) == {429}
    assert voter.post(path).headers["Retry-After"] == "3600"
    assert _votes(app) == 1
    with app.sessions() as s:
        vote = s.scalar(select(FeedbackVote))
        assert vote.subscriber_id == reader and vote.vote == -1
        assert s.scalar(select(func.count()).select_from(RateLimit)) == 2  # link, network


def test_vote_posts_are_limited_per_network_too(app, client, reader):
    app.settings = dataclasses.replace(app.settings, votes_per_ip_per_hour=3)
    voter = f.web_app(app).test_client(use_cookies=False)
    paths = [_vote_path(app, title=t) for t in ("Scaling laws for tiny models",
                                                 "Policy gradients with a twist")]  # fmt: skip
    base = {"REMOTE_ADDR": "198.51.100.7"}
    answers = [voter.post(p + "/more", environ_base=base).status_code for p in paths * 2]
    assert answers == [200, 200, 200, 429]
    other = voter.post(paths[1] + "/more", environ_base={"REMOTE_ADDR": "198.51.100.8"})
    assert other.status_code == 200 and _votes(app) == 2


# --- a suppressed address rejoins by confirming -----------------------------------------


def test_a_suppressed_address_rejoins_through_the_web_by_double_opt_in(client, app):
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        old = f.subscriber(s, OWNER, [llm])
        old.status = SubscriberStatus.BOUNCED
        s.add(Suppression(email=OWNER, reason="hard bounce"))
    assert _sign_up(client, name="Owner").status_code == 303
    (confirmation,) = _mails(app)  # the same email as for any address not yet confirmed
    assert confirmation["Subject"].startswith("Confirm")
    sending.send(app, f.DAY)
    assert _digests(app) == []  # a sign-up alone lifts nothing
    link = _link(confirmation, "confirm")
    assert _press_confirm(client, link).status_code == 303
    with app.sessions() as s:
        assert s.scalar(select(func.count(Suppression.id))) == 0
        kinds = [e.kind for e in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]
    assert kinds == ["signup", "confirm", "unsuppress"]
    assert _row(app).status == SubscriberStatus.CONFIRMED
    day = f.DAY + timedelta(days=1)
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        f.paper(s, "A paper of the next day", day=day, topics={llm: 2.0}, upvotes=5)
    sending.send(app, day)
    assert len(_digests(app)) == 1


def test_a_retried_confirmation_for_a_suppressed_reader_is_sent_not_dropped(client, app):
    # A confirmed reader the admin suppressed signs up to rejoin; the first send fails.
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        f.subscriber(s, OWNER, [llm])
        s.add(Suppression(email=OWNER, reason="asked by phone"))
    assert _sign_up(client, name="Owner").status_code == 303
    assert len(_mails(app)) == 1
    with app.transaction() as s:  # as after a refused send: the row waits for its retry
        s.execute(update(QueuedMail).values(done_at=None, attempts=0, claimed_by=None))
    mail_queue.drain(app)
    retried = _mails(app)
    assert len(retried) == 2 and all(m["Subject"].startswith("Confirm") for m in retried)
    assert _press_confirm(client, _link(retried[-1], "confirm")).status_code == 303
    with app.sessions() as s:
        assert s.scalar(select(func.count(Suppression.id))) == 0


# --- a database lock never loses a sign-up ----------------------------------------------


@contextmanager
def _served(app) -> Iterator[int]:
    web = f.web_app(app)
    server = make_server("127.0.0.1", 0, web, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _post(port: int, path: str, fields: dict[str, object], cookie: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urlencode(fields, doseq=True)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    page = response.read().decode()
    conn.close()
    return response, page


@pytest.mark.only_db("sqlite")  # PostgreSQL writers lock rows, not the database: see below
def test_a_sign_up_during_a_long_write_lock_answers_503_and_keeps_what_was_typed(settings):
    # On PostgreSQL a sign-up inserts its own row and waits only for another sign-up's
    # counter row, held for one short transaction; SQLite has one lock for every writer.
    app = App(dataclasses.replace(settings, sqlite_busy_timeout=0.3))
    app.ensure_schema()
    with app.transaction() as s:
        f.topic(s, "llm")
        f.topic(s, "rl")
    with _served(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/")
        first = conn.getresponse()
        cookie = first.getheader("Set-Cookie").split(";", 1)[0]
        csrf = CSRF.search(first.read().decode()).group(1)
        conn.close()
        typed = {"email": OWNER, "name": "Ada Owner", "topics": ["rl"], "frequency": "weekly",
                 "hour": "6", "timezone": "Asia/Tokyo", "csrf_token": csrf}  # fmt: skip
        lock = sqlite3.connect(make_url(settings.database_url).database, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the wait
            busy, page = _post(port, "/", typed, cookie)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert busy.status == 503 and busy.getheader("Retry-After") == "30"
        assert "Nothing was lost" in page and "Something went wrong" not in page
        assert f'value="{OWNER}"' in page and 'value="Ada Owner"' in page
        assert 'value="rl" id="topic-rl" checked' in page and 'value="llm" id="topic-llm">' in page
        assert 'value="weekly" id="frequency-weekly" checked' in page
        assert '<option value="6" selected>' in page and "<option selected>Asia/Tokyo" in page
        with app.sessions() as s:
            assert s.scalar(select(func.count(QueuedMail.id))) == 0
        # Pressing Subscribe again, on the page as it came back, signs up.
        again, _ = _post(port, "/", form_fields(page, "/"), cookie)
        assert again.status == 303
    row = _row(app)
    assert (row.name, row.slugs, row.delivery_hour, row.timezone) == (
        "Ada Owner", ["rl"], 6, "Asia/Tokyo"
    )
    app.close()


# --- behind a reverse proxy: only the configured proxies are believed -------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sign_up_from(port: int, source: str, address: str, forwarded: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request("GET", "/", headers={"X-Forwarded-For": forwarded})
    page = conn.getresponse()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    csrf = CSRF.search(page.read().decode()).group(1)
    fields = {"email": address, "topics": "llm", "frequency": "daily", "hour": "8",
              "timezone": "UTC", "csrf_token": csrf}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
               "X-Forwarded-For": forwarded}  # fmt: skip
    conn.request("POST", "/", body=urlencode(fields), headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def _consent_ip(app, address: str) -> str:
    deadline = time.monotonic() + 30
    while _row(app, address) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the served process's mail queue records the sign-up
    return _row(app, address).consent["ip"]


def test_forwarded_addresses_count_only_from_trusted_proxies_and_only_if_addresses(
    app, env, tmp_path
):
    with app.transaction() as s:
        f.topic(s, "llm")
    (tmp_path / "newsletter.toml").write_text(
        "web_proxy_count = 1\nsubscribe_per_ip_per_hour = 1\n", encoding="utf-8"
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
            cwd=tmp_path,
            env={**env, "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        from tests.test_web_security import _wait_for_port

        _wait_for_port(port, server, log)
        # A peer that is not a configured proxy: its own address, whatever it writes.
        assert _sign_up_from(port, "127.0.0.2", "a@example.org", "203.0.113.7") == 303
        assert _consent_ip(app, "a@example.org") == "127.0.0.2"
        # The proxy (loopback by default) forwards a visitor's address: believed.
        assert _sign_up_from(port, "127.0.0.1", "b@example.org", "203.0.113.8") == 303
        assert _consent_ip(app, "b@example.org") == "203.0.113.8"
        # What is not an address is never stored nor counted: the peer's instead.
        assert _sign_up_from(port, "127.0.0.1", "c@example.org", "not-an-ip<script>") == 303
        assert _consent_ip(app, "c@example.org") == "127.0.0.1"
        assert _sign_up_from(port, "127.0.0.1", "d@example.org", "also-not-an-ip") == 429
        assert _sign_up_from(port, "127.0.0.2", "e@example.org", "198.51.100.1") == 429
        with app.sessions() as s:
            ips = {e.ip for e in s.scalars(select(ConsentEvent))}
        assert ips == {"127.0.0.2", "203.0.113.8", "127.0.0.1"}
    finally:
        server.terminate()
        server.wait(10)


def test_trusted_proxies_must_be_addresses_or_networks(run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(
        'web_trusted_proxies = ["10.0.0.0/8", "proxy.example"]\n', encoding="utf-8"
    )
    result = run("config")
    assert result.exit_code == 2 and "web_trusted_proxies" in result.output
    assert "proxy.example" in result.output  # the value that is not an address
    assert len(result.output.strip().splitlines()) == 1
