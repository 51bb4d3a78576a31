"""`subscribers invite` and `--send-confirmation`: the sign-up form's double opt-in for the
subscribers an admin adds, read from the outbox and confirmed through the served app."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.cookiejar
import json
import mailbox
import re
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from werkzeug.serving import make_server

from newsletter.core import tokens
from newsletter.core.app import App
from newsletter.core.models import (
    ConsentEvent,
    RateLimit,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.delivery import mail_queue
from newsletter.web import create_app
from tests import factories as f
from tests.html_forms import form_fields
from tests.smtp_server import Fault, SmtpTestServer

ADA = "ada@example.org"
RELAY_DOWN = "421 4.3.2 Service not available, closing transmission channel"


@pytest.fixture
def topics(app: App) -> None:
    with app.transaction() as s:
        f.topic(s, "ml")
        f.topic(s, "nlp")


def outbox(app: App) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def recipients(app: App) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in outbox(app))


def confirm_path(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()
    return urllib.parse.urlsplit(re.search(r"(https?://\S+/confirm/\S+)", text).group(1)).path


def subscriber(app: App, address: str) -> Subscriber:
    with app.reading() as s:
        found = s.scalar(select(Subscriber).where(Subscriber.email == address))
        assert found is not None
        s.expunge(found)
        return found


def events(app: App, address: str) -> list[tuple[str, str, dict]]:
    with app.reading() as s:
        rows = s.execute(
            select(ConsentEvent.kind, ConsentEvent.source, ConsentEvent.details)
            .join(Subscriber)
            .where(Subscriber.email == address)
            .order_by(ConsentEvent.id)
        )
        return [tuple(r) for r in rows]


def signup_of(app: App, message: email.message.EmailMessage) -> int:
    """Return the sign-up the message's confirmation link confirms."""
    token = confirm_path(message).rsplit("/", 1)[1]
    return tokens.read_confirm_token(app.settings, token, 3600)[1]


@contextmanager
def served(app: App) -> Iterator[str]:
    """Serve the web app over HTTP on 127.0.0.1 in a thread."""
    web = create_app(app.settings, app=app)
    server = make_server("127.0.0.1", 0, web, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def confirm_over_http(base: str, path: str) -> str:
    """Open the confirmation page as a browser would and press its button; return the page."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(base + path, timeout=30) as response:
        page = response.read().decode()
    fields = form_fields(page, "/confirm/")
    data = urllib.parse.urlencode(fields, doseq=True).encode()
    with opener.open(base + path, data, timeout=30) as response:
        return response.read().decode()


def test_an_added_subscriber_gets_the_confirmation_and_its_link_confirms(run, app, topics):
    result = run("subscribers", "add", ADA, "--name", "Ada", "--topics", "ml,nlp",
                 "--frequency", "weekly", "--weekly-day", "wed", "--send-confirmation")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"sent a confirmation email to {ADA}"
    [message] = outbox(app)
    assert message["To"].addresses[0].addr_spec == ADA
    assert message["Subject"] == "Confirm your subscription to Daily Papers"
    assert subscriber(app, ADA).status == SubscriberStatus.PENDING

    [(kind, source, details)] = events(app, ADA)
    assert (kind, source, details["consent"]["source"]) == ("signup", "invitation", "invitation")
    signup_id = signup_of(app, message)
    assert signup_id > 0

    app.settings = dataclasses.replace(app.settings, base_url="http://127.0.0.1")
    with served(app) as base:
        page = confirm_over_http(base, confirm_path(message))
    assert "Your subscription is confirmed" in page
    ada = subscriber(app, ADA)
    assert ada.status == SubscriberStatus.CONFIRMED
    # The choices the admin made are the ones confirmed: the page showed and sent them.
    assert (ada.name, ada.frequency.value, ada.weekly_day) == ("Ada", "weekly", 2)
    shown = json.loads(run("subscribers", "show", ADA, "--json").stdout)
    assert shown["topics"] == ["ml", "nlp"]
    assert [k for k, _, _ in events(app, ADA)] == ["signup", "confirm"]
    assert events(app, ADA)[1][2]["signup"] == signup_id


def test_the_sign_up_forms_limit_per_address_holds_for_invitations(run, app, topics):
    assert run("subscribers", "add", ADA, "--topics", "ml").exit_code == 0
    assert outbox(app) == []  # without --send-confirmation, nothing goes out
    first = run("subscribers", "invite", ADA)
    assert first.exit_code == 0 and first.stdout == f"sent a confirmation email to {ADA}\n"

    before = f.dump_database(app.engine)
    again = run("subscribers", "invite", ADA)
    assert again.exit_code == 2
    assert again.stderr == (
        f"Error: {ADA} was sent a sign-up email less than 10 minutes ago "
        "(setting mail_interval_minutes): try again later\n"
    )
    assert f.dump_database(app.engine) == before and len(outbox(app)) == 1

    # A sign-up on the web counts against the same limit: the form sends nothing either.
    web = f.web_app(app).test_client()
    page = web.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"email": ADA, "topics": "ml", "frequency": "daily", "hour": "8",
            "timezone": "UTC", "csrf_token": csrf}  # fmt: skip
    assert web.post("/", data=form).status_code == 303
    assert len(outbox(app)) == 1

    with app.transaction() as s:  # the interval has passed
        s.execute(update(RateLimit).values(window_start=utcnow() - timedelta(minutes=11)))
    resent = run("subscribers", "invite", ADA)
    assert resent.exit_code == 0, resent.output
    assert len(outbox(app)) == 2
    newest = max(outbox(app), key=lambda m: signup_of(app, m))
    app.settings = dataclasses.replace(app.settings, base_url="http://127.0.0.1")
    with served(app) as base:
        assert "Your subscription is confirmed" in confirm_over_http(base, confirm_path(newest))
    assert subscriber(app, ADA).status == SubscriberStatus.CONFIRMED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (["--confirmed"], f"Error: {ADA} is already confirmed: there is nothing to confirm\n"),
        (None, f"Error: no subscriber '{ADA}'\n"),
    ],
)
def test_a_confirmed_or_unknown_address_gets_one_line(run, app, topics, setup, message):
    if setup is not None:
        assert run("subscribers", "add", ADA, "--topics", "ml", *setup).exit_code == 0
    before = f.dump_database(app.engine)
    result = run("subscribers", "invite", ADA)
    assert result.exit_code == 2 and result.stderr == message and result.stdout == ""
    assert f.dump_database(app.engine) == before and outbox(app) == []


def test_an_address_named_twice_is_asked_once(run, app, topics):
    run("subscribers", "add", ADA, "--topics", "ml")
    result = run("subscribers", "invite", ADA, ADA.upper())
    assert result.exit_code == 0 and result.stdout == f"sent a confirmation email to {ADA}\n"
    assert recipients(app) == [ADA]


def test_named_addresses_are_all_invited_or_none(run, app, topics):
    for address in ("a@x.org", "b@x.org"):
        run("subscribers", "add", address, "--topics", "ml")
    before = f.dump_database(app.engine)
    result = run("subscribers", "invite", "a@x.org", "nobody@x.org", "b@x.org")
    assert result.exit_code == 2
    assert result.stderr == "Error: no subscriber 'nobody@x.org'\n"
    assert f.dump_database(app.engine) == before and outbox(app) == []


def test_a_suppressed_address_is_never_invited(run, app, topics):
    run("subscribers", "add", ADA, "--topics", "ml")
    run("subscribers", "add", "bo@example.org", "--topics", "ml")
    assert run("suppressions", "add", ADA, "--reason", "asked by phone").exit_code == 0
    named = run("subscribers", "invite", ADA)
    assert named.exit_code == 2
    suppressed = f"{ADA} is suppressed (asked by phone): it is never mailed again"
    assert named.stderr == f"Error: {suppressed}\n"

    everyone = run("subscribers", "invite", "--all-pending")
    assert everyone.exit_code == 0, everyone.output
    assert everyone.stdout == "sent 1 confirmation email; 1 not invited\n"
    assert everyone.stderr == f"not invited: {suppressed}\n"
    assert recipients(app) == ["bo@example.org"]


def test_all_pending_with_a_progress_bar_and_json(run, app, topics, monkeypatch):
    from newsletter.cli import invitations as cli_module

    monkeypatch.setattr(cli_module, "PROGRESS_MIN_EMAILS", 2)
    for address in ("c@x.org", "a@x.org", "b@x.org"):
        run("subscribers", "add", address, "--topics", "ml")
    run("subscribers", "add", "d@x.org", "--topics", "ml", "--confirmed")
    run("subscribers", "invite", "b@x.org")  # asked minutes ago: skipped this time

    result = run("subscribers", "invite", "--all-pending", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["invited"] == ["c@x.org", "a@x.org"] and data["sent"] == 2
    assert [s["email"] for s in data["skipped"]] == ["b@x.org"]
    assert "less than 10 minutes ago" in data["skipped"][0]["reason"]
    assert "sending confirmations" in result.stderr
    assert recipients(app) == ["a@x.org", "b@x.org", "c@x.org"]
    # Each email's link names its own subscriber and sign-up.
    for message in outbox(app):
        token = confirm_path(message).rsplit("/", 1)[1]
        claim, signup_id = tokens.read_confirm_token(app.settings, token, 3600)
        to = message["To"].addresses[0].addr_spec
        assert claim.subscriber_id == subscriber(app, to).id
        assert signup_id in _signup_ids(app, to)


def _signup_ids(app: App, address: str) -> list[int]:
    with app.reading() as s:
        return list(
            s.scalars(
                select(ConsentEvent.id)
                .join(Subscriber)
                .where(Subscriber.email == address, ConsentEvent.kind == "signup")
            )
        )


def test_an_empty_invitation_says_so(run, app, topics):
    result = run("subscribers", "invite", "--all-pending")
    assert result.exit_code == 0 and result.stdout == "no pending subscribers to invite\n"
    usage = run("subscribers", "invite")
    assert usage.exit_code == 2 and "give the addresses to invite, or --all-pending" in usage.stderr
    both = run("subscribers", "add", ADA, "--topics", "ml", "--confirmed", "--send-confirmation")
    assert both.exit_code == 2 and "drop --confirmed" in both.stderr


def test_import_pending_with_send_confirmation(run, app, topics, tmp_path: Path):
    path = tmp_path / "people.csv"
    path.write_text(
        "email,topics,status\na@x.org,ml,\nb@x.org,nlp,pending\nc@x.org,ml,confirmed\n",
        encoding="utf-8",
    )
    result = run("subscribers", "import", str(path), "--status", "pending",
                 "--send-confirmation", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["new"] == 3 and data["invitations"]["invited"] == ["a@x.org", "b@x.org"]
    assert recipients(app) == ["a@x.org", "b@x.org"]
    app.settings = dataclasses.replace(app.settings, base_url="http://127.0.0.1")
    with served(app) as base:
        for message in outbox(app):
            assert "Your subscription is confirmed" in confirm_over_http(
                base, confirm_path(message)
            )
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert {d["email"]: d["status"] for d in listed} == dict.fromkeys(
        ("a@x.org", "b@x.org", "c@x.org"), "confirmed"
    )
    # A second import asks nobody: the address was asked minutes ago, and is confirmed now.
    again = run("subscribers", "import", str(path), "--send-confirmation")
    assert again.exit_code == 0 and again.stdout.splitlines()[-1] == "sent 0 confirmation emails"


def test_a_refused_email_waits_for_send_mail(run, app, topics):
    run("subscribers", "add", ADA, "--topics", "ml")
    with SmtpTestServer(faults=[Fault(stage="mail", reply=RELAY_DOWN)]) as relay:
        run.env["NEWSLETTER_TRANSPORT"] = relay.url
        refused = run("subscribers", "invite", ADA)
        assert refused.exit_code == 1
        assert "1 confirmation email(s) not sent" in refused.stderr and "421" in refused.stderr
        assert "`newsletter subscribers send-mail` sends them again" in refused.stderr
        assert mail_queue.queue_status(app)["waiting"] == 1
        relay.faults.clear()
        sent = run("subscribers", "send-mail", "--json")
        assert sent.exit_code == 0 and json.loads(sent.stdout)["sent"] == 1
        [message] = relay.messages
    assert message.recipients == (ADA,)
    assert b"/confirm/" in message.data
