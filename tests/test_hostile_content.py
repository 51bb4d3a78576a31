"""Hostile paper content, from an imported file to the email and the archive pages.

Unit-level cases live in test_rendering.py (escaping, safe_url's table); these tests import
a hostile file through the CLI, send the digest and fetch the web page, and check what a reader
would get: text shown escaped, markup never executed, links only http(s).
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
from html.parser import HTMLParser

import pytest

from newsletter.web import create_app
from tests import factories as f

SCRIPT = '<script>alert("x")</script>'
HOSTILE = [
    {
        "title": f"Language model {SCRIPT} & <b>bold</b> &amp; &lt;i&gt;",
        "abstract": "A language model. </td></table><img src=x onerror=alert(1)> &#60;script&#62;",
        "authors": [f"Eve {SCRIPT}", "Mallory <a href='javascript:alert(2)'>x</a>", "O'Neil & Co"],
        "arxiv_id": "2611.00001",
        "url_abs": "javascript:alert(3)",
        "url_pdf": "data:text/html;base64,PHNjcmlwdD4=",
        "url_code": " JaVaScRiPt:alert(4)",
        "listing_date": "2026-11-27",
    },
    {
        "title": "Broken <em markup in a language model <!-- comment",
        "abstract": "Unclosed <div><table> and a stray ]]> in a language model",
        "authors": ["Ada Lovelace"],
        "arxiv_id": "2611.00002",
        "url_abs": "https://arxiv.org/abs/2611.00002",
        "url_pdf": "vbscript:msgbox(1)",
        "url_code": "https://github.com/example/repo",
        "listing_date": "2026-11-27",
    },
]


class _Links(HTMLParser):
    """Collect hrefs, srcs, event-handler attributes and script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.handlers: list[str] = []
        self.scripts: list[str | None] = []  # each script element's src (None: inline)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs).get("src"))
        for name, value in attrs:
            if name in ("href", "src", "action") and value is not None:
                self.urls.append(value)
            if name.startswith("on"):
                self.handlers.append(name)


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


@pytest.fixture
def imported(run, tmp_path):
    assert run("topics", "add", "llm", "--name", "LLM", "--keywords", "language model")\
        .exit_code == 0  # fmt: skip
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(HOSTILE), encoding="utf-8")
    result = run("papers", "import", str(path))
    assert result.exit_code == 0, result.output
    added = run("subscribers", "add", "ada@example.org", "--topics", "llm", "--confirmed")
    assert added.exit_code == 0


def _sent(run, settings) -> email.message.EmailMessage:
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0
    box = mailbox.Maildir(settings.transport.removeprefix("maildir:"), create=False)
    [raw] = [bytes(m) for m in box]
    return email.message_from_bytes(raw, policy=email.policy.default)


def _assert_safe(html: str) -> None:
    links = _parse(html)
    assert links.handlers == []
    assert all(src and src.startswith("/static/") for src in links.scripts)  # only our own
    for url in links.urls:
        assert re.match(r"(https?:|/|#|mailto:)", url), url
    lowered = html.lower()
    for scheme in ("javascript:", "vbscript:", "data:text"):
        assert f'="{scheme}' not in lowered.replace(" ", "")


def test_the_email_shows_hostile_text_escaped_and_links_only_http(run, settings, imported):
    message = _sent(run, settings)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()

    _assert_safe(html)
    # Quotes in text need no escaping; the CSS inliner writes them back as they are.
    assert '&lt;script&gt;alert("x")&lt;/script&gt;' in html
    assert "&amp;amp; &amp;lt;i&amp;gt;" in html  # entities shown as typed, not decoded
    assert "O'Neil &amp; Co" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "https://github.com/example/repo" in html
    assert SCRIPT in text  # the plain part shows the characters as they are
    for url_field in ("alert(3)", "alert(4)", "vbscript:", "data:text"):  # no such link listed
        assert url_field not in text


def test_the_archive_page_shows_hostile_text_escaped_and_links_only_http(run, app, imported):
    assert run("plan", "--date", f.DAY.isoformat()).exit_code == 0
    client = create_app(app.settings, app=app).test_client()

    page = client.get("/archive/2026-11-27")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    _assert_safe(html)
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "Broken &lt;em markup" in html
    assert "https://arxiv.org/abs/2611.00002" in html
    feed = client.get("/archive.atom").get_data(as_text=True)
    assert "<script" not in feed
