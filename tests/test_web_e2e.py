"""End to end in a real browser: subscribe, confirm by email, change topics, get the digest,
unsubscribe with the digest's RFC 8058 one-click POST.

Set NEWSLETTER_SCREENSHOTS=DIR to also save full-page screenshots at 375 and 1200 px.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from newsletter.core.models import Subscriber, SubscriberStatus
from newsletter.delivery import service as sending
from newsletter.web import create_app
from tests import factories as f

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADDRESS = "ada@example.org"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.fixture
def site(app) -> Iterator[str]:
    """Serve the web app on 127.0.0.1 in a thread; base_url is its real address."""
    import dataclasses

    holder: dict[str, object] = {}
    server = make_server(
        "127.0.0.1", 0, lambda env, start: holder["app"](env, start), threaded=True
    )
    base = f"http://127.0.0.1:{server.server_port}"
    app.settings = dataclasses.replace(app.settings, base_url=base)
    holder["app"] = create_app(app.settings, app=app)
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        llm.description = "Large language models."
        rl = f.topic(s, "rl")
        rl.description = "Reinforcement learning."
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Policy gradients with a twist", topics={rl: 1.5}, upvotes=25)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _messages(app) -> list[email.message.EmailMessage]:
    """Return the outbox, once the web's mail queue has sent what it was given."""
    assert f.mail_queue_emptied(app)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def _link(message, path: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"(http://127\.0\.0\.1:\d+/{path}/\S+)", text).group(1)


def _in_thread(func, *args):
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(func(*args)))
    worker.start()
    worker.join()
    assert result, "the call in the worker thread failed"
    return result[0]


def _shoot(page, name: str) -> None:
    folder = os.environ.get("NEWSLETTER_SCREENSHOTS")
    if not folder:
        return
    for width in (375, 1200):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)


def test_subscribe_confirm_change_topics_receive_and_unsubscribe(site, browser, app):
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and csp_errors.append(m.text))

    page.goto(site + "/")
    # The browser's time zone is preselected by the script, which the CSP allows.
    assert page.locator("#field-timezone").input_value() == "Asia/Tokyo"
    _shoot(page, "subscribe")
    page.get_by_role("button", name="Subscribe").click()
    assert page.locator("#error-summary").is_visible()  # nothing filled in: errors, not a crash
    _shoot(page, "subscribe-errors")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("Llm").check()
    page.get_by_label("Delivery time").select_option("7")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    _shoot(page, "check-inbox")

    (confirmation,) = _messages(app)
    assert confirmation["To"].addresses[0].addr_spec == ADDRESS
    # The link's page confirms by POST; its script sends it for readers with JavaScript.
    page.goto(_link(confirmation, "confirm"))
    page.get_by_text("Your subscription is confirmed").wait_for()
    _shoot(page, "confirmed")

    page.get_by_label("Llm").uncheck()
    page.get_by_label("Rl").check()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_text("Your preferences are saved.").wait_for()
    assert page.get_by_label("Rl").is_checked() and not page.get_by_label("Llm").is_checked()
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        assert (sub.status, sub.timezone, sub.delivery_hour) == (
            SubscriberStatus.CONFIRMED,
            "Asia/Tokyo",
            7,
        )
        assert sub.consent["user_agent"] and sub.consent["ip"] == "127.0.0.1"

    _in_thread(sending.send, app, f.DAY)  # Playwright's loop runs in this thread
    digest = next(m for m in _messages(app) if m["List-Unsubscribe"])
    body = digest.get_body(("plain",)).get_content()
    assert "Policy gradients with a twist" in body and "Scaling laws" not in body

    page.goto(site + f"/archive/{f.DAY.isoformat()}")
    assert "Scaling laws for tiny models" in page.content() and ADDRESS not in page.content()
    _shoot(page, "archive-edition")

    url = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", digest["List-Unsubscribe"]).group(1)
    page.goto(url)
    _shoot(page, "unsubscribe")
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request) as response:  # as a mail provider would: no cookies
        assert response.status == 200 and response.geturl() == url  # no redirect
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == ADDRESS))
        assert sub.status == SubscriberStatus.UNSUBSCRIBED
    page.goto(url)
    assert "You are unsubscribed" in page.content()
    _shoot(page, "unsubscribed")
    assert csp_errors == []
    context.close()
