"""Paper cards (TL;DR, discussion links), one paper per arXiv id, and per-topic Atom feeds."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import xml.etree.ElementTree as ET

import feedparser
import pytest
from sqlalchemy import func, select

from newsletter.core.models import Paper
from newsletter.delivery import service as sending
from tests import factories as f
from tests.conftest import FIXTURES

ATOM = "{http://www.w3.org/2005/Atom}"
HF = "https://huggingface.co/papers/"


@pytest.fixture
def day_of_papers(app, run, tmp_path):
    """The real 30-paper Hugging Face listing, one topic, one reader."""
    fixture = FIXTURES / "hf_daily_papers_30.json"
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        topic.keywords = ["language model", "LLM", "LLMs", "agent", "agents", "reasoning"]
        f.subscriber(s, "ada@example.org", [topic]).max_papers = 30
    result = run("papers", "import", str(fixture), "--date", f.DAY.isoformat())
    assert result.exit_code == 0, result.output
    return fixture


def _digest(app):
    sending.send(app, f.DAY)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    (raw,) = [bytes(m) for m in box]
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_paper_with_a_summary_gets_a_tldr_over_a_shorter_abstract(app, day_of_papers):
    with app.sessions() as s:
        papers = {p.title: p for p in s.scalars(select(Paper))}
    summarised = [p for p in papers.values() if p.summary]
    assert summarised, "the real listing carries ai_summary"
    message = _digest(app)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    shown = [p for p in summarised if p.title[:40] in html]
    assert shown
    assert html.count("TL;DR") == len(shown) and text.count("TL;DR:") == len(shown)
    first = shown[0]
    assert first.summary.split()[0] in html
    # The abstract under a TL;DR is a taste: it is cut well before the usual length.
    assert first.abstract[:300] not in " ".join(html.split())


def test_papers_from_hugging_face_link_to_their_discussion(app, day_of_papers):
    message = _digest(app)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    with app.sessions() as s:
        ids = [p.arxiv_id for p in s.scalars(select(Paper)) if p.title[:40] in html]
    assert ids and all(f'href="{HF}{i}"' in html for i in ids)
    assert all(f"{HF}{i}" in text for i in ids) and "Discuss:" in text


def test_a_paper_known_only_from_arxiv_has_no_discussion_link(app, run):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        topic.keywords = ["language model", "LLM", "reasoning"]
        f.subscriber(s, "ada@example.org", [topic])
    feed = FIXTURES / "arxiv_api_2026.xml"
    assert run("papers", "import", str(feed), "--date", f.DAY.isoformat()).exit_code == 0
    with app.transaction() as s:
        paper = s.scalars(select(Paper)).first()
        s.add(f.PaperTopic(paper_id=paper.id, topic_id=topic.id, score=3.0, evidence=["t"]))
    html = _digest(app).get_body(("html",)).get_content()
    assert "huggingface.co" not in html and "Discussion" not in html


def test_the_same_arxiv_paper_from_two_sources_and_versions_is_one_paper(app, run, tmp_path):
    hf = FIXTURES / "hf_daily_papers_3.json"
    assert run("papers", "import", str(hf), "--date", f.DAY.isoformat()).exit_code == 0
    with app.sessions() as s:
        first = s.scalars(select(Paper)).first()
    versioned = tmp_path / "papers.json"
    record = {"title": first.title, "arxiv_id": f"{first.arxiv_id}v3", "abstract": "New."}
    versioned.write_text(json.dumps([record]), encoding="utf-8")
    assert run("papers", "import", str(versioned), "--date", f.DAY.isoformat()).exit_code == 0
    with app.sessions() as s:
        assert s.scalar(select(func.count(Paper.id))) == 3
        assert s.scalar(select(func.count()).where(Paper.arxiv_id == first.arxiv_id)) == 1


# --- per-topic feeds ----------------------------------------------------------------------


@pytest.fixture
def client(app):
    return f.web_app(app).test_client()


def test_each_topic_has_a_valid_atom_feed_of_its_papers(app, client, day_of_papers):
    with app.transaction() as s:
        f.topic(s, "empty")
    response = client.get("/topics/llm.atom")
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    body = response.get_data()
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10" and parsed.feed.title.endswith("Llm")
    assert parsed.entries and all(e.title and e.id and e.link for e in parsed.entries)
    assert any(e.summary.startswith("TL;DR:") for e in parsed.entries)
    assert all(e.get("authors") for e in parsed.entries)
    root = ET.fromstring(body)
    assert root.find(f"{ATOM}updated") is not None and root.find(f"{ATOM}id") is not None
    empty = feedparser.parse(client.get("/topics/empty.atom").get_data())
    assert not empty.bozo and empty.entries == []
    assert client.get("/topics/nope.atom").status_code == 404
    assert "public" in response.headers["Cache-Control"]


def test_topic_feeds_escape_what_papers_say(app, client):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        paper = f.paper(s, "<script>alert(1)</script> & friends", topics={topic: 2.0})
        paper.summary = "]]> <b>bold</b> \u202e"
        paper.authors = ["<img src=x onerror=alert(1)>"]
        paper.url_code = "javascript:alert(1)"
    body = client.get("/topics/llm.atom").get_data(as_text=True)
    ET.fromstring(body)  # well-formed
    assert "<script>" not in body and "<img" not in body and "javascript:" not in body
    entry = feedparser.parse(body).entries[0]
    assert entry.title == "<script>alert(1)</script> & friends"


def test_topic_feeds_are_linked_from_the_archive_and_the_sign_up_page(app, client):
    with app.transaction() as s:
        f.topic(s, "llm")
    for path in ("/", "/archive"):
        page = client.get(path).get_data(as_text=True)
        assert 'href="/topics/llm.atom"' in page
