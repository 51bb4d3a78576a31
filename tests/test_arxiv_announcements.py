"""arXiv's daily announcement through `newsletter papers fetch --source arxiv`, served by a
local server from a real RSS listing: what is kept, for which day, and what is refused."""

from __future__ import annotations

import json
from datetime import date

import pytest

from newsletter.core.errors import InputError, NoListing
from newsletter.papers.sources.arxiv_announcements import announcement_url, fetch_announcement
from newsletter.papers.sources.http import RetryPolicy, SourceClient, make_http_client
from tests.conftest import FIXTURES
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply

FEED = FIXTURES / "arxiv_rss.xml"  # announced Thu 24 Sep 2026: 2 new, 1 cross, 1 replace
DAY = "2026-09-24"
RSS = "application/rss+xml"


def fetch(run, server, *args: str):
    return run("papers", "fetch", "--source", "arxiv", "--url", server.url, *args)


def papers_listed(run) -> list[dict]:
    result = run("papers", "list", "--date", DAY, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_an_archive_fetches_its_announcement_new_and_cross_listed_without_replacements(run):
    with FeedServer() as server:
        server.add("/rss/astro-ph", Reply.file(FEED, content_type=RSS))
        first = fetch(run, server, "--category", "astro-ph", "--date", DAY, "--json")
        again = fetch(run, server, "--category", "ASTRO-PH", "--date", DAY, "--json")
        asked = [r.path for r in server.requests]

    assert asked == ["/rss/astro-ph", "/rss/astro-ph"]  # the archive as the feed takes it
    assert first.exit_code == 0, first.output
    stored = json.loads(first.stdout)
    assert (stored["papers"], stored["new"], stored["listing_dates"]) == (3, 3, [DAY])
    assert json.loads(again.stdout)["new"] == 0 and json.loads(again.stdout)["unchanged"] == 3
    rows = {row["arxiv_id"]: row for row in papers_listed(run)}
    assert set(rows) == {"2609.26811", "2609.26820", "2205.06398"}  # 2009.13987 replaced
    assert rows["2205.06398"]["categories"] == ["stat.ME", "stat.AP", "stat.ML"]  # the cross
    assert rows["2609.26820"]["authors"][0] == "Naser Mansour"
    assert {row["source"] for row in rows.values()} == {"arxiv"}


def test_categories_are_joined_into_one_feed_and_come_from_settings_when_not_given(run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(
        'scheduler_arxiv_categories = ["cond-mat.supr-con", "math.nt", "q-bio.PE"]\n'
    )
    with FeedServer() as server:
        server.add("/rss/cond-mat.supr-con+math.NT+q-bio.PE", Reply.file(FEED, content_type=RSS))
        result = fetch(run, server, "--date", DAY)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"imported 3 papers for {DAY}: 3 new")


@pytest.mark.parametrize(
    ("category", "message"),
    [
        ("astro-ph.XX", "not an arXiv category: 'astro-ph.XX'"),
        ("cond-mat.superconductivity", "(did you mean cond-mat.supr-con?)"),
        ("biology", "not an arXiv category: 'biology'"),
    ],
)
def test_an_unknown_category_is_one_line_exit_2_before_any_request(run, app, category, message):
    before = dump_database(app.engine)
    with FeedServer() as server:
        result = fetch(run, server, "--category", category, "--date", DAY)
        asked = len(server.requests)
    assert result.exit_code == 2 and asked == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: not an arXiv category") and message in line
    assert dump_database(app.engine) == before


def test_a_past_day_is_refused_naming_the_api_and_a_later_one_is_not_announced_yet(run, app):
    before = dump_database(app.engine)
    with FeedServer() as server:
        server.add("/rss/astro-ph", Reply.file(FEED, content_type=RSS))
        past = fetch(run, server, "--category", "astro-ph", "--date", "2026-09-21")
        later = fetch(run, server, "--category", "astro-ph", "--date", "2026-09-25")
    assert past.exit_code == 2
    assert past.stderr == (
        "Error: arXiv's announcement feed holds only its latest day, 2026-09-24, "
        "not 2026-09-21: fetch past days with --source arxiv-api\n"
    )
    assert later.exit_code == 1
    assert later.stderr.startswith("Error: no arXiv announcement for 2026-09-25 yet: the latest")
    assert later.stderr.count("\n") == 1
    assert dump_database(app.engine) == before


def test_an_empty_announcement_is_no_listing(settings):
    body = FEED.read_bytes()
    start, end = body.index(b"<item>"), body.rindex(b"</item>") + len(b"</item>")
    weekend = body[:start] + body[end:]  # the real feed with its items cut out
    client = SourceClient(make_http_client(settings), retry=RetryPolicy(tries=1))
    with FeedServer() as server, client:
        server.add("/rss/math", Reply(body=weekend, content_type=RSS))
        with pytest.raises(NoListing, match="no papers listed for 2026-09-24"):
            fetch_announcement(date(2026, 9, 24), ["math"], base_url=server.url, client=client)


def test_the_feed_url_takes_every_archive_and_category_of_the_taxonomy():
    url = announcement_url("https://rss.arxiv.org/", ["astro-ph", "econ.em", "eess.SP", "hep-th"])
    assert url == "https://rss.arxiv.org/rss/astro-ph+econ.EM+eess.SP+hep-th"
    with pytest.raises(InputError, match="give at least one arXiv category"):
        announcement_url("https://rss.arxiv.org", [])


@pytest.mark.parametrize(
    ("config", "reply", "message"),
    [
        ("", Reply.file(FIXTURES / "arxiv_api_2026.xml"), "/rss/astro-ph: expected an RSS"),
        ("source_max_bytes = 2048\n", Reply.file(FEED, content_type=RSS), "larger than 2,048"),
        ("", Reply(body=b"<html>busy</html>", content_type="text/html"), "got text/html"),
    ],
    ids=["not-a-listing", "too-big", "error-page"],
)
def test_a_bad_answer_is_one_line_naming_the_feed_and_stores_nothing(
    run, app, tmp_path, config, reply, message
):
    (tmp_path / "newsletter.toml").write_text("http_retries = 1\n" + config)
    before = dump_database(app.engine)
    with FeedServer() as server:
        server.add("/rss/astro-ph", reply)
        result = fetch(run, server, "--category", "astro-ph", "--date", DAY)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert message in line and server.url in line, line
    assert dump_database(app.engine) == before
