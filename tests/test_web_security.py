"""Attacks on the public pages, through served HTTP: old links, link scanners, a stalled
relay, a reverse proxy, forged Host headers, and what each kind of link may do."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.client
import mailbox
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from newsletter.audience import signup as svc
from newsletter.core import tokens
from newsletter.core.models import (
    ConsentEvent,
    QueuedMail,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.delivery.mail_queue import drain
from newsletter.web import create_app
from tests import factories as f
from tests.smtp_server import Fault, SmtpTestServer

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM = {"frequency": "daily", "hour": "8", "timezone": "UTC", "topics": ["llm"]}


@pytest.fixture
def client(app):
    with app.transaction() as s:
        f.topic(s, "llm")
    return f.web_app(app).test_client()


def _sign_up(client, address, **extra):
    page = client.get("/").get_data(as_text=True)
    data = {**FORM, "email": address, "csrf_token": CSRF.search(page).group(1), **extra}
    return client.post("/", data=data)


def _mails(settings, to=None):
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=True)
    found = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    return [m for m in found if to is None or m["To"].addresses[0].addr_spec == to]


def _link(message, purpose):
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https://news\.example\.test(/{purpose}/\S+)", text).group(1)


def _row(app, address):
    with app.sessions() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == address))


def _csrf_of(client, path):
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


# --- links outlive neither a deletion nor a new subscription ----------------------------


def test_links_of_a_deleted_subscriber_never_act_on_the_next_sign_up(client, app, settings):
    _sign_up(client, "first@example.org")
    (first_mail,) = _mails(settings, "first@example.org")
    first_confirm = _link(first_mail, "confirm")
    token = first_confirm.rsplit("/", 1)[1]
    claim, _ = tokens.read_confirm_token(settings, token, 3600)
    with app.transaction() as s:
        svc.delete_my_data(claim.subscriber_id, session=s)
    old_manage = f"/manage/{tokens.make_token(settings, 'manage', claim.subscriber_id, claim.key)}"

    _sign_up(client, "second@example.org")
    second = _row(app, "second@example.org")
    assert second.id != claim.subscriber_id  # ids are never handed out twice

    csrf = _csrf_of(client, "/")
    assert client.get(first_confirm).status_code == 404
    assert client.post(first_confirm, data={"csrf_token": csrf}).status_code == 404
    assert client.get(old_manage).status_code == 404
    assert client.post(old_manage + "/export", data={"csrf_token": csrf}).status_code == 404
    assert _row(app, "second@example.org").status == SubscriberStatus.PENDING


def test_a_forged_link_for_the_next_id_does_not_work_either(client, app, settings):
    _sign_up(client, "first@example.org")
    row = _row(app, "first@example.org")
    # What an old link would say if the same id came back: a key the row does not hold.
    stale = tokens.make_token(settings, "manage", row.id, "an-older-key")
    assert client.get(f"/manage/{stale}").status_code == 404


@pytest.mark.parametrize("how", ["remove", "purge"])
def test_ids_are_not_reused_after_cli_deletions(app, run, how):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        f.subscriber(s, "a@example.org", [topic])
        last = f.subscriber(s, "b@example.org", [topic])
        if how == "purge":
            last.status = SubscriberStatus.PENDING
            last.created_at = last.created_at.replace(year=2000)
        last_id = last.id
    if how == "remove":
        assert run("subscribers", "remove", "b@example.org", "--yes").exit_code == 0
    else:
        assert run("subscribers", "purge-pending").exit_code == 0
    assert _row(app, "b@example.org") is None
    with app.transaction() as s:
        again = f.subscriber(s, "c@example.org", [])
        assert again.id > last_id


# --- link scanners and what each link may do --------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_fetching_a_confirmation_link_confirms_nothing(client, app, settings, method):
    _sign_up(client, "ada@example.org")
    link = _link(_mails(settings)[0], "confirm")
    response = client.open(link, method=method)
    assert response.status_code == 200
    assert _row(app, "ada@example.org").status == SubscriberStatus.PENDING
    if method == "GET":
        page = response.get_data(as_text=True)
        assert page.count('type="submit"') == 1 and "data-auto-submit" not in page


def test_the_unsubscribe_link_can_only_unsubscribe_and_undo(client, app, settings):
    with app.transaction() as s:
        sub = f.subscriber(s, "ada@example.org", [f.topic(s, "rl")])
        sub.confirmed_at = sub.created_at
        key = sub.link_key
    token = tokens.make_token(settings, "unsubscribe", sub.id, key)
    page = client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    assert "/manage/" not in page
    csrf = _csrf_of(client, "/")
    for path in (f"/manage/{token}", f"/manage/{token}/export", f"/manage/{token}/delete"):
        response = client.post(path, data={"csrf_token": csrf, "confirm_delete": "yes"})
        assert response.status_code == 400
    done = client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert "/manage/" not in done.get_data(as_text=True)
    back = client.post(f"/resubscribe/{token}", data={"csrf_token": CSRF.search(done.text)[1]})
    assert back.status_code == 200 and "/manage/" not in back.get_data(as_text=True)
    assert _row(app, "ada@example.org").status == SubscriberStatus.CONFIRMED


# --- sign-ups: history kept, names not echoed, the same work for every address ----------


def test_a_stranger_cannot_reset_an_opt_out_or_write_into_the_email(client, app, settings):
    with app.transaction() as s:
        sub = f.subscriber(s, "ada@example.org", [f.topic(s, "rl")])
        svc.unsubscribe(sub.id, session=s)
    before = _row(app, "ada@example.org")
    _sign_up(client, "ada@example.org", name="Click here: https://evil.example/win")
    after = _row(app, "ada@example.org")
    assert after.status == SubscriberStatus.UNSUBSCRIBED
    assert after.unsubscribed_at == before.unsubscribed_at
    (mail,) = _mails(settings)
    assert "evil.example" not in mail.as_string() and "Click here" not in mail.as_string()
    with app.sessions() as s:
        kinds = [e.kind for e in s.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]
    assert kinds == ["unsubscribe", "signup"]


def test_the_sign_up_request_does_the_same_work_for_every_address(app, settings):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        f.subscriber(s, "confirmed@example.org", [topic])
        pending = f.subscriber(s, "pending@example.org", [topic])
        pending.status = SubscriberStatus.PENDING
        s.add(Suppression(email="suppressed@example.org", reason="hard bounce"))
    web = create_app(settings, app=app)
    web.testing = True
    woken: list[int] = []
    queue = type("CountingQueue", (), {"wake": lambda self: woken.append(1)})
    web.extensions["newsletter_mail_queue"] = queue()
    client = web.test_client()
    addresses = ["new@example.org", "confirmed@example.org", "pending@example.org"]
    addresses.append("suppressed@example.org")
    for address in addresses:
        with app.sessions() as s:
            before = s.scalar(select(func.count(Subscriber.id)))
        assert _sign_up(client, address).status_code == 303
        with app.sessions() as s:
            # Nothing but a queued request: no row, no email, whatever the address.
            assert s.scalar(select(func.count(Subscriber.id))) == before
            queued = s.scalars(select(QueuedMail).order_by(QueuedMail.id.desc())).first()
            assert queued.email == address and queued.kind == "signup"
    assert not _mails(settings) and len(woken) == 4
    assert drain(app) == 4
    # The queue too: one email each, a suppressed address asked to confirm like a new one.
    sent = sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in _mails(settings))
    assert [address for address, _ in sent] == sorted(addresses)
    subjects = {address: subject.split()[0] for address, subject in sent}
    assert subjects == {
        "new@example.org": "Confirm",
        "pending@example.org": "Confirm",
        "suppressed@example.org": "Confirm",
        "confirmed@example.org": "Your",
    }


# --- a slow relay never holds a lock or a page ------------------------------------------


@pytest.fixture
def served(app) -> Iterator[tuple[str, object]]:
    """The web app on 127.0.0.1 in a thread, with its real mail queue thread."""
    holder: dict[str, object] = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    yield server, holder
    server.shutdown()
    server.server_close()


def test_a_stalled_relay_does_not_stall_the_site(app, served):
    server, holder = served
    stall = Fault(stage="end", delay=8.0)
    with SmtpTestServer(faults=[stall]) as relay:
        app.settings = dataclasses.replace(app.settings, transport=relay.url)
        with app.transaction() as s:
            f.topic(s, "llm")
        web = create_app(app.settings, app=app)
        holder["app"] = web
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/")
        page = conn.getresponse()
        cookie = page.getheader("Set-Cookie").split(";", 1)[0]
        csrf = CSRF.search(page.read().decode()).group(1)
        body = urlencode({**FORM, "topics": "llm", "email": "ada@example.org", "csrf_token": csrf})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        conn.request("POST", "/", body=body, headers=headers)
        answer = conn.getresponse()  # times out (5 s) if the request waits for the relay
        answer.read()
        conn.close()
        assert answer.status == 303
        # The queue is now waiting on the relay; other pages answer meanwhile.
        deadline = time.monotonic() + 5
        while stall.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stall.hits == 1, "the relay never got the confirmation email"
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for path in ("/archive", "/", "/healthz"):
            other.request("GET", path)
            response = other.getresponse()
            response.read()
            assert response.status == 200
        other.close()
        assert relay.messages == []  # the relay is still stalling
        assert f.mail_queue_emptied(app)
        assert [m.recipients for m in relay.messages] == [("ada@example.org",)]


# --- behind a reverse proxy -------------------------------------------------------------


class _Proxy(BaseHTTPRequestHandler):
    """A minimal reverse proxy, as nginx with proxy_set_header X-Forwarded-For $remote_addr."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "x-forwarded-for"}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "https"
        conn = http.client.HTTPConnection(*self.upstream, timeout=10)
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("newsletter serve did not start")


def _visitor_sign_up(proxy_port: int, source: str, address: str) -> int:
    conn = http.client.HTTPConnection(
        "127.0.0.1", proxy_port, timeout=10, source_address=(source, 0)
    )
    conn.request("GET", "/")
    page = conn.getresponse()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    csrf = CSRF.search(page.read().decode()).group(1)
    body = urlencode({**FORM, "topics": "llm", "email": address, "csrf_token": csrf})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    conn.request("POST", "/", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def test_behind_a_proxy_each_visitor_has_their_own_limit_and_consent_record(
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
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    proxy.RequestHandlerClass = type("P", (_Proxy,), {"upstream": ("127.0.0.1", port)})
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        _wait_for_port(port, server, log)
        assert _visitor_sign_up(proxy.server_port, "127.0.0.2", "two@example.org") == 303
        assert _visitor_sign_up(proxy.server_port, "127.0.0.3", "three@example.org") == 303
        # The second sign-up of one visitor is over their limit; the other's was not.
        assert _visitor_sign_up(proxy.server_port, "127.0.0.2", "again@example.org") == 429
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            _row(app, "two@example.org") and _row(app, "three@example.org")
        ):
            time.sleep(0.1)
        assert _row(app, "two@example.org").consent["ip"] == "127.0.0.2"
        assert _row(app, "three@example.org").consent["ip"] == "127.0.0.3"
    finally:
        proxy.shutdown()
        proxy.server_close()
        server.terminate()
        server.wait(10)


# --- redirects stay on our own site -----------------------------------------------------


def test_routing_redirects_ignore_the_host_header(client, settings):
    response = client.get("/static//style.css", headers={"Host": "evil.example"})
    if 300 <= response.status_code < 400:
        assert response.headers["Location"].startswith(settings.base_url + "/")
        assert "evil.example" not in response.headers["Location"]
    response = client.get("/archive/", headers={"Host": "evil.example"})
    assert "evil.example" not in response.headers.get("Location", "")
