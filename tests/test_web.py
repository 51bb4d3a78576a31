"""The web pages through Flask's test client: every route, its errors and its headers."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import logging
import mailbox
import re
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.cli import cli
from newsletter.core import tokens
from newsletter.core.models import Subscriber, SubscriberStatus, utcnow
from newsletter.delivery import service as sending
from newsletter.web import create_app
from newsletter.web.security import redact
from tests import factories as f
from tests.html_forms import form_fields

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM = {"frequency": "daily", "hour": "8", "timezone": "Europe/Paris", "topics": ["llm"]}


def _web(app):
    return f.web_app(app)


@pytest.fixture
def web(app):
    with app.transaction() as s:
        f.topic(s, "llm").description = "Large language models and how they are trained."
        f.topic(s, "rl")
    return _web(app)


def _key(app, sid):
    with app.sessions() as s:
        return s.get(Subscriber, sid).link_key


def _tok(app, purpose, sid):
    return tokens.make_token(app.settings, purpose, sid, _key(app, sid))


def _signup_id(app, sid):
    with app.sessions() as s:
        return s.get(Subscriber, sid).consent_events[-1].id


def _url(app, purpose, sid):
    return f"/{purpose}/{_tok(app, purpose, sid)}"


@pytest.fixture
def client(web):
    return web.test_client()


def _csrf(client, path="/"):
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def _subscribe(client, address="ada@example.org", **extra):
    data = {**FORM, "email": address, "csrf_token": _csrf(client), **extra}
    return client.post("/", data=data)


def _outbox(settings):
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def _subscriber(app, address="ada@example.org"):
    with app.sessions() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == address))


def _confirmed(app, address="ada@example.org"):
    with app.transaction() as s:
        topic = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        return f.subscriber(s, address, [topic]).id


def _path(url):
    return url.split("news.example.test", 1)[1]


# --- subscribe ----------------------------------------------------------------------------


def test_the_subscribe_page_lists_topics_and_works_without_javascript(client):
    page = client.get("/").get_data(as_text=True)
    assert 'method="post"' in page and 'name="email"' in page
    assert 'value="llm"' in page and "Large language models and how they are trained." in page
    assert "<option selected>UTC</option>" in page and "data-detect-timezone" in page
    assert "<script src=" in page and "<script>" not in page  # no inline script for the CSP
    with client.get("/static/site.js") as script:
        assert script.status_code == 200 and b"Intl.DateTimeFormat" in script.get_data()


def test_subscribing_stores_consent_and_mails_a_working_confirmation_link(client, app, settings):
    response = client.post(
        "/",
        data={**FORM, "email": "ada@example.org", "name": "Ada", "csrf_token": _csrf(client)},
        headers={"User-Agent": "Browser/9", "X-Forwarded-For": "203.0.113.9"},
        environ_base={"REMOTE_ADDR": "192.0.2.50"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/subscribed"
    sub = _subscriber(app)
    assert sub.status == SubscriberStatus.PENDING and sub.timezone == "Europe/Paris"
    # Without web_proxy_count, X-Forwarded-For is not trusted.
    assert sub.consent["ip"] == "192.0.2.50" and sub.consent["user_agent"] == "Browser/9"
    assert "Daily Papers" in sub.consent["text"] and sub.consent["form_version"]
    (message,) = _outbox(settings)
    # The name is whatever the form said: never echoed to the mailbox before it confirms.
    assert message["To"] == "ada@example.org" and "Ada" not in message.as_string()
    link = re.search(
        r"https://news\.example\.test(/confirm/\S+)", message.get_body(("plain",)).get_content()
    )
    page = client.get(link.group(1))
    assert page.status_code == 200 and "Confirm my subscription" in page.get_data(as_text=True)
    assert _subscriber(app).status == SubscriberStatus.PENDING  # a GET changes nothing
    # The page shows the sign-up's choices in a form; pressing its button sends them.
    fields = form_fields(page.get_data(as_text=True), "/confirm/")
    assert fields["name"] == "Ada" and fields["topics"] == "llm"
    done = client.post(link.group(1), data=fields)
    assert done.status_code == 303
    confirmed = client.get(done.headers["Location"])
    assert "Your subscription is confirmed" in confirmed.get_data(as_text=True)
    assert _subscriber(app).status == SubscriberStatus.CONFIRMED
    assert _subscriber(app).name == "Ada"  # the form's choices apply once confirmed
    assert "Check your inbox" in client.get("/subscribed").get_data(as_text=True)


def test_the_answer_is_the_same_for_new_and_existing_addresses(client, app, settings):
    _confirmed(app, "known@example.org")
    new = _subscribe(client, "new@example.org")
    known = _subscribe(client, "known@example.org")
    assert (new.status_code, new.headers["Location"]) == (
        known.status_code,
        known.headers["Location"],
    )
    kinds = {m["To"].addresses[0].addr_spec: m["Subject"] for m in _outbox(settings)}
    assert kinds["new@example.org"].startswith("Confirm")
    assert kinds["known@example.org"] == "Your Daily Papers preferences"


def test_form_errors_name_each_field_and_change_nothing(client, app):
    response = client.post(
        "/",
        data={
            "email": "not-an-address",
            "hour": "25",
            "timezone": "Mars/Olympus",
            "frequency": "hourly",
            "csrf_token": _csrf(client),
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    for text in (
        "Enter a valid email address",
        "Choose at least one topic",
        "Choose an hour from 0 to 23",
        "Choose your time zone",
        "Choose daily or weekly",
    ):
        assert text in page
    assert 'aria-invalid="true"' in page and 'value="not-an-address"' in page
    with app.sessions() as s:
        assert s.scalar(select(func.count(Subscriber.id))) == 0


def test_a_post_without_csrf_token_is_refused(client, app):
    response = client.post("/", data={**FORM, "email": "ada@example.org"})
    assert response.status_code == 400 and "could not be verified" in response.get_data(
        as_text=True
    )
    forged = client.post("/", data={**FORM, "email": "ada@example.org", "csrf_token": "x.y.z"})
    assert forged.status_code == 400
    other = _web(app).test_client()  # a token from another visitor
    stolen = client.post("/", data={**FORM, "email": "ada@example.org", "csrf_token": _csrf(other)})
    assert stolen.status_code == 400 and _subscriber(app) is None


def test_the_per_ip_limit_answers_429(client, app):
    app.settings = dataclasses.replace(app.settings, subscribe_per_ip_per_hour=1)
    c = _web(app).test_client()
    assert _subscribe(c, "a@example.org").status_code == 303
    limited = _subscribe(c, "b@example.org")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3600"
    assert _subscriber(app, "b@example.org") is None


def test_repeated_sign_ups_send_one_email_per_ten_minutes(client, settings):
    assert _subscribe(client).status_code == 303
    assert _subscribe(client).status_code == 303
    assert len(_outbox(settings)) == 1


def test_the_honeypot_pretends_success_and_stores_nothing(client, app, settings):
    response = _subscribe(client, website="https://spam.example")
    assert response.status_code == 303 and _subscriber(app) is None and not _outbox(settings)


# --- confirm and tokens -------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["confirm", "manage", "unsubscribe"])
def test_tampered_or_wrong_purpose_tokens_get_a_400_page(client, app, settings, purpose):
    sid = _confirmed(app)
    good = _tok(app, purpose, sid)
    other = "manage" if purpose != "manage" else "unsubscribe"
    for bad in (good[:-2] + "xx", _tok(app, other, sid)):
        response = client.get(f"/{purpose}/{bad}")
        page = response.get_data(as_text=True)
        assert response.status_code == 400 and "invalid or has expired" in page
        assert "Traceback" not in page and "<title>Bad request" in page


def test_an_expired_confirmation_link_is_refused(client, app, monkeypatch):
    sid = _subscribe(client) and _subscriber(app).id
    two_hours_ago = time.time() - 7200
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: two_hours_ago)
        signup = _signup_id(app, sid)
        old = tokens.make_confirm_token(app.settings, sid, _key(app, sid), signup)
    assert client.get(f"/confirm/{old}").status_code == 200  # within the default 72 hours
    app.settings = dataclasses.replace(app.settings, confirm_max_age_hours=1)
    response = _web(app).test_client().get(f"/confirm/{old}")
    assert response.status_code == 400 and "expired" in response.get_data(as_text=True)


def test_links_of_deleted_subscribers_get_a_404_page(client, settings):
    response = client.get(f"/manage/{tokens.make_token(settings, 'manage', 999, 'gone')}")
    assert response.status_code == 404 and "no longer exists" in response.get_data(as_text=True)


# --- preferences --------------------------------------------------------------------------


def test_the_preferences_page_saves_changes(client, app, settings):
    sid = _confirmed(app)
    url = _url(app, "manage", sid)
    page = client.get(url).get_data(as_text=True)
    assert "ada@example.org" in page and 'value="llm" id="topic-llm" checked' in page
    data = {
        "topics": ["rl"],
        "frequency": "weekly",
        "weekly_day": "2",
        "hour": "6",
        "timezone": "Asia/Tokyo",
        "max_papers": "5",
        "paused": "on",
        "csrf_token": CSRF.search(page).group(1),
    }
    saved = client.post(url, data=data)
    assert saved.status_code == 303 and saved.headers["Location"].endswith("?done=saved")
    assert "Your preferences are saved." in client.get(saved.headers["Location"]).get_data(
        as_text=True
    )
    sub = _subscriber(app)
    assert (sub.frequency.value, sub.weekly_day, sub.delivery_hour) == ("weekly", 2, 6)
    assert (sub.timezone, sub.max_papers, sub.paused) == ("Asia/Tokyo", 5, True)
    bad = client.post(url, data={**data, "topics": [], "max_papers": "500"})
    assert bad.status_code == 400 and "Choose from 1 to 50 papers." in bad.get_data(as_text=True)
    assert _subscriber(app).max_papers == 5


def test_export_gives_my_data_as_a_json_download(client, app, settings):
    sid = _confirmed(app)
    url = _url(app, "manage", sid)
    response = client.post(url + "/export", data={"csrf_token": _csrf(client, url)})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["email"] == "ada@example.org" and data["topics"] == ["llm"]
    assert client.post(url + "/export").status_code == 400  # CSRF applies here too


def test_delete_needs_the_box_ticked_then_erases_everything(client, app, settings):
    sid = _confirmed(app)
    url = _url(app, "manage", sid)
    unticked = client.post(url + "/delete", data={"csrf_token": _csrf(client, url)})
    assert unticked.status_code == 400 and _subscriber(app) is not None
    done = client.post(
        url + "/delete", data={"csrf_token": _csrf(client, url), "confirm_delete": "yes"}
    )
    assert done.status_code == 200 and "Your data is deleted" in done.get_data(as_text=True)
    assert _subscriber(app) is None


# --- unsubscribe --------------------------------------------------------------------------


def test_get_unsubscribe_shows_one_button_and_changes_nothing(client, app, settings):
    sid = _confirmed(app)
    page = client.get(_url(app, "unsubscribe", sid)).get_data(as_text=True)
    assert page.count('type="submit"') == 1 and 'value="One-Click"' in page
    assert _subscriber(app).status == SubscriberStatus.CONFIRMED


@pytest.mark.parametrize("as_multipart", [False, True])
def test_rfc8058_one_click_post_unsubscribes_without_cookies_or_redirect(
    app, web, settings, as_multipart
):
    sid = _confirmed(app)
    client = web.test_client(use_cookies=False)
    url = _url(app, "unsubscribe", sid)
    if as_multipart:
        response = client.post(
            url, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        )
    else:
        response = client.post(
            url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
    assert response.status_code == 200 and "Location" not in response.headers
    assert "You are unsubscribed" in response.get_data(as_text=True)
    sub = _subscriber(app)
    assert sub.status == SubscriberStatus.UNSUBSCRIBED and sub.unsubscribed_at is not None
    assert (
        client.post(
            url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        ).status_code
        == 200
    )


def test_a_post_without_the_one_click_field_is_refused(client, app, settings):
    sid = _confirmed(app)
    response = client.post(_url(app, "unsubscribe", sid), data={"x": "y"})
    assert response.status_code == 400 and _subscriber(app).status == SubscriberStatus.CONFIRMED


def test_the_unsubscribed_page_offers_to_subscribe_again(client, app, settings):
    sid = _confirmed(app)
    with app.transaction() as s:
        s.get(Subscriber, sid).confirmed_at = utcnow()
    url = _url(app, "unsubscribe", sid)
    page = client.post(url, data={"List-Unsubscribe": "One-Click"}).get_data(as_text=True)
    token = CSRF.search(page).group(1)
    back = client.post(url.replace("/unsubscribe/", "/resubscribe/"), data={"csrf_token": token})
    assert back.status_code == 200 and "Welcome back" in back.get_data(as_text=True)
    assert _subscriber(app).status == SubscriberStatus.CONFIRMED


# --- archive ------------------------------------------------------------------------------


@pytest.fixture
def edition(app):
    with app.transaction() as s:
        llm = s.scalar(select(f.Topic).where(f.Topic.slug == "llm"))
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Unmatched paper")
        f.subscriber(s, "secret-reader@example.org", [llm])
    sending.plan(app, f.DAY)


def test_the_archive_lists_editions_and_shows_papers_per_topic(client, edition):
    index = client.get("/archive")
    assert index.status_code == 200 and "27 November 2026" in index.get_data(as_text=True)
    assert "public" in index.headers["Cache-Control"]
    page = client.get("/archive/2026-11-27").get_data(as_text=True)
    assert "Scaling laws for tiny models" in page and ">Llm</h2>" in page
    assert "Unmatched paper" not in page and "secret-reader" not in page
    assert client.get("/archive/2026-11-26").status_code == 404
    assert client.get("/archive/not-a-date").status_code == 404


def test_an_operator_template_replaces_the_shipped_page(app, web, edition, tmp_path):
    custom = tmp_path / "custom" / "web"
    custom.mkdir(parents=True)
    (custom / "archive.html").write_text("Our own archive: {{ editions|length }} editions")
    overridden = dataclasses.replace(app.settings, templates_dir=str(tmp_path / "custom"))
    client = create_app(overridden, app=app).test_client()
    assert client.get("/archive").get_data(as_text=True) == "Our own archive: 1 editions"
    page = client.get("/archive/2026-11-27").get_data(as_text=True)
    assert "Scaling laws for tiny models" in page  # the shipped pages still serve


def test_the_atom_feed_links_each_edition(client, edition, settings):
    response = client.get("/archive.atom")
    body = response.get_data(as_text=True)
    assert response.mimetype == "application/atom+xml"
    assert f"<id>{settings.base_url}/archive/2026-11-27</id>" in body
    assert "<updated>" in body and "secret-reader" not in body


def test_view_in_browser_links_of_digests_open_the_archive_page(client, edition, settings):
    assert tokens.archive_url(settings, f.DAY) == f"{settings.base_url}/archive/2026-11-27"
    assert client.get(_path(tokens.archive_url(settings, f.DAY))).status_code == 200


# --- security and plumbing ----------------------------------------------------------------


def test_every_page_carries_the_security_headers(client, settings, app):
    sid = _confirmed(app)
    for path in ("/", "/archive", "/nope", _url(app, "manage", sid)):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Strict-Transport-Security"].startswith("max-age=")
    manage = client.get(_url(app, "manage", sid))
    assert manage.headers["Cache-Control"] == "no-store"


def test_the_csrf_cookie_is_httponly_secure_and_host_only(client):
    cookie = client.get("/").headers["Set-Cookie"]
    assert cookie.startswith("__Host-nl_csrf=") and "HttpOnly" in cookie
    assert "Secure" in cookie and "SameSite=Lax" in cookie and "Domain" not in cookie


def test_unknown_pages_and_methods_get_friendly_pages(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and "There is no page" in missing.get_data(as_text=True)
    assert client.delete("/").status_code == 405


def test_server_errors_show_a_page_and_log_no_tokens(app, settings, caplog, monkeypatch):
    web = create_app(settings, app=app)  # not testing: errors become the 500 page

    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr("newsletter.audience.signup.load_subscriber", broken)
    url = f"/manage/{tokens.make_token(settings, 'manage', 7, 'key')}"
    with caplog.at_level(logging.ERROR):
        response = web.test_client().get(url)
    assert response.status_code == 500 and "database on fire" not in response.get_data(as_text=True)
    assert "Something went wrong" in response.get_data(as_text=True)
    token = url.rsplit("/", 1)[1]
    assert caplog.records and all(token not in r.getMessage() for r in caplog.records)


def test_redact_hides_tokens_in_log_lines():
    line = '127.0.0.1 "GET /unsubscribe/MQ.abc-DEF_1 HTTP/1.1" 200 and /manage/x.y?z'
    assert redact(line) == '127.0.0.1 "GET /unsubscribe/… HTTP/1.1" 200 and /manage/…?z'


def test_health_check(client):
    assert client.get("/healthz").get_data(as_text=True) == "ok\n"


def test_purge_pending_command(app, env, tmp_path, monkeypatch):
    with app.transaction() as s:
        s.add(Subscriber(email="old@example.org", created_at=utcnow() - timedelta(days=9)))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["subscribers", "purge-pending", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"deleted": 1, "older_than_days": 7}
    assert "waitress" in CliRunner().invoke(cli, ["serve", "--help"]).output
