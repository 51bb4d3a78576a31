"""A hostile source cannot make anything big: the answer, the papers in it, the stored fields."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from newsletter.core.models import Paper
from newsletter.web import create_app
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply

HF = "/api/daily_papers"
DAY = "2026-07-31"
TWENTY_MB = 20 * 1024 * 1024


def _fetch(run, replies: list[Reply]) -> tuple[object, int]:
    with FeedServer() as server:
        server.add(HF, *replies)
        result = run("papers", "fetch", "--source", "hf", "--url", server.url, "--date", DAY)
        return result, len(server.requests)


@pytest.fixture
def quick(tmp_path) -> None:
    (tmp_path / "newsletter.toml").write_text("http_backoff = 0.01\nhttp_retries = 3\n")


def _item(n: int, **paper: object) -> dict[str, object]:
    fields = {"id": f"2607.{n:05d}", "title": f"Language model paper {n}", "summary": "A study."}
    return {"paper": {**fields, **paper}}


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "streamed"])
def test_an_answer_past_source_max_bytes_fails_at_once_and_stores_nothing(
    run, app, quick, announced
):
    padding = json.dumps({"padding": "x" * (TWENTY_MB + 1024)})
    body = json.dumps([_item(1)]).encode()[:-1] + b"," + padding.encode() + b"]"
    before = dump_database(app.engine)

    result, requests = _fetch(run, [Reply(body=body, announce_length=announced)])

    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "larger than 20,971,520 bytes (source_max_bytes)" in line
    assert requests == 1, "a source too big is not asked again"
    assert dump_database(app.engine) == before


def test_source_max_bytes_is_a_setting(run, app, tmp_path):
    (tmp_path / "newsletter.toml").write_text("source_max_bytes = 2048\n")
    body = json.dumps([_item(n) for n in range(40)]).encode()
    assert len(body) > 2048

    result, _ = _fetch(run, [Reply(body=body)])

    assert result.exit_code == 1 and "larger than 2,048 bytes" in result.stderr


def test_more_papers_in_one_answer_than_a_listing_has_are_refused(run, app, quick):
    before = dump_database(app.engine)
    body = json.dumps([_item(n) for n in range(10_001)]).encode()

    result, _ = _fetch(run, [Reply(body=body)])

    assert result.exit_code == 1
    assert "10,001 papers in one document, more than 10,000" in result.stderr
    assert dump_database(app.engine) == before


@pytest.fixture
def served(app) -> Iterator[str]:
    """The web pages on 127.0.0.1 in a thread; yields their base URL."""
    server = make_server("127.0.0.1", 0, create_app(app.settings, app=app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_huge_fields_are_capped_when_stored_and_the_topic_feed_stays_small(run, app, served):
    import httpx

    assert run("topics", "add", "llm", "--name", "LLM", "--keywords", "language model")\
        .exit_code == 0  # fmt: skip
    hostile = _item(
        1,
        title="Language model " + "title " * 20_000,
        summary="language model " + "abstract " * 200_000,
        authors=[{"name": f"Author {i} " + "n" * 300} for i in range(10_000)],
        ai_keywords=[f"keyword {i} " + "k" * 300 for i in range(5_000)],
        githubRepo="https://github.com/x/" + "y" * 10_000,
    )
    # A TL;DR that fills the listing up to 19.5 MB: under source_max_bytes, so the
    # fields' own caps must hold.
    rest = len(json.dumps([hostile, _item(2)]))
    hostile["paper"]["ai_summary"] = "language model " + "tldr " * ((19_500_000 - rest) // 5)
    listing = json.dumps([hostile, _item(2)]).encode()
    assert 19_000_000 < len(listing) < TWENTY_MB

    result, _ = _fetch(run, [Reply(body=listing)])

    assert result.exit_code == 0, result.output
    with app.sessions() as s:
        paper = s.scalars(select(Paper).where(Paper.arxiv_id == "2607.00001")).one()
    assert len(paper.title) <= 500 and paper.title.endswith("…")
    assert len(paper.abstract) <= 5_000 and paper.abstract.endswith("…")
    assert paper.summary is not None and len(paper.summary) <= 1_000
    assert paper.summary.startswith("language model tldr") and paper.summary.endswith("…")
    assert len(paper.authors) == 100 and max(map(len, paper.authors)) <= 200
    assert len(paper.keywords) <= 50 and max(map(len, paper.keywords)) <= 100
    assert paper.url_code is None, "a URL cut short would lead elsewhere"

    feed = httpx.get(f"{served}/topics/llm.atom", timeout=30)
    assert feed.status_code == 200
    assert "Language model paper 2" in feed.text, "the feed lists the topic's papers"
    assert "Language model title title" in feed.text and "TL;DR: language model tldr" in feed.text
    assert len(feed.content) < 20_000
