"""The web process's mail queue: retries through a relay outage, claims, what the admin sees."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urljoin

from sqlalchemy import select, update

from newsletter.core.models import QueuedMail, Subscriber, SubscriberStatus, utcnow
from newsletter.delivery.mail_queue import drain
from tests import factories as f
from tests.smtp_server import Fault, SmtpTestServer

HOST = socket.gethostname()
ADDRESS = "ada@example.org"
RELAY_DOWN = "421 4.3.2 Service not available, closing transmission channel"
# Retries a few tenths of a second apart: an outage of many tries fits in a test.
FAST_RETRIES = "retry_base_seconds = 0.2\nretry_max_seconds = 0.5\nmax_attempts = 2\n"


class _Forms(HTMLParser):
    """The fields of a page's POST forms, as a browser would submit them untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._select: str | None = None
        self._options: list[tuple[str, str | None, bool]] = []  # name, value, selected
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "").lower() == "post":
            self.forms.append((a.get("action", ""), []))
        elif not self.forms:
            return
        fields = self.forms[-1][1]
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind not in ("checkbox", "radio") or "checked" in a:
                fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._options = a.get("name"), []
        elif tag == "option" and self._select:
            self._options.append((self._select, a.get("value"), "selected" in a))
            self._text = ""

    def handle_data(self, data: str) -> None:
        self._text += data
        if self._options and self._options[-1][1] is None:  # no value: its text is the value
            name, _, selected = self._options[-1]
            self._options[-1] = (name, self._text.strip(), selected)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select and self._options:
            chosen = [o for o in self._options if o[2]] or self._options[:1]
            self.forms[-1][1].append((chosen[0][0], chosen[0][1] or ""))
            self._select = None


class _Visitor:
    """A browser without JavaScript: cookies, forms, redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def get(self, path: str) -> str:
        with self.opener.open(urljoin(self.base, path), timeout=30) as response:
            return response.read().decode()

    def submit(self, path: str, **changes: str) -> str:
        """Fill the page's first POST form (fields as they stand, then `changes`); send it."""
        parser = _Forms()
        parser.feed(self.get(path))
        action, fields = parser.forms[0]
        fields = [(k, v) for k, v in fields if k not in changes] + list(changes.items())
        data = urlencode(fields).encode()
        with self.opener.open(urljoin(self.base + path, action), data, timeout=30) as response:
            return response.read().decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_serving(env: dict[str, str], cwd: Path, smtp_url: str, port: int) -> subprocess.Popen:
    log = (cwd / f"serve-{port}.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=cwd,
        env={**os.environ, **env, "NEWSLETTER_TRANSPORT": smtp_url,
             "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}"},  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()

    def listening() -> bool:
        assert server.poll() is None, (cwd / f"serve-{port}.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    _wait(listening, "newsletter serve to listen")
    return server


@contextmanager
def _serving(env: dict[str, str], cwd: Path, smtp_url: str) -> Iterator[str]:
    port = _free_port()
    server = _start_serving(env, cwd, smtp_url, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _sign_up(base: str) -> _Visitor:
    visitor = _Visitor(base)
    page = visitor.submit("/", email=ADDRESS, topics="llm")
    assert "Check your inbox" in page
    return visitor


def _confirm_link(message_bytes: bytes, base: str) -> str:
    message = email.message_from_bytes(message_bytes, policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    return re.search(re.escape(base) + r"(/confirm/\S+)", text).group(1)


def _status(app) -> str:  # noqa: ANN001
    with app.sessions() as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == ADDRESS))


def test_a_confirmation_outlasts_a_relay_outage_and_then_confirms(app, env, tmp_path):
    with app.transaction() as s:
        f.topic(s, "llm")
    (tmp_path / "newsletter.toml").write_text(FAST_RETRIES, encoding="utf-8")
    # More refusals than the old queue's six tries, and than max_attempts: the link stays
    # usable for confirm_max_age_hours, so the queue keeps trying.
    down = Fault(stage="mail", reply=RELAY_DOWN, times=8)
    with SmtpTestServer(faults=[down]) as relay, _serving(env, tmp_path, relay.url) as base:
        visitor = _sign_up(base)
        _wait(lambda: relay.messages, "the confirmation after the outage")
        assert down.hits == 8
        [message] = relay.messages
        assert message.recipients == (ADDRESS,)
        assert _status(app) == SubscriberStatus.PENDING
        page = visitor.submit(_confirm_link(message.data, base))
    assert "Your subscription is confirmed" in page
    assert _status(app) == SubscriberStatus.CONFIRMED


def test_status_shows_waiting_and_given_up_emails_and_send_mail_sends_them(app, run, tmp_path):
    with app.transaction() as s:
        f.paper(s, "A language model", topics={f.topic(s, "llm"): 2.0})
    (tmp_path / "newsletter.toml").write_text(FAST_RETRIES, encoding="utf-8")
    with SmtpTestServer(faults=[Fault(stage="mail", reply=RELAY_DOWN)]) as relay:
        app.settings = dataclasses.replace(
            app.settings, transport=relay.url, retry_base_seconds=0.2, retry_max_seconds=0.5,
            max_attempts=2,
        )  # fmt: skip
        run.env["NEWSLETTER_TRANSPORT"] = relay.url
        client = f.web_app(app).test_client()
        page = client.get("/").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = {"email": ADDRESS, "topics": "llm", "frequency": "daily", "hour": "8",
                "timezone": "UTC", "csrf_token": csrf}  # fmt: skip
        assert client.post("/", data=form).status_code == 303  # the queue tried once inline

        waiting = run("status", "--json")
        assert json.loads(waiting.stdout)["mail_queue"]["waiting"] == 1
        assert "421" in json.loads(waiting.stdout)["mail_queue"]["last_error"]
        assert "1 sign-up email(s) wait to be sent again" in waiting.output

        # Three days of outage later the link would have expired: the queue gives it up.
        with app.transaction() as s:
            s.execute(update(QueuedMail).values(
                created_at=utcnow() - timedelta(hours=73), next_attempt_at=utcnow()
            ))  # fmt: skip
        drain(app)
        given_up = run("status")
        assert "1 sign-up email(s) were given up unsent" in given_up.output
        assert "`newsletter subscribers send-mail`" in given_up.output
        assert json.loads(run("status", "--json").stdout)["mail_queue"]["failed"] == 1

        still_down = run("subscribers", "send-mail")
        assert still_down.exit_code == 1 and "421" in still_down.output
        assert len(still_down.output.strip().splitlines()) == 2  # the counts, the error
        assert json.loads(run("status", "--json").stdout)["mail_queue"]["waiting"] == 1

        relay.faults.clear()
        sent = run("subscribers", "send-mail", "--json")
        assert sent.exit_code == 0, sent.output
        assert json.loads(sent.stdout)["sent"] == 1
        assert [m.recipients for m in relay.messages] == [(ADDRESS,)]
    after = json.loads(run("status", "--json").stdout)["mail_queue"]
    assert (after["waiting"], after["failed"]) == (0, 0)


def test_a_confirmation_in_flight_when_the_web_process_is_killed_is_sent_by_the_next(
    app, env, tmp_path
):
    with app.transaction() as s:
        f.topic(s, "llm")
    stall = Fault(stage="mail", delay=600.0, times=1)  # the relay sits on the first email
    with SmtpTestServer(faults=[stall]) as relay:
        port = _free_port()
        first = _start_serving(env, tmp_path, relay.url, port)
        second = None
        try:
            base = f"http://127.0.0.1:{port}"
            _sign_up(base)
            _wait(lambda: stall.hits == 1, "the first process to be sending")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
            second = _start_serving(env, tmp_path, relay.url, port)
            # Far sooner than the old five-minute claim plus a one-minute poll.
            _wait(lambda: relay.messages, "the next process to send it", timeout=120)
            # The relay has the message a moment before the process records it as sent.
            _wait(lambda: _queued(app)[1] is not None, "the sent email to be recorded")
        finally:
            for server in (first, second):
                if server is not None and server.poll() is None:
                    server.terminate()
                    server.wait(timeout=30)
    assert [m.recipients for m in relay.messages] == [(ADDRESS,)]
    _confirm_link(relay.messages[0].data, f"http://127.0.0.1:{port}")
    claimant, done_at = _queued(app)
    assert claimant == f"{HOST}:{second.pid}" and done_at is not None


def _queued(app):  # noqa: ANN001, ANN202
    """Return the one queued email's claimant and when it was done."""
    with app.reading() as s:
        [(claimant, done_at)] = s.execute(select(QueuedMail.claimed_by, QueuedMail.done_at))
    return claimant, done_at


def test_closing_the_app_stops_its_web_sender(settings):
    """The web process's sender thread ends with its app: none is left polling a database
    that is gone (as one did after a test run, against a stopped PostgreSQL)."""
    from newsletter.core.app import App
    from newsletter.web import create_app

    core = App(settings)
    web = create_app(settings, app=core)
    queue = web.extensions["newsletter_mail_queue"]
    queue.wake()  # a sign-up starts it
    thread = queue._thread
    assert thread is not None and thread.is_alive()
    core.close()
    assert not thread.is_alive()
    core.close()  # twice is harmless
