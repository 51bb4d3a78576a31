"""`[[sources]]` tables in newsletter.toml: each source with its own name, categories, address
and schedule; fetched by the scheduler (one failing, the others landing), shown by `papers
sources`, fetched by name with `papers fetch`, and every wrong table refused in one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.core.config import load_settings
from newsletter.core.errors import ConfigError
from newsletter.delivery.doctor import FAIL, check_sources
from newsletter.editions import schedule
from newsletter.papers.sources.registry import scheduled_sources
from newsletter.runners import tick as sch
from tests.conftest import FIXTURES
from tests.factories import dump_database
from tests.feed_server import FeedServer, Reply

THURSDAY = datetime(2026, 9, 24, 6, 5, tzinfo=UTC)  # the real arXiv RSS fixture's day
BIORXIV = FIXTURES / "biorxiv" / "biorxiv_details.json"
NATURE = FIXTURES / "feeds" / "nature_rss10.rdf"

TABLES = """\
[[sources]]
kind = "hf"
url = "{url}"

[[sources]]
kind = "arxiv"
name = "magnets"
categories = ["astro-ph", "cond-mat.supr-con"]
url = "{url}"

[[sources]]
kind = "feed"
name = "nature"
url = "{url}/nature.rss"

[[sources]]
kind = "biorxiv"
name = "neuro"
categories = ["neuroscience"]
url = "{url}"
cron = "0 3 * * sun"
"""


def _one_page(path: Path) -> Reply:
    """The real answer, its messages saying the day holds just its rows (no second page)."""
    doc = json.loads(path.read_bytes())
    doc["messages"][0]["total"] = str(len(doc["collection"]))
    return Reply(body=json.dumps(doc).encode())


@pytest.fixture
def feed() -> FeedServer:
    with FeedServer() as server:
        server.add("/api/daily_papers", Reply(status=503, body=b"down", content_type="text/plain"))
        server.add("/rss/astro-ph+cond-mat.supr-con",
                   Reply.file(FIXTURES / "arxiv_rss.xml", content_type="application/rss+xml"))
        server.add("/nature.rss", Reply.file(NATURE, content_type="application/rss+xml"))
        server.add("/details/biorxiv/2020-01-08/2020-01-08/0", _one_page(BIORXIV))
        yield server  # fmt: skip


@pytest.fixture
def configured(run, feed, env) -> Path:
    """newsletter.toml with the four tables, in the folder the CLI runs in."""
    path = Path("newsletter.toml")
    path.write_text(f"http_retries = 1\n{TABLES.format(url=feed.url)}", encoding="utf-8")
    return path


def _schedule(env: dict[str, str]) -> schedule.ScheduleConfig:
    return schedule.ScheduleConfig.from_settings(load_settings(env=env))


def test_the_scheduler_fetches_each_table_on_its_own_schedule(app, run, feed, env, configured):
    config = _schedule(env)
    assert [(s.name, s.source.name) for s in config.sources] == [
        ("hf", "hf"), ("magnets", "arxiv"), ("nature", "feed"), ("neuro", "biorxiv")
    ]  # fmt: skip
    assert config.fetch_crons == ("0 6 * * mon-fri", "0 3 * * sun")

    outcomes = sch.run_fetch(app, THURSDAY, config=config, holder="a")
    # hf is down, magnets lands, Nature's feed has nothing of that day, neuro waits for Sunday.
    assert [(o.source, o.status) for o in outcomes] == [
        ("hf", "failed"), ("magnets", "stored"), ("nature", "no listing")
    ]  # fmt: skip
    paths = [r.path for r in feed.requests]
    assert "/rss/astro-ph+cond-mat.supr-con" in paths and not any("biorxiv" in p for p in paths)
    listed = json.loads(run("papers", "list", "--date", "2026-09-24", "--json").stdout)
    assert len(listed) == 3 and {p["source"] for p in listed} == {"arxiv"}

    before = dump_database(app.engine)
    again = sch.run_fetch(app, THURSDAY + timedelta(minutes=2), config=config, holder="b")
    assert again == []  # each day once; the failed one waits for its backoff
    assert dump_database(app.engine) == before

    sunday = datetime(2026, 9, 27, 3, 1, tzinfo=UTC)
    assert [o.source for o in sch.run_fetch(app, sunday, config=config, holder="a")] == ["neuro"]


def test_papers_sources_shows_each_table_by_name_with_what_it_asks(app, run, feed, env, configured):
    sch.run_fetch(app, THURSDAY, config=_schedule(env), holder="a")
    result = run("papers", "sources", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["kind"], r["scheduled"]) for r in rows] == [
        ("hf", "hf", True), ("magnets", "arxiv", True), ("nature", "feed", True),
        ("neuro", "biorxiv", True), ("arxiv", "arxiv", False), ("arxiv-api", "arxiv-api", False),
        ("biorxiv", "biorxiv", False), ("medrxiv", "medrxiv", False), ("feed", "feed", False),
    ]  # fmt: skip
    by_name = {r["name"]: r for r in rows}
    assert by_name["magnets"]["asks"] == {
        "categories": ["astro-ph", "cond-mat.supr-con"], "url": feed.url
    }  # fmt: skip
    assert by_name["neuro"]["asks"]["cron"] == "0 3 * * sun"
    assert by_name["magnets"]["last_stored"]["papers"] == 3
    assert "HTTP 503" in by_name["hf"]["last_error"]["error"]
    assert by_name["nature"]["last_fetch"]["status"] == "no listing"
    assert by_name["arxiv"]["last_fetch"] is None  # the table's fetches are the table's

    text = run("papers", "sources").stdout
    assert "magnets [arxiv] (scheduled): arXiv's daily announcement" in text
    assert '  categories = ["astro-ph", "cond-mat.supr-con"]' in text


def test_papers_fetch_takes_a_tables_name(app, run, feed, configured):
    result = run("papers", "fetch", "--source", "neuro", "--date", "2020-01-08", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 9  # the table's subject: neuroscience only
    assert feed.requests[-1].param("category") == "neuroscience"
    rows = json.loads(run("papers", "list", "--date", "2020-01-08", "--json").stdout)
    assert {c for r in rows for c in r["categories"]} == {"neuroscience"}
    assert {r["source"] for r in rows} == {"biorxiv"} and all(r["doi"] for r in rows)

    nature = run("papers", "fetch", "--source", "nature", "--date", "2024-08-14", "--json")
    assert nature.exit_code == 0, nature.output
    assert json.loads(nature.stdout)["new"] == 40
    shown = {r["name"]: r for r in json.loads(run("papers", "sources", "--json").stdout)}
    assert shown["neuro"]["last_stored"]["papers"] == 9
    assert shown["nature"]["last_stored"]["papers"] == 40 and shown["feed"]["last_fetch"] is None

    unknown = run("papers", "fetch", "--source", "neurons")
    assert unknown.exit_code == 2
    assert "unknown source 'neurons'" in unknown.stderr
    assert "configured: magnets, nature, neuro" in unknown.stderr


def test_tables_beside_or_inside_a_newsletter_table_are_read(tmp_path):
    inside = tmp_path / "inside.toml"
    inside.write_text('[newsletter]\nlist_name = "Magnets"\n\n[[newsletter.sources]]\n'
                      'kind = "arxiv"\ncategories = ["cond-mat"]\n')  # fmt: skip
    beside = tmp_path / "beside.toml"
    beside.write_text('[newsletter]\nlist_name = "Magnets"\n\n[[sources]]\nkind = "arxiv"\n'
                      'categories = ["cond-mat"]\n')  # fmt: skip
    for path in (inside, beside):
        settings = load_settings(path, env={})
        assert [(s.name, s.categories) for s in scheduled_sources(settings)] == [
            ("arxiv", ("cond-mat",))
        ]
        assert settings.list_name == "Magnets"


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('[[sources]]\nname = "x"\n', "table 1: needs kind"),
        ('[[sources]]\nkind = "arxiv"\ncategoris = ["math"]\n', "table 1: unknown key 'categoris'"),
        ('[[sources]]\nkind = "Arxiv"\n', "kind must be lower-case letters"),
        ('[[sources]]\nkind = "arxiv"\nname = "a b"\n', "name must be lower-case letters"),
        ('[[sources]]\nkind = "hf"\n[[sources]]\nkind = "hf"\n', "two [[sources]] tables are "
         "named 'hf'"),
        ('[[sources]]\nkind = "hf"\ncron = "at six"\n', "cron must be a cron line"),
        ('[[sources]]\nkind = "feed"\nurl = "ftp://x.org/f"\n', "url must be an http(s) address"),
        ('[[sources]]\nkind = "arxiv"\ncategories = "math"\n', "categories must be a list"),
        ('scheduler_sources = ["hf"]\n[[sources]]\nkind = "hf"\n', "scheduler_sources is set "
         "beside [[sources]] tables"),
        ("sources = 3\n", "sources must be [[sources]] tables"),
    ],
)  # fmt: skip
def test_a_wrong_table_is_refused_in_one_line_naming_it(tmp_path, tables, message):
    path = tmp_path / "newsletter.toml"
    path.write_text(tables, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('kind = "rss"', "[[sources]] rss: unknown kind 'rss' (known: hf, arxiv,"),
        ('kind = "feed"\nname = "hf"\nurl = "https://x.org/f"', "the name is another source's"),
        ('kind = "hf"\ncategories = ["cs.LG"]', "[[sources]] hf: hf takes no categories"),
        ('kind = "arxiv"\ncategories = ["astro"]', "not an arXiv category: 'astro' (did you "
         "mean astro-ph?)"),
        ('kind = "biorxiv"\ncategories = ["neurology"]', "not a bioRxiv subject: 'neurology'"),
        ('kind = "feed"\nname = "nature"', "[[sources]] nature: a feed source needs url"),
    ],
)  # fmt: skip
def test_a_table_its_kind_refuses_fails_the_commands_that_read_it(run, env, table, message):
    Path("newsletter.toml").write_text(f"[[sources]]\n{table}\n", encoding="utf-8")
    for command in (("papers", "sources"), ("papers", "fetch", "--date", "2026-09-24")):
        result = run(*command)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    check = check_sources(load_settings(env=env))
    assert check.status == FAIL and message in check.message


def test_newsletter_config_prints_the_tables_as_a_file_that_loads_again(run, env, configured):
    result = run("config")
    assert result.exit_code == 0, result.output
    assert "\n# (the [[sources]] tables below replace it) scheduler_sources = " in result.stdout
    again = Path("again.toml")
    again.write_text(result.stdout.replace('secret_key = "****"', ""), encoding="utf-8")
    assert load_settings(again, env=env).sources == load_settings(configured, env=env).sources

    data = json.loads(run("config", "--json").stdout)
    assert [t["name"] for t in data["sources"]] == ["hf", "magnets", "nature", "neuro"]
    magnets = data["sources"][1]
    assert magnets["url"].startswith("http://127.0.0.1:")
    assert {k: v for k, v in magnets.items() if k != "url"} == {
        "kind": "arxiv", "name": "magnets", "categories": ["astro-ph", "cond-mat.supr-con"],
        "cron": None,
    }  # fmt: skip
