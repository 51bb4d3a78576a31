"""The registry of sources: the names everything reads, the scheduler fetching a list of them
(one failing, the others landing), `papers sources`, and unknown names refused where used."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from newsletter.core.errors import ConfigError
from newsletter.delivery.doctor import FAIL, OK, check_sources
from newsletter.editions import schedule
from newsletter.papers.sources.registry import (
    SOURCES,
    ScheduledSource,
    has_discussion_pages,
    ranks_by_upvotes,
    scheduled_sources,
    source_names,
)
from newsletter.runners import tick as sch
from tests.conftest import FIXTURES, REPO
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply

THURSDAY = datetime(2026, 9, 24, 6, 5, tzinfo=UTC)  # the real RSS fixture's announcement day
KNOWN = "hf, arxiv, arxiv-api, biorxiv, medrxiv, feed"
ASTRO_CATEGORIES = ("astro-ph", "cond-mat.supr-con")


def test_every_source_is_named_once_and_documented():
    assert source_names() == ("hf", "arxiv", "arxiv-api", "biorxiv", "medrxiv", "feed")
    docs = (REPO / "docs" / "sources.md").read_text(encoding="utf-8")
    for source in SOURCES:
        assert f"`{source.name}`" in docs, source.name
        assert source.fetch.__doc__, source.name  # what fetching it does, in one line


def test_what_a_source_offers_is_asked_of_the_registry(settings):
    assert has_discussion_pages("hf") and not has_discussion_pages("arxiv")
    assert not has_discussion_pages("json")  # a paper imported from a file
    assert ranks_by_upvotes(dataclasses.replace(settings, scheduler_sources=("arxiv", "hf")))
    assert not ranks_by_upvotes(dataclasses.replace(settings, scheduler_sources=("arxiv",)))


def test_the_fetch_help_lists_every_source(run):
    result = run("papers", "fetch", "--help")
    text = " ".join(result.stdout.split())
    for source in SOURCES:
        assert f"{source.name}: {' '.join(source.label.split())}" in text


def test_an_unknown_source_is_one_line_exit_2_and_changes_nothing(run, app):
    before = dump_database(app.engine)
    result = run("papers", "fetch", "--source", "rss", "--date", "2026-09-24")
    assert result.exit_code == 2
    assert result.stderr == f"Error: unknown source 'rss': known sources are {KNOWN}\n"
    hf = run("papers", "fetch", "--source", "hf", "--category", "cs.LG")
    assert hf.exit_code == 2
    takers = "arxiv, arxiv-api, biorxiv, medrxiv"
    assert hf.stderr == f"Error: hf takes no --category (sources that do: {takers})\n"
    assert dump_database(app.engine) == before


def test_an_unknown_configured_source_stops_what_uses_it_in_one_line(run, app, tmp_path):
    (tmp_path / "newsletter.toml").write_text('scheduler_sources = ["hf", "chemrxiv"]\n')
    before = dump_database(app.engine)
    expected = f"Error: setting scheduler_sources: unknown source 'chemrxiv' (known: {KNOWN})\n"

    assert run("subscribers", "list").exit_code == 0  # the settings themselves load
    for command in (["scheduler", "--once"], ["scheduler", "--dry-run"], ["papers", "sources"]):
        result = run(*command)
        assert (result.exit_code, result.stderr) == (2, expected), command
    assert dump_database(app.engine) == before


def test_doctor_fails_an_unknown_configured_source(settings):
    bad = check_sources(dataclasses.replace(settings, scheduler_sources=("hf", "chemrxiv")))
    assert bad.status == FAIL and "unknown source 'chemrxiv'" in bad.message
    good = check_sources(dataclasses.replace(settings, scheduler_sources=("arxiv", "hf")))
    assert (good.status, good.message) == (OK, "scheduled: arxiv, hf")
    with pytest.raises(ConfigError):
        scheduled_sources(dataclasses.replace(settings, scheduler_sources=("rss",)))


def _scheduled_fetch(app, feed: FeedServer, *, hf: Reply, arxiv: Reply) -> list:
    feed.add("/api/daily_papers", hf)
    feed.add("/rss/astro-ph+cond-mat.supr-con", arxiv)
    app.settings = dataclasses.replace(
        app.settings, hf_url=feed.url, arxiv_rss_url=feed.url, http_retries=1
    )
    config = schedule.ScheduleConfig(
        sources=(ScheduledSource.of("hf"), ScheduledSource.of("arxiv", ASTRO_CATEGORIES))
    )
    return sch.run_fetch(app, THURSDAY, config=config, holder="a")


def test_the_scheduler_fetches_each_source_and_one_failing_does_not_stop_the_next(
    app, run, tmp_path
):
    (tmp_path / "newsletter.toml").write_text('scheduler_sources = ["hf", "arxiv"]\n')
    down = Reply(status=503, body=b"down", content_type="text/plain")
    rss = Reply.file(FIXTURES / "arxiv_rss.xml", content_type="application/rss+xml")
    with FeedServer() as feed:
        outcomes = _scheduled_fetch(app, feed, hf=down, arxiv=rss)
        asked = {r.path: r.param("date") for r in feed.requests}

    assert [(o.source, o.status) for o in outcomes] == [("hf", "failed"), ("arxiv", "stored")]
    assert asked == {"/api/daily_papers": "2026-09-24", "/rss/astro-ph+cond-mat.supr-con": None}
    listed = json.loads(run("papers", "list", "--date", "2026-09-24", "--json").stdout)
    assert len(listed) == 3 and {p["source"] for p in listed} == {"arxiv"}

    shown = {row["name"]: row for row in json.loads(run("papers", "sources", "--json").stdout)}
    assert [row["name"] for row in shown.values()] == [
        "hf", "arxiv", "arxiv-api", "biorxiv", "medrxiv", "feed"
    ]  # fmt: skip
    hf, arxiv, api = shown["hf"], shown["arxiv"], shown["arxiv-api"]
    assert hf["last_fetch"]["status"] == "failed" and hf["last_stored"] is None
    assert "HTTP 503" in hf["last_error"]["error"]
    assert arxiv["last_fetch"] == {"at": "2026-09-24T06:05:00+00:00", "day": "2026-09-24",
                                   "status": "stored"}  # fmt: skip
    assert (arxiv["last_stored"]["papers"], arxiv["last_stored"]["new"]) == (3, 3)
    assert arxiv["last_error"] is None and arxiv["scheduled"] and not api["scheduled"]
    assert api["last_fetch"] is None and api["offers"] == ["categories"]
    assert hf["offers"] == ["upvotes", "TL;DRs", "discussion pages"]


def test_papers_sources_prints_the_last_fetch_stored_listing_and_error(app, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text('scheduler_sources = ["hf", "arxiv"]\n')
    good = Reply.file(FIXTURES / "hf_daily_papers_5.json")
    rss = Reply.file(FIXTURES / "arxiv_rss.xml", content_type="application/rss+xml")
    with FeedServer() as feed:
        _scheduled_fetch(app, feed, hf=good, arxiv=rss)
    with FeedServer() as feed:  # the next Friday: hf is down, arXiv's feed is still Thursday's
        feed.add("/api/daily_papers", Reply(status=503, body=b"down", content_type="text/plain"))
        feed.add("/rss/astro-ph+cond-mat.supr-con", rss)
        app.settings = dataclasses.replace(app.settings, hf_url=feed.url, arxiv_rss_url=feed.url)
        config = schedule.ScheduleConfig(
            sources=(ScheduledSource.of("hf"), ScheduledSource.of("arxiv", ASTRO_CATEGORIES))
        )
        friday = sch.run_fetch(app, THURSDAY.replace(day=25), config=config, holder="a")

    assert [o.status for o in friday] == ["failed", "no listing"]
    result = run("papers", "sources")
    assert result.exit_code == 0, result.output
    hf_block, arxiv_block, api_block, bio_block, med_block, feed_block = _blocks(result.stdout)
    assert hf_block[0].startswith("hf (scheduled): Hugging Face Daily Papers")
    assert "  last fetch: 2026-09-25 06:05 UTC, listing of 2026-09-25: failed" in hf_block
    assert "  last stored: 2026-09-24 06:05 UTC, listing of 2026-09-24: 5 papers (5 new)" in (
        hf_block
    )
    assert any(line.startswith("  last error: 2026-09-25 06:05 UTC: GET ") for line in hf_block)
    assert "  last fetch: 2026-09-25 06:05 UTC, listing of 2026-09-25: no listing" in arxiv_block
    assert "  last stored: 2026-09-24 06:05 UTC, listing of 2026-09-24: 3 papers (3 new)" in (
        arxiv_block
    )
    assert api_block[0].startswith("arxiv-api: arXiv API") and api_block[-1] == "  never fetched"
    assert feed_block[0].startswith("feed: A journal")


def _blocks(text: str) -> list[list[str]]:
    """Split the output into one list of lines per source."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("  "):
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks
