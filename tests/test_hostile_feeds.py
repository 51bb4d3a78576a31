"""Hostile feeds through `newsletter papers fetch`: a clear error, a retry where it helps,
and the database unchanged. Client-level cases are in test_fetch.py and test_sources.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply

HF = "/api/daily_papers"
PATHS = {"hf": HF, "arxiv-api": "/api/query", "arxiv": "/rss/cs.CL"}
GOOD = Reply.file(FIXTURES / "hf_daily_papers_5.json")
BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b'<feed xmlns="http://www.w3.org/2005/Atom"><title>&c;</title></feed>'
)


@pytest.fixture
def fetch(run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(
        "http_backoff = 0.01\nhttp_retries = 3\nhttp_timeout = 0.5\narxiv_request_interval = 0\n"
    )

    def go(source: str, *replies: Reply):
        with FeedServer() as server:
            server.add(PATHS[source], *replies)
            category = [] if source == "hf" else ["--category", "cs.CL"]  # hf takes none
            result = run("papers", "fetch", "--source", source, "--url", server.url,
                         "--date", "2026-07-31", *category)  # fmt: skip
            return result, len(server.requests)

    return go


@pytest.mark.parametrize(
    ("source", "reply", "message"),
    [
        ("hf", Reply(body=GOOD.body[: len(GOOD.body) // 2]), "truncated or invalid JSON"),
        ("hf", Reply(body=b"<html>sorry</html>", content_type="text/html"), "got text/html"),
        ("arxiv-api", Reply(body=BOMB, content_type="application/atom+xml"), "entities"),
        ("arxiv", Reply(body=BOMB, content_type="application/rss+xml"), "entities"),
        ("hf", Reply(body=b"[" * 50_000 + b"]" * 50_000), "nested too deeply"),
        ("hf", Reply(status=500, headers={"Retry-After": "0"}), "HTTP 500"),
        ("hf", Reply(status=429, headers={"Retry-After": "3600"}), "retry after 3600"),
        ("hf", Reply(body=GOOD.body, delay=2.0), "timed out"),
    ],
)
def test_a_bad_feed_is_one_clear_line_and_changes_nothing(fetch, app, source, reply, message):
    before = dump_database(app.engine)

    result, _ = fetch(source, reply)

    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert dump_database(app.engine) == before


@pytest.mark.parametrize(
    "fault",
    [
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(status=503, headers={"Retry-After": "0"}),
        Reply(body=GOOD.body, delay=2.0),
    ],
)
def test_a_transient_fault_is_retried_and_the_listing_imported(fetch, fault):
    result, requests = fetch("hf", fault, GOOD)

    assert result.exit_code == 0, result.output
    assert requests == 2 and "imported 5 papers" in result.stdout


def test_a_4xx_or_a_malformed_document_is_not_retried(fetch):
    _, requests = fetch("hf", Reply(status=404))
    assert requests == 1
    _, requests = fetch("hf", Reply(body=json.dumps({"error": "x"}).encode()))
    assert requests == 1


def test_counts_of_thousands_of_digits_in_a_feed_are_left_out(fetch, app):
    """Numbers int() refuses (over 4,300 digits) or no column holds are the source's mistake."""
    items = json.loads(GOOD.body)
    items[0]["paper"]["upvotes"] = int("9" * 4000)
    hf_body = json.dumps(items).replace('"upvotes": 9', '"upvotes": 99' + "9" * 1000, 1)
    arxiv_body = (FIXTURES / "arxiv_api_2026.xml").read_text(encoding="utf-8")
    arxiv_body = arxiv_body.replace(">214881<", ">" + "9" * 5000 + "<")

    hf, _ = fetch("hf", Reply(body=hf_body.encode()))
    arxiv, _ = fetch(
        "arxiv-api", Reply(body=arxiv_body.encode(), content_type="application/atom+xml")
    )

    assert hf.exit_code == 0 and "imported 5 papers" in hf.stdout, hf.output
    assert arxiv.exit_code == 0 and "imported" in arxiv.stdout, arxiv.output
