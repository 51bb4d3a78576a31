"""`newsletter papers ...` end to end: import, fetch, list, show; bad input leaves no trace."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from newsletter.core.db import make_engine
from newsletter.core.models import Topic
from tests.conftest import FIXTURES, REPO
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply
from tests.test_sources import BILLION_LAUGHS, EXTERNAL_ENTITY, with_doctype

SEED_PAGE = REPO / "seeds" / "hf-daily-papers-page.txt"
ALL_FIXTURES = [
    *sorted(FIXTURES.glob("*.json")),
    *sorted(FIXTURES.glob("*.xml")),
    SEED_PAGE,
]


def dump(settings) -> str:
    """Return the whole database as text: equal dumps mean an unchanged database."""
    engine = make_engine(settings)
    try:
        return dump_database(engine)
    finally:
        engine.dispose()


def summary(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add_topic(app, slug: str, keywords: list[str]) -> None:
    with app.transaction() as session:
        session.add(Topic(slug=slug, name=slug, keywords=keywords))


def test_import_seed_page_then_again(run):
    result = run("papers", "import", str(SEED_PAGE), "--date", "2026-11-27")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"imported 50 papers for 2026-11-27: 50 new, 0 updated, 0 unchanged; \d+ topic matches\n",
        result.stdout,
    )
    again = run("papers", "import", str(SEED_PAGE), "--date", "2026-11-27")
    assert "50 papers for 2026-11-27: 0 new, 0 updated, 50 unchanged" in again.stdout
    rows = json.loads(run("papers", "list", "--json").stdout)
    assert len(rows) == 50
    assert {r["listing_date"] for r in rows} == {"2026-11-27"}
    titles = [r["title"] for r in rows]
    # No upvotes on the page: in the page's own order, said so.
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert titles[0].startswith("Forecasting Trajectory and Behavior of Road-Agents")
    listed = run("papers", "list").stdout.splitlines()
    assert listed[0] == "50 papers listed on 2026-11-27, in the order listed:"
    assert listed[1].startswith("#") or not listed[1].startswith(" ")  # no upvote column


def test_import_every_fixture_at_once(run):
    files = [str(p) for p in ALL_FIXTURES if p != SEED_PAGE]
    data = summary(run("papers", "import", *files, "--json"))
    assert (data["papers"], data["new"], data["updated"]) == (54, 54, 0)
    assert "2026-06-12" in data["listing_dates"] and "2026-09-24" in data["listing_dates"]
    again = summary(run("papers", "import", *files, "--json"))
    assert (again["new"], again["updated"], again["unchanged"]) == (0, 0, 54)


def test_list_sorts_by_upvotes_and_round_trips_through_import(run, settings, tmp_path):
    run("papers", "import", str(FIXTURES / "hf_daily_papers_30.json"))
    listed = run("papers", "list", "--json")
    rows = json.loads(listed.stdout)
    assert len(rows) == 30
    assert [r["upvotes"] for r in rows[:3]] == [118, 103, 74]
    assert rows[0]["title"].startswith("EvoArena") and rows[0]["id"] > 0
    assert rows[0]["url_code"] == "https://github.com/Aiden0526/EvoArena"
    before = dump(settings)
    out = tmp_path / "papers.json"
    out.write_text(listed.stdout, encoding="utf-8")
    data = summary(run("papers", "import", str(out), "--json"))
    assert (data["new"], data["updated"], data["unchanged"]) == (0, 0, 30)
    assert dump(settings) == before
    top = run("papers", "list", "--limit", "2")
    assert top.stdout.splitlines()[0] == "2 papers listed on 2026-06-12, most upvoted first:"
    assert "118  2606.13681" in top.stdout


def test_topic_matches_show_in_list_and_filter(run, app):
    add_topic(app, "sparse-attention", ["sparse attention"])
    data = summary(run("papers", "import", str(FIXTURES / "hf_daily_papers_30.json"), "--json"))
    assert data["topic_matches"] >= 1
    rows = json.loads(run("papers", "list", "--topic", "sparse-attention", "--json").stdout)
    assert "MiniMax Sparse Attention" in [r["title"] for r in rows]
    assert len(rows) < 30
    (match,) = next(r for r in rows if r["title"] == "MiniMax Sparse Attention")["topics"]
    assert match["slug"] == "sparse-attention" and match["score"] > 0 and match["evidence"]
    shown = run("papers", "show", "2606.13392v2")
    assert shown.exit_code == 0
    assert shown.stdout.startswith("MiniMax Sparse Attention\n")
    assert "topic sparse-attention" in shown.stdout


def test_unknown_topic_and_unknown_paper_are_input_errors(run):
    run("papers", "import", str(FIXTURES / "hf_daily_papers_3.json"))
    result = run("papers", "list", "--topic", "nope")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: unknown topic 'nope' (see `newsletter topics list`)"
    missing = run("papers", "show", "9999.99999")
    assert missing.exit_code == 2 and "no paper with id or arXiv id" in missing.stderr


def test_list_on_an_empty_database(run):
    assert run("papers", "list").stdout == "no papers yet\n"
    assert json.loads(run("papers", "list", "--json").stdout) == []


def variants(path: Path) -> list[tuple[str, bytes, str, int]]:
    """Return (label, content, --format, expected exit code) for each way to break a file."""
    data = path.read_bytes()
    if path == SEED_PAGE:
        return [
            ("truncated", data[: data.rindex(b"\n\n")], "auto", 2),
            ("wrong-format", data, "hf-json", 2),
            ("empty-file", b"", "auto", 2),
            ("empty-feed", data[: data.index(b"community") + 9], "auto", 1),
        ]
    if path.suffix == ".json":
        return [
            ("truncated", data[: len(data) // 2], "auto", 2),
            ("wrong-format", data, "arxiv-atom", 2),
            ("empty-file", b"", "auto", 2),
            ("empty-feed", b"[]", "auto", 1),
        ]
    item = rb"<item>.*?</item>" if b"<rss" in data else rb"<entry>.*?</entry>"
    return [
        ("truncated", data[: len(data) // 2], "auto", 2),
        ("wrong-format", data, "hf-json", 2),
        ("billion-laughs", with_doctype(data, BILLION_LAUGHS, "&lol3;"), "auto", 2),
        ("external-entity", with_doctype(data, EXTERNAL_ENTITY, "&xxe;"), "auto", 2),
        ("empty-file", b"", "auto", 2),
        ("empty-feed", re.sub(item, b"", data, flags=re.S), "auto", 1),
    ]


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_malformed_files_are_rejected_and_change_nothing(path, run, settings, tmp_path):
    run("papers", "import", str(FIXTURES / "hf_daily_papers_3.json"))
    before = dump(settings)
    good = FIXTURES / "hf_daily_papers_5.json"  # valid, but must not be stored either
    for label, content, fmt, code in variants(path):
        bad = tmp_path / f"{label}-{path.name}"
        bad.write_bytes(content)
        result = run(
            "papers", "import", str(good), str(bad), "--format", fmt, "--date", "2026-11-28"
        )
        if fmt != "auto":  # a forced format applies to the good file too: check the bad alone
            result = run("papers", "import", str(bad), "--format", fmt)
        assert result.exit_code == code, (label, result.output)
        message = result.stderr.strip()
        assert "\n" not in message and bad.name in message, (label, message)
        if code == 1:
            assert "no papers listed" in message
        assert dump(settings) == before, label


def test_missing_file_is_one_line(run):
    result = run("papers", "import", "nowhere.json")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: nowhere.json: cannot read: No such file or directory"


def test_fetch_hf_from_a_local_server(run, settings):
    with FeedServer() as server:
        server.add("/api/daily_papers", Reply.file(FIXTURES / "hf_daily_papers_5.json"))
        args = ["papers", "fetch", "--source", "hf", "--url", server.url, "--date", "2026-07-31"]
        result = run(*args)
        assert server.requests[0].headers["user-agent"] == settings.user_agent
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("imported 5 papers for 2026-07-31: 5 new, 0 updated")


def test_fetch_weekend_is_one_line_exit_1(run, app, settings):
    before = dump(settings)
    with FeedServer() as server:
        server.add("/api/daily_papers", Reply(body=b"[]"))
        result = run("papers", "fetch", "--url", server.url, "--date", "2026-11-28")
    assert result.exit_code == 1
    assert result.stderr == "Error: no papers listed for 2026-11-28 (weekend or holiday)\n"
    assert dump(settings) == before


def test_fetch_arxiv_api_with_settings_from_the_config_file(run, tmp_path):
    # run() works in tmp_path, where the CLI finds newsletter.toml.
    (tmp_path / "newsletter.toml").write_text("arxiv_request_interval = 0\nhttp_backoff = 0.01\n")
    with FeedServer() as server:
        server.add(
            "/api/query",
            Reply(status=503),
            Reply.file(FIXTURES / "arxiv_api_legacy.xml", content_type="application/atom+xml"),
        )
        result = run(
            "papers", "fetch", "--source", "arxiv-api", "--category", "cs.RO",
            "--url", server.url, "--date", "2025-10-16", "--json",
        )  # fmt: skip
        query = server.requests[-1].param("search_query")
    data = summary(result)
    assert (data["papers"], data["new"]) == (2, 2)
    assert query == "(cat:cs.RO) AND submittedDate:[202510160000 TO 202510162359]"


def test_fetch_server_failure_is_exit_1(run, tmp_path):
    (tmp_path / "newsletter.toml").write_text("http_backoff = 0.01\nhttp_retries = 2\n")
    with FeedServer() as server:
        server.add("/api/daily_papers", Reply(body=b"<html>down</html>", content_type="text/html"))
        result = run("papers", "fetch", "--url", server.url, "--date", "2026-11-27")
    assert result.exit_code == 1
    assert "expected application/json, got text/html" in result.stderr


@pytest.mark.parametrize("command", ["import", "fetch", "list", "show", "sources"])
def test_help_has_an_example(run, command):
    result = run("papers", command, "--help")
    assert result.exit_code == 0
    assert "newsletter papers " + command in result.stdout
