"""Fetchers against a real local HTTP server: paging, retries, faults, spacing, User-Agent."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import date

import pytest

from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.papers.sources.arxiv import arxiv_query, fetch_arxiv
from newsletter.papers.sources.hf import fetch_hf
from newsletter.papers.sources.http import RetryPolicy, SourceClient, make_http_client
from tests.conftest import FIXTURES
from tests.feed_server import FeedServer, Reply, Request, quick_source_client

DAY = date(2026, 6, 12)
HF_PATH = "/api/daily_papers"
ARXIV_PATH = "/api/query"
FAST_RETRY = RetryPolicy(tries=3, backoff=0.01, max_wait=5)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as feed:
        yield feed


@pytest.fixture
def client(settings) -> Iterator[SourceClient]:
    with quick_source_client(settings, timeout=0.5, tries=3) as source_client:
        yield source_client


def hf_pages(request: Request) -> Reply:
    """Serve the 30-paper fixture in pages of `limit`, numbered by `p`."""
    items = json.loads((FIXTURES / "hf_daily_papers_30.json").read_bytes())
    limit, page = int(request.param("limit") or 50), int(request.param("p") or 0)
    return Reply(body=json.dumps(items[page * limit : (page + 1) * limit]).encode())


def test_hf_pages_until_a_short_page(server, client, settings):
    server.route(HF_PATH, hf_pages)
    records = fetch_hf(DAY, base_url=server.url, client=client, page_size=10)
    assert len(records) == 30 and records[0].arxiv_id == "2606.00467"
    assert [r.param("p") for r in server.requests] == ["0", "1", "2", "3"]
    first = server.requests[0]
    assert (first.param("date"), first.param("limit")) == ("2026-06-12", "10")
    assert first.headers["user-agent"] == settings.user_agent
    assert {r.listing_date for r in records} == {DAY}


def test_hf_default_page_size_is_one_hundred(server, client):
    server.route(HF_PATH, hf_pages)
    assert len(fetch_hf(DAY, base_url=server.url + "/", client=client)) == 30
    assert [(r.param("limit"), r.param("p")) for r in server.requests] == [("100", "0")]


def test_429_honours_retry_after(server, client):
    server.add(
        HF_PATH,
        Reply(status=429, headers={"Retry-After": "1"}, body=b"slow down"),
        Reply.file(FIXTURES / "hf_daily_papers_5.json"),
    )
    assert len(fetch_hf(DAY, base_url=server.url, client=client)) == 5
    first, second = server.requests
    assert second.time - first.time >= 0.9  # waited as asked, not the 0.01 s backoff


def test_retry_after_beyond_the_bound_fails_at_once(server, client):
    server.add(HF_PATH, Reply(status=429, headers={"Retry-After": "3600"}))
    with pytest.raises(SourceError, match="HTTP 429 .*asked to retry after 3600 s"):
        fetch_hf(DAY, base_url=server.url, client=client)
    assert len(server.requests) == 1


def test_server_error_then_success(server, client):
    server.add(HF_PATH, Reply(status=500), Reply.file(FIXTURES / "hf_daily_papers_3.json"))
    assert len(fetch_hf(DAY, base_url=server.url, client=client)) == 3
    assert len(server.requests) == 2


def test_persistent_server_errors_give_up_after_the_tries(server, client):
    server.add(HF_PATH, Reply(status=503))
    with pytest.raises(SourceError, match=r"HTTP 503 Service Unavailable after 3 tries"):
        fetch_hf(DAY, base_url=server.url, client=client)
    assert len(server.requests) == 3


def test_slow_reply_times_out_and_is_retried(server, settings):
    server.add(HF_PATH, Reply(delay=0.6, body=b"[]"))
    impatient = make_http_client(dataclasses.replace(settings, http_timeout=0.15))
    with SourceClient(impatient, retry=FAST_RETRY) as client:
        with pytest.raises(SourceError, match=r"timed out .* after 3 tries"):
            fetch_hf(DAY, base_url=server.url, client=client)
    assert len(server.requests) == 3


def test_html_error_page_is_a_clear_error_without_retry(server, client):
    server.add(HF_PATH, Reply(body=b"<html>Maintenance</html>", content_type="text/html"))
    with pytest.raises(SourceError, match=r"expected application/json, got text/html \(an error"):
        fetch_hf(DAY, base_url=server.url, client=client)
    assert len(server.requests) == 1


def test_not_found_fails_at_once(server, client):
    with pytest.raises(SourceError, match="HTTP 404"):
        fetch_hf(DAY, base_url=server.url + "/nowhere", client=client)
    assert len(server.requests) == 1


def test_body_cut_short_is_retried_then_reported(server, client):
    server.add(HF_PATH, Reply.file(FIXTURES / "hf_daily_papers_5.json", truncate_at=1000))
    with pytest.raises(SourceError, match=r"connection failed .* after 3 tries"):
        fetch_hf(DAY, base_url=server.url, client=client)
    assert len(server.requests) == 3


def test_truncated_document_is_a_source_error(server, client):
    body = (FIXTURES / "hf_daily_papers_5.json").read_bytes()[:1000]
    server.add(HF_PATH, Reply(body=body))
    with pytest.raises(SourceError, match=r"truncated or invalid JSON at line \d+"):
        fetch_hf(DAY, base_url=server.url, client=client)


def test_empty_day_is_no_listing(server, client):
    server.add(HF_PATH, Reply(body=b"[]"))
    with pytest.raises(NoListing, match=r"^no papers listed for 2026-06-12 \(weekend or holiday\)"):
        fetch_hf(DAY, base_url=server.url, client=client)


def atom_pages(request: Request) -> Reply:
    """Serve the 10 entries of the Atom fixture in pages, as the API does with start/max."""
    text = (FIXTURES / "arxiv_api_2026.xml").read_text(encoding="utf-8")
    entries = re.findall(r"<entry>.*?</entry>", text, flags=re.S)
    start, size = int(request.param("start") or 0), int(request.param("max_results") or 10)
    head = text[: text.index("<entry>")].replace(">214881<", f">{len(entries)}<")
    body = head + "".join(entries[start : start + size]) + "</feed>"
    return Reply(body=body.encode(), content_type="application/atom+xml; charset=utf-8")


def test_arxiv_pages_with_the_query_and_spacing(server, client, settings):
    server.route(ARXIV_PATH, atom_pages)
    records = fetch_arxiv(
        DAY, ["cs.LG", "cs.CL"], base_url=server.url, client=client, spacing=0.2, page_size=4
    )
    assert len(records) == 10 and records[0].arxiv_id == "2202.12139"
    assert {r.listing_date for r in records} == {DAY}
    assert [r.param("start") for r in server.requests] == ["0", "4", "8"]
    first = server.requests[0]
    assert first.param("search_query") == (
        "(cat:cs.LG OR cat:cs.CL) AND submittedDate:[202606120000 TO 202606122359]"
    )
    assert (first.param("sortBy"), first.param("sortOrder")) == ("submittedDate", "descending")
    assert first.param("max_results") == "4"
    assert first.headers["user-agent"] == settings.user_agent
    times = [r.time for r in server.requests]
    assert all(b - a >= 0.18 for a, b in zip(times, times[1:], strict=False))


def test_arxiv_spacing_holds_across_retries(server, client):
    server.add(ARXIV_PATH, Reply(status=502), Reply.file(FIXTURES / "arxiv_api_legacy.xml"))
    records = fetch_arxiv(DAY, ["cs.RO"], base_url=server.url, client=client, spacing=0.2)
    assert len(records) == 2
    first, second = server.requests
    assert second.time - first.time >= 0.18


def test_arxiv_error_feed_and_empty_feed(server, client):
    error_feed = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry>'
        b"<id>http://arxiv.org/api/errors#incorrect_id_format</id><title>Error</title>"
        b"<summary>incorrect id format for 1234</summary></entry></feed>"
    )
    server.add(ARXIV_PATH, Reply(body=error_feed, content_type="application/atom+xml"))
    with pytest.raises(SourceError, match="arXiv API error: incorrect id format"):
        fetch_arxiv(DAY, ["cs.LG"], base_url=server.url, client=client, spacing=0)
    empty = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>q</title></feed>'
    server.route(ARXIV_PATH, lambda _r: Reply(body=empty, content_type="application/atom+xml"))
    with pytest.raises(NoListing, match="no papers listed for 2026-06-12"):
        fetch_arxiv(DAY, ["cs.LG"], base_url=server.url, client=client, spacing=0)


def test_arxiv_query_shape():
    assert arxiv_query(date(2026, 1, 2), ["cs.AI"]) == (
        "(cat:cs.AI) AND submittedDate:[202601020000 TO 202601022359]"
    )


def test_arxiv_query_asks_for_each_subject_class_of_an_archive():
    query = arxiv_query(date(2026, 1, 2), ["nlin", "hep-th", "nlin.CD", "cs.lg"])
    assert query.startswith(
        "(cat:nlin.AO OR cat:nlin.CD OR cat:nlin.CG OR cat:nlin.PS OR cat:nlin.SI OR "
        "cat:hep-th OR cat:cs.LG) AND "
    )


def test_arxiv_query_suggests_the_closest_category():
    with pytest.raises(
        InputError, match=r"'cond-mat\.superconductivity' \(did you mean cond-mat\.supr-con\?\)"
    ):
        arxiv_query(date(2026, 1, 2), ["cond-mat.superconductivity"])


@pytest.mark.parametrize("bad", ["cs.LG) OR (all:x", "", "cs LG"])
def test_arxiv_query_refuses_what_is_not_a_category(bad):
    with pytest.raises(InputError, match="not an arXiv category"):
        arxiv_query(date(2026, 1, 2), ["cs.LG", bad])
