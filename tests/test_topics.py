"""Topics: validation, TOML import, listing, removal, and the `topics` commands."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import Paper, PaperTopic, Subscriber, Subscription, Topic
from newsletter.matching.topics import (
    add_topic,
    import_topics,
    list_topics,
    make_spec,
    normalise_category,
    remove_topic,
    split_list,
)

REPO = Path(__file__).resolve().parent.parent

GOOD_TOML = """
[[topic]]
slug = "llm"
name = "Large language models"
description = "Prompting and evaluating LLMs."
keywords = ["LLM", "large language model"]
categories = ["cs.CL"]

[[topic]]
slug = "robotics"
name = "Robotics"
keywords = ["robot", "manipulation"]
"""


def _paper(app: App, title: str) -> int:
    with app.transaction() as s:
        paper = Paper(
            title=title, title_key=title.lower(), listing_date=date(2026, 11, 27), source="test"
        )
        s.add(paper)
        s.flush()
        return paper.id


def _count(app: App, model) -> int:
    with app.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_split_list_strips_and_drops_empties() -> None:
    assert split_list(" k1, k2 ,, ,k3 ") == ["k1", "k2", "k3"]
    assert split_list(None) == []


@pytest.mark.parametrize("value", ["cs.LG", "stat.ML", "eess.AS", "q-bio.NC", "hep-th"])
def test_valid_categories(value: str) -> None:
    assert normalise_category(value) == value


def test_category_case_is_normalised_and_bad_shapes_rejected() -> None:
    assert normalise_category("cs.lg") == "cs.LG"
    for bad in ("cs", "LG", "cs.L G", "cs..LG", "computer science"):
        with pytest.raises(InputError, match="arXiv category"):
            normalise_category(bad)


@pytest.mark.parametrize("slug", ["", "Big", "a_b", "-a", "a-", "x" * 65, "a b"])
def test_bad_slugs_are_rejected(slug: str) -> None:
    with pytest.raises(InputError, match="slug"):
        make_spec(slug, "Name")


def test_spec_dedupes_keywords_and_requires_a_name() -> None:
    spec = make_spec("llm", "LLMs", keywords="LLM, llm, large language model", categories="cs.CL")
    assert spec.keywords == ("LLM", "large language model")
    assert spec.categories == ("cs.CL",)
    with pytest.raises(InputError, match="name"):
        make_spec("llm", "  ")


def test_add_topic_matches_existing_papers(app: App) -> None:
    pid = _paper(app, "Large Language Models as judges")
    _paper(app, "Robots that grasp")
    with app.transaction() as s:
        topic = add_topic(session=s, slug="llm", name="LLMs", keywords="large language model")
        assert [pt.paper_id for pt in topic.papers] == [pid]


def test_add_duplicate_slug_is_an_input_error(app: App) -> None:
    with app.transaction() as s:
        add_topic(session=s, slug="llm", name="LLMs")
    with pytest.raises(InputError, match="already exists"), app.transaction() as s:
        add_topic(session=s, slug="llm", name="Other")


def test_import_creates_then_updates_idempotently(app: App, tmp_path: Path) -> None:
    _paper(app, "A robot for kitchens")
    path = tmp_path / "topics.toml"
    path.write_text(GOOD_TOML)
    with app.transaction() as s:
        first = import_topics(path, session=s)
    assert (first.created, first.updated, first.unchanged, first.matches) == (2, 0, 0, 1)
    with app.transaction() as s:
        again = import_topics(path, session=s)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    path.write_text(GOOD_TOML.replace('"robot", ', ""))
    with app.transaction() as s:
        changed = import_topics(path, session=s)
    assert (changed.updated, changed.unchanged, changed.matches) == (1, 1, 0)
    assert _count(app, PaperTopic) == 0  # the robotics match went with its keyword


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[topic]]\nslug = "ok"\nname = "Ok"\n[[topic]]\nslug = "Bad"\nname = "B"', "topic #2"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\ncategories = ["nope"]', "arXiv category"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\nkeywords = "a, b"', "list of strings"),
        ('[[topic]]\nslug = "ok"\nname = "Ok"\ncolour = "red"', "unknown field 'colour'"),
        ('[[topic]]\nslug = "ok"\nname = "A"\n[[topic]]\nslug = "ok"\nname = "B"', "twice"),
        ('[[topic]]\nname = "No slug"', "slug is required"),
        ("[[topic]\n", "not valid TOML"),
        ('title = "no topics"', "expected [[topic]]"),
    ],
)
def test_invalid_file_names_the_entry_and_writes_nothing(
    app: App, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "topics.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as err, app.transaction() as s:
        import_topics(path, session=s)
    assert str(path) in str(err.value)
    assert _count(app, Topic) == 0


def test_table_per_slug_format(app: App, tmp_path: Path) -> None:
    path = tmp_path / "topics.toml"
    path.write_text('[topics.llm]\nname = "LLMs"\nkeywords = ["LLM"]\n')
    with app.transaction() as s:
        assert import_topics(path, session=s).created == 1
        assert [t.slug for t in list_topics(session=s)] == ["llm"]


def test_list_counts_and_remove_cascades(app: App) -> None:
    pid = _paper(app, "Large Language Models as judges")
    with app.transaction() as s:
        topic = add_topic(session=s, slug="llm", name="LLMs", keywords="LLM, large language model")
        sub = Subscriber(email="a@example.test")
        s.add(sub)
        s.flush()
        s.add(Subscription(subscriber_id=sub.id, topic_id=topic.id))
    with app.transaction() as s:
        [info] = list_topics(session=s)
    assert (info.slug, info.subscribers, info.papers) == ("llm", 1, 1)
    with app.transaction() as s:
        assert remove_topic("llm", session=s) == 1
    assert _count(app, Topic) == _count(app, Subscription) == _count(app, PaperTopic) == 0
    assert _count(app, Subscriber) == 1 and pid
    with pytest.raises(NotFound), app.transaction() as s:
        remove_topic("llm", session=s)


def test_seed_topics_give_most_seed_papers_a_home(run) -> None:
    result = run("topics", "import", str(REPO / "seeds" / "topics.toml"))
    assert result.exit_code == 0, result.output
    imported = run("papers", "import", str(REPO / "seeds" / "hf-daily-papers-page.txt"))
    assert imported.exit_code == 0, imported.output
    listed = json.loads(run("topics", "list", "--json").output)
    assert 8 <= len(listed) <= 12
    assert all(t["papers"] > 0 for t in listed)


def test_cli_add_list_remove(run) -> None:
    added = run(
        "topics", "add", "rob", "--name", "Robotics", "--keywords", "robot, , manipulation",
        "--categories", "cs.ro",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = json.loads(run("topics", "list", "--json").output)
    assert listed[0]["keywords"] == ["robot", "manipulation"]
    assert listed[0]["categories"] == ["cs.RO"]
    refused = run("topics", "remove", "rob", input="n\n")
    assert refused.exit_code == 1
    assert len(json.loads(run("topics", "list", "--json").output)) == 1
    removed = run("topics", "remove", "rob", "--yes")
    assert removed.exit_code == 0 and "0 subscribers" in removed.output
    assert json.loads(run("topics", "list", "--json").output) == []


def test_cli_bad_input_exits_2_with_one_line(run) -> None:
    bad = run("topics", "add", "Bad_Slug", "--name", "X")
    assert bad.exit_code == 2
    assert "invalid topic slug 'Bad_Slug'" in bad.output
    missing = run("topics", "remove", "nope", "--yes")
    assert missing.exit_code == 2 and "unknown topic 'nope'" in missing.output
    bad_date = run("topics", "match", "--date", "2026-13-01")
    assert bad_date.exit_code == 2


def test_cli_match_rematches_by_date(run) -> None:
    run("topics", "add", "llm", "--name", "LLMs", "--keywords", "large language model")
    run(
        "papers", "import", str(REPO / "seeds" / "hf-daily-papers-page.txt"), "--date", "2026-11-27"
    )
    other_day = run("topics", "match", "--date", "2026-11-26")
    assert other_day.exit_code == 0 and "matched 0 papers" in other_day.output
    result = run("topics", "match", "--date", "2026-11-27")
    assert result.exit_code == 0
    assert "matched 50 papers against 1 topics" in result.output
