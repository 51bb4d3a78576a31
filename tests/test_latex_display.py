"""Real titles with LaTeX, imported and sent: every place a reader sees them reads as text."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import mailbox
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from newsletter.core.models import Paper
from newsletter.web import create_app
from tests import factories as f

LABELLED = Path(__file__).parent / "labelled"
# arXiv id -> the labelled set holding it and its title as a reader reads it.
REAL = {
    "2504.02541": ("astro", "ΛCDM from broken diffeomorphisms"),
    "2501.07631": (
        "astro",
        "Ultra-Light Dark Matter Simulations and Stellar Dynamics: Tension in Dwarf Galaxies "
        "for m < 5×10⁻²¹ eV",
    ),
    "1006.5808": ("fields", "Exactness of the reduction on étale modules"),
    "1006.5811": (
        "fields", "Multiple double-exchange mechanism by Mn²⁺-doping in manganite compounds"
    ),
    "1006.5830": (
        "fields",
        "Anisotropic Superconducting Properties of Optimally Doped BaFe₂(As_(0.65)P_(0.35))₂ "
        "under Pressure",
    ),
    "1007.0154": (
        "fields", "Supercritical Nonlinear Schrödinger Equations II: Almost Global Existence"
    ),
}  # fmt: skip
TOP = "2504.02541"  # the most upvoted: the subject carries its title
AUTHOR = ("Gergely Z\\'abr\\'adi", "Gergely Zábrádi")  # of 1006.5808, as stored and as read
ABSTRACT = "optimally doped single crystals of BaFe₂(As₁₋ₓPₓ)₂ (x≈0.35)"  # of 1006.5830
RAW = re.compile(r"\$|\\['\"a-zA-Z]")  # a math delimiter, an accent or a macro left over


def _labelled() -> dict[str, dict]:
    papers = {}
    for name in ("astro", "fields"):
        for p in json.loads((LABELLED / name / "papers.json").read_text(encoding="utf-8")):
            if p["key"] in REAL:
                papers[p["key"]] = p
    return papers


def _authors(value: str | None) -> list[str]:
    return [a for a in re.split(r",\s*(?:and\s+)?|\s+and\s+", value or "") if a]


@pytest.fixture
def latex_day(run, tmp_path) -> dict[str, dict]:
    """The real papers imported with `papers import`, a physics topic and one reader."""
    papers = _labelled()
    items = [
        {
            "arxiv_id": key,
            "title": p["title"],
            "abstract": p["abstract"],
            "authors": _authors(p.get("authors")),
            "categories": p["categories"],
            "upvotes": 90 if key == TOP else 10 + n,
        }
        for n, (key, p) in enumerate(sorted(papers.items()))
    ]
    path = tmp_path / "physics.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    added = run(
        "topics", "add", "physics", "--name", "Physics and mathematics",
        "--categories", "astro-ph,gr-qc,cond-mat,math", "--whole-categories",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    imported = run("papers", "import", str(path), "--date", f.DAY.isoformat())
    assert imported.exit_code == 0, imported.output
    reader = run("subscribers", "add", "ada@example.org", "--topics", "physics", "--confirmed")
    assert reader.exit_code == 0, reader.output
    return papers


class _Text(HTMLParser):
    """The text a mail client shows of an HTML part (entities decoded)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self._skip += tag in ("style", "head")

    def handle_endtag(self, tag):  # noqa: ANN001
        self._skip -= tag in ("style", "head")

    def handle_data(self, data):  # noqa: ANN001
        if not self._skip:
            self.parts.append(data)


def _shown(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return _words(" ".join(parser.parts))


def _words(text: str) -> str:
    return " ".join(text.split())


def _sent(settings) -> email.message.EmailMessage:  # noqa: ANN001
    [raw] = [bytes(m) for m in mailbox.Maildir(settings.transport.removeprefix("maildir:"))]
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_latex_titles_read_as_text_in_both_parts_and_the_subject(run, app, settings, latex_day):
    sent = run("send", "--date", f.DAY.isoformat())
    assert sent.exit_code == 0, sent.output

    message = _sent(settings)
    subject = str(message["Subject"])
    text = _words(message.get_body(("plain",)).get_content())
    html = _shown(message.get_body(("html",)).get_content())
    assert REAL[TOP][1] in subject and not RAW.search(subject)
    for _, title in REAL.values():
        assert _words(title) in text
        assert _words(title) in html
    for part in (text, html):
        assert AUTHOR[1] in part
        assert ABSTRACT in part
        assert not RAW.search(part), RAW.search(part)


def test_the_database_keeps_the_titles_as_the_source_gave_them(run, app, latex_day):
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0
    with app.sessions() as s:
        stored = {p.arxiv_id: p for p in s.scalars(select(Paper))}
    for key, paper in latex_day.items():
        assert stored[key].title == paper["title"]
        assert stored[key].abstract == paper["abstract"]
    assert AUTHOR[0] in stored["1006.5808"].authors


@pytest.fixture
def site(app) -> Iterator[str]:
    """The web app served on 127.0.0.1 in a thread."""
    holder: dict[str, object] = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.settings = dataclasses.replace(app.settings, base_url=base)
    holder["app"] = create_app(app.settings, app=app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_archive_page_and_the_topic_feed_read_as_text(run, app, latex_day, site):
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0

    page = httpx.get(f"{site}/archive/{f.DAY.isoformat()}")
    assert page.status_code == 200
    shown = _shown(page.text)
    for _, title in REAL.values():
        assert _words(title) in shown
    assert AUTHOR[1] in shown and not RAW.search(shown)

    feed = feedparser.parse(httpx.get(f"{site}/topics/physics.atom").content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert {e.title for e in feed.entries} == {title for _, title in REAL.values()}
    names = {a.name for e in feed.entries for a in e.get("authors", [])}
    assert AUTHOR[1] in names
    summaries = " ".join(e.summary for e in feed.entries)
    assert ABSTRACT in summaries and not RAW.search(summaries)


def test_the_vote_page_a_digest_links_to_shows_the_title_as_text(run, app, latex_day, site):
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0
    html = _sent(app.settings).get_body(("html",)).get_content()
    [first] = re.findall(r'href="[^"]*(/feedback/[^"/]+)/more"', html)[:1]

    page = httpx.get(f"{site}{first}/more")

    assert page.status_code == 200
    assert REAL[TOP][1] in _shown(page.text)


def test_papers_list_and_show_print_text_and_json_keeps_the_source(run, latex_day):
    listed = run("papers", "list", "--date", f.DAY.isoformat())
    assert listed.exit_code == 0, listed.output
    for _, title in REAL.values():
        assert title in listed.output
    assert not RAW.search(listed.output)

    shown = run("papers", "show", "1006.5830")
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0] == REAL["1006.5830"][1]
    assert ABSTRACT in _words(shown.output) and not RAW.search(shown.output)
    assert AUTHOR[1] in run("papers", "show", "1006.5808").output

    as_json = json.loads(run("papers", "list", "--date", f.DAY.isoformat(), "--json").output)
    assert {p["title"] for p in as_json} == {p["title"] for p in latex_day.values()}
