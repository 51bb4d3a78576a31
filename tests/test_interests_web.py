"""Interests in a reader's own words on the web pages, through the served app: the sign-up,
confirm and preferences forms, hostile text, and in a real browser up to the next digest."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from newsletter.audience import subscribers as svc
from newsletter.core import tokens
from newsletter.core.app import App
from newsletter.core.models import QueuedMail, Subscriber, SubscriberStatus
from newsletter.delivery import service as sending
from newsletter.matching.embeddings import MODEL_ID
from tests import factories as f
from tests.html_forms import form_fields
from tests.test_interests import (  # noqa: F401 - the fixture is used by name
    CONDENSED,
    CONDENSED_TOPICS,
    digests,
    neighbours_app,
    paper_ids,
    store_fields_papers,
)
from tests.test_web_e2e import CHROMIUM, _in_thread, _link, _messages, _served
from tests.test_web_e2e import browser as browser  # noqa: F401 - the fixture, by name

ADA = "ada@example.org"
LABEL = "Or describe your interests in your own words"
HOSTILE = r"$\alpha$-RuCl$_3$ <script>alert(1)</script> \input{/etc/passwd} \newcommand{\x}{y}"


class Visitor:
    """A browser without JavaScript: cookies, forms posted as typed, redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def get(self, path: str) -> str:
        with self.opener.open(self._url(path)) as response:
            return response.read().decode()

    def post(self, path: str, fields: dict) -> tuple[int, str, str]:
        """Post the form; return the status, the final address and the page."""
        body = urllib.parse.urlencode(fields, doseq=True).encode()
        try:
            with self.opener.open(self._url(path), data=body) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.url, exc.read().decode()

    def sign_up(self, **fields: object) -> tuple[int, str, str]:
        form = form_fields(self.get("/"), "/")
        return self.post("/", {**form, "email": ADA, **fields})

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path


@pytest.fixture
def site(app: App) -> Iterator[str]:
    with _served(app) as base:
        with app.transaction() as s:
            f.topic(s, "llm").description = "Large language models."
        yield base


def _stored(app: App, email: str = ADA) -> Subscriber | None:
    with app.reading() as s:
        found = s.scalar(select(Subscriber).where(Subscriber.email == email))
        s.expunge_all()
        return found


def _topics(app: App, email: str = ADA) -> list[str]:
    with app.reading() as s:
        return svc.topic_slugs(svc.get_subscriber(email, session=s))


def test_sign_up_with_interests_and_no_topic_then_confirm(site: str, app: App) -> None:
    visitor = Visitor(site)
    page = visitor.get("/")
    assert LABEL in page and '<textarea name="interests"' in page
    status, url, _ = visitor.sign_up(interests="Spin liquids\r\nin frustrated magnets")
    assert status == 200 and url.endswith("/subscribed")
    (confirmation,) = _messages(app)
    link = _link(confirmation, "confirm")
    form = form_fields(visitor.get(link), "/confirm/")
    assert form["interests"] == "Spin liquids in frustrated magnets" and "topics" not in form
    status, url, page = visitor.post(link, form)
    assert status == 200 and "/manage/" in url and "Your subscription is confirmed" in page
    assert "Spin liquids in frustrated magnets</textarea>" in page
    sub = _stored(app)
    assert sub.status == SubscriberStatus.CONFIRMED and sub.interests_model == MODEL_ID
    assert sub.interests == "Spin liquids in frustrated magnets"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Choose at least one topic, or describe your interests."),
        ({"interests": "magnets " * 150}, "Keep your interests to 1,000 characters or fewer."),
        ({"interests": "spin\x1b[2J liquids"}, "Write your interests as plain text"),
        ({"interests": "spin\u2066liquids", "topics": "llm"}, "Write your interests as plain"),
    ],
)
def test_the_form_needs_a_topic_or_interests_and_refuses_hostile_text(
    site: str, app: App, fields: dict, message: str
) -> None:
    before = f.dump_database(app.engine)
    status, _, page = Visitor(site).sign_up(**fields)
    assert status == 400 and message in page and "Traceback" not in page
    assert f.dump_database(app.engine) == before  # nothing queued, nothing stored
    with app.reading() as s:
        assert s.scalar(select(func.count()).select_from(QueuedMail)) == 0


def test_interests_are_shown_as_typed_never_as_markup_or_latex(site: str, app: App) -> None:
    visitor = Visitor(site)
    visitor.sign_up(interests=HOSTILE)
    link = _link(_messages(app)[0], "confirm")
    shown = visitor.get(link)
    escaped = HOSTILE.replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in shown and "<script>alert" not in shown
    assert "\u03b1" not in shown  # $\alpha$ stays as typed: no LaTeX is read in it
    _, _, manage = visitor.post(link, form_fields(shown, "/confirm/"))
    assert escaped in manage and "<script>alert" not in manage
    assert _stored(app).interests == HOSTILE


def test_a_strangers_sign_up_never_changes_the_owners_interests(site: str, app: App) -> None:
    with app.transaction() as s:
        svc.add_subscriber(session=s, email=ADA, interests="knot invariants", confirmed=True)
    status, _, _ = Visitor(site).sign_up(interests="buy cheap watches", topics="llm")
    assert status == 200
    (mail,) = _messages(app)
    assert "/manage/" in mail.get_body(("plain",)).get_content()  # the owner's own link
    sub = _stored(app)
    assert sub.interests == "knot invariants" and _topics(app) == []


def test_the_preferences_page_saves_and_clears_interests(site: str, app: App) -> None:
    with app.transaction() as s:
        sub = svc.add_subscriber(session=s, email=ADA, topics="llm", confirmed=True)
        path = f"/manage/{tokens.make_token(app.settings, 'manage', sub.id, sub.link_key)}"
    visitor = Visitor(site)
    form = form_fields(visitor.get(path), "/manage/")
    assert form["interests"] == "" and form["topics"] == "llm"
    status, _, page = visitor.post(path, {**form, "topics": [], "interests": ""})
    assert status == 400 and "Choose at least one topic, or describe your interests." in page
    status, _, page = visitor.post(path, {**form, "topics": [], "interests": "tensor networks"})
    assert status == 200 and "Your preferences are saved." in page
    saved = _stored(app)
    assert (saved.interests, saved.interests_model) == ("tensor networks", MODEL_ID)
    assert _topics(app) == []
    status, _, page = visitor.post(path, {**form, "interests": "x" * 1001})
    assert status == 400 and "Keep your interests to 1,000 characters or fewer." in page
    assert _stored(app).interests == "tensor networks"
    visitor.post(path, {**form, "interests": ""})
    cleared = _stored(app)
    assert (cleared.interests, cleared.interests_vector) == ("", None)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_a_sentence_and_no_topic_in_the_browser_brings_a_digest_of_that_field(
    neighbours_app: App, browser  # noqa: F811
) -> None:
    app = neighbours_app
    labels = store_fields_papers(app)
    with _served(app) as base:
        page = browser.new_context().new_page()
        page.goto(base + "/")
        page.get_by_label("Email address").fill(ADA)
        page.get_by_label(LABEL).fill(CONDENSED)
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_role("heading", name="Check your inbox").wait_for()
        (confirmation,) = _messages(app)
        page.goto(_link(confirmation, "confirm"))
        assert page.get_by_label(LABEL).input_value() == CONDENSED
        page.get_by_role("button", name="Confirm my subscription").click()
        page.get_by_text("Your subscription is confirmed").wait_for()
        page.context.close()
    _in_thread(sending.send, app, f.DAY)  # Playwright's loop runs in this thread
    digest = digests(app)[ADA]
    sent = paper_ids(digest)
    assert len(sent) == 10 and all(labels[key] & CONDENSED_TOPICS for key in sent), sent
    assert digest.get_body(("plain",)).get_content().count("Why: close to your interests") == 10
