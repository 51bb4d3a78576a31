"""`topics check`, the warnings of `topics add` and the quiet topics of `status`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching import embeddings, feedback
from newsletter.matching.embeddings import load_encoder
from newsletter.matching.matches import match_papers
from newsletter.matching.topics import parse_topics_toml
from newsletter.papers.fetch import store_records
from newsletter.papers.sources import PaperRecord
from tests import factories as f

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds" / "hf-daily-papers-page.txt"


def _import_seeds(run, day: str = "2026-11-27") -> None:
    result = run("papers", "import", str(SEEDS), "--date", day)
    assert result.exit_code == 0, result.output


def _add(run, slug: str, keywords: str):
    result = run("topics", "add", slug, "--name", slug.title(), "--keywords", keywords)
    assert result.exit_code == 0, result.output
    return result


def test_check_json_counts_each_keyword_and_warns_about_weak_ones(run) -> None:
    _import_seeds(run)
    _add(run, "fm", "pre-training, zebrafish, distillation")
    result = run("topics", "check", "fm", "--json")
    assert result.exit_code == 0, result.output
    [check] = json.loads(result.stdout)
    assert (check["slug"], check["days"], check["papers"]) == ("fm", 30, 50)
    keywords = {k["keyword"]: k for k in check["keywords"]}
    assert keywords["pre-training"]["share"] >= 0.3
    assert "says little" in keywords["pre-training"]["warning"]
    assert keywords["zebrafish"]["papers"] == 0
    assert "none of the 50" in keywords["zebrafish"]["warning"]
    assert 0 < keywords["distillation"]["papers"] < 15
    assert keywords["distillation"]["warning"] is None
    assert 0 < check["matched"] < keywords["pre-training"]["papers"]
    assert check["share"] == round(check["matched"] / 50, 3)
    assert check["warnings"] == []


def test_check_warns_about_a_topic_that_matches_nothing(run) -> None:
    _import_seeds(run)
    _add(run, "fish", "zebrafish, coral reef")
    result = run("topics", "check")
    assert result.exit_code == 0, result.output
    assert "fish: 0 of 50 papers of the last 30 days (0%)" in result.output
    assert "its subscribers get nothing" in result.output


def test_check_days_limits_the_window(run) -> None:
    _import_seeds(run, "2026-10-01")
    recent = REPO / "tests" / "fixtures" / "hf_daily_papers_30.json"
    assert run("papers", "import", str(recent), "--date", "2026-11-27").exit_code == 0
    _add(run, "llm", "large language model")
    [wide] = json.loads(run("topics", "check", "llm", "--days", "90", "--json").stdout)
    [narrow] = json.loads(run("topics", "check", "llm", "--days", "7", "--json").stdout)
    assert wide["papers"] > narrow["papers"] > 0


def test_check_bad_input_exits_2_and_changes_nothing(run, app: App) -> None:
    _import_seeds(run)
    _add(run, "fm", "pre-training")
    with app.transaction() as s:
        before = s.scalar(select(func.count()).select_from(PaperTopic))
    for args in (("nope",), ("--days", "0"), ("--days", "x")):
        result = run("topics", "check", *args)
        assert result.exit_code == 2, result.output
    assert "unknown topic 'nope'" in run("topics", "check", "nope").output
    with app.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PaperTopic)) == before
        assert s.scalar(select(func.count()).select_from(Topic)) == 1


def test_add_prints_the_same_warnings(run) -> None:
    _import_seeds(run)
    result = _add(run, "fm", "pre-training, zebrafish")
    assert "added topic fm: it matches 0 papers of the last 30 days" in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3
    assert "'pre-training' is in" in warnings[0] and "'zebrafish'" in warnings[1]
    assert "matched none" in warnings[2]
    quiet = _add(run, "llm", "large language model")
    assert "warning" not in quiet.output


def test_status_flags_topics_that_matched_nothing_this_week(run) -> None:
    _import_seeds(run)
    _add(run, "fish", "zebrafish")
    _add(run, "llm", "large language model")
    result = run("status", "--json")
    assert result.exit_code == 0, result.output
    assert "warning: topic 'fish' matched no paper in the last 7 days" in result.stderr
    assert "'llm'" not in result.stderr
    assert json.loads(result.stdout)["quiet_topics"] == ["fish"]


def _papers_by_title(app: App) -> dict[str, int]:
    with app.sessions() as s:
        return {title: pid for pid, title in s.execute(select(Paper.id, Paper.title))}


def test_check_counts_readers_votes_per_keyword_and_flags_the_disliked_one(run, app) -> None:
    _import_seeds(run)
    _add(run, "em", "distillation, pruning, sparsity")
    papers = _papers_by_title(app)
    liked = [papers[t] for t in papers if "Knowledge Distillation" in t]
    disliked = [papers[t] for t in papers if t.startswith(("DSEE", "Dynamic Sparse No"))]
    elsewhere = papers[next(t for t in papers if t.startswith("Pervasive Label Errors"))]
    assert len(liked) == 2 and len(disliked) == 2
    with app.transaction() as s:
        em = s.scalar(select(Topic).where(Topic.slug == "em"))
        readers = [f.subscriber(s, f"r{n}@example.org", [em]).id for n in range(3)]
        outsider = f.subscriber(s, "outsider@example.org", []).id
        for reader in readers:
            for pid in liked:
                feedback.record_vote(reader, pid, feedback.MORE, session=s)
            for pid in disliked:
                feedback.record_vote(reader, pid, feedback.LESS, session=s)
            # A paper the topic did not place says nothing about the topic.
            feedback.record_vote(reader, elsewhere, feedback.LESS, session=s)
        # Nor does the vote of a reader who does not follow the topic.
        feedback.record_vote(outsider, liked[0], feedback.LESS, session=s)

    result = run("topics", "check", "em", "--json")
    assert result.exit_code == 0, result.output
    [check] = json.loads(result.stdout)
    assert (check["likes"], check["dislikes"]) == (6, 6)
    keywords = {k["keyword"]: k for k in check["keywords"]}
    assert (keywords["distillation"]["likes"], keywords["distillation"]["dislikes"]) == (6, 0)
    assert (keywords["sparsity"]["likes"], keywords["sparsity"]["dislikes"]) == (0, 6)
    assert (keywords["pruning"]["likes"], keywords["pruning"]["dislikes"]) == (0, 3)
    assert keywords["distillation"]["warning"] is None
    assert "'sparsity': 6 of the 6 votes" in keywords["sparsity"]["warning"]
    # Phrases count disliked papers, not votes: each of these is in one paper only.
    assert keywords["sparsity"]["phrases"] == []
    assert keywords["pruning"]["warning"] is None  # 3 votes: too few to judge
    assert any("topic 'em': 6 of the 12 votes" in w for w in check["warnings"])

    status = run("status", "--json")
    assert json.loads(status.stdout)["disliked_topics"] == [
        {"slug": "em", "likes": 6, "dislikes": 6}
    ]
    assert "warning: topic 'em': 6 of its readers' 12 votes" in status.stderr

    text = run("topics", "check", "em").output
    assert "em: 4 of 50 papers of the last 30 days (8%); readers voted 6 more, 6 less" in text
    assert "  sparsity: 6 papers (12%); readers voted 0 more, 6 less" in text
    assert "warning: keyword 'sparsity': 6 of the 6 votes of this topic's readers" in text


def test_check_without_votes_says_nothing_of_readers(run) -> None:
    _import_seeds(run)
    _add(run, "em", "distillation")
    [check] = json.loads(run("topics", "check", "em", "--json").stdout)
    assert (check["likes"], check["dislikes"], check["warnings"]) == (0, 0, [])
    assert "readers" not in run("topics", "check", "em").output
    assert json.loads(run("status", "--json").stdout)["disliked_topics"] == []


CORONA_PAPERS = [
    {
        "title": "Heating the corona by Alfven waves",
        "abstract": "We model how waves heat the solar corona above active regions.",
    },
    {
        "title": "The accretion disc corona of a Seyfert nucleus",
        "abstract": "X-ray spectra constrain the accretion disc corona around the black hole.",
    },
    {
        "title": "Flares and the corona",
        "abstract": "The corona brightens in flares; the accretion disc corona is unrelated.",
    },
]


def _import_corona_papers(run, tmp_path: Path) -> None:
    papers = [{**p, "listing_date": "2026-11-27"} for p in CORONA_PAPERS]
    path = tmp_path / "corona.json"
    path.write_text(json.dumps(papers), encoding="utf-8")
    result = run("papers", "import", str(path))
    assert result.exit_code == 0, result.output


def _matched_titles(run, slug: str) -> set[str]:
    rows = json.loads(run("papers", "list", "--topic", slug, "--json").stdout)
    return {r["title"] for r in rows}


def test_an_excluded_phrase_sets_aside_the_mentions_inside_it(run, tmp_path) -> None:
    _import_corona_papers(run, tmp_path)
    _add(run, "corona", "corona")
    result = run(
        "topics", "add", "sun", "--name", "The Sun", "--keywords", "corona",
        "--exclude", "accretion disc corona, disc corona",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(_matched_titles(run, "corona")) == 3
    # The Seyfert paper names the corona only inside the excluded phrase; the last paper
    # also names the Sun's corona on its own.
    assert _matched_titles(run, "sun") == {
        "Heating the corona by Alfven waves",
        "Flares and the corona",
    }
    listed = {t["slug"]: t for t in json.loads(run("topics", "list", "--json").stdout)}
    assert listed["sun"]["exclude"] == ["accretion disc corona", "disc corona"]
    assert listed["corona"]["exclude"] == []
    [check] = json.loads(run("topics", "check", "sun", "--json").stdout)
    assert check["exclude"] == [
        {"phrase": "accretion disc corona", "papers": 2},
        {"phrase": "disc corona", "papers": 2},
    ]
    assert "excluded 'accretion disc corona': in 2 papers" in run("topics", "check", "sun").output
    # Without the exclusion, check shows the admin where the keyword stands most often.
    [plain] = json.loads(run("topics", "check", "corona", "--json").stdout)
    assert plain["keywords"][0]["phrases"] == [["disc corona", 2]]
    [sun] = check["keywords"]
    assert sun["phrases"] == []  # what is excluded is not shown again


def test_a_topics_file_takes_excluded_phrases_and_an_edit_rematches(run, tmp_path) -> None:
    _import_corona_papers(run, tmp_path)
    path = tmp_path / "topics.toml"
    entry = '[[topic]]\nslug = "sun"\nname = "The Sun"\nkeywords = ["corona"]\n'
    path.write_text(entry, encoding="utf-8")
    assert run("topics", "import", str(path)).exit_code == 0
    assert len(_matched_titles(run, "sun")) == 3
    path.write_text(entry + 'exclude = ["accretion disc corona"]\n', encoding="utf-8")
    result = run("topics", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 1
    assert "The accretion disc corona of a Seyfert nucleus" not in _matched_titles(run, "sun")


def test_bad_excluded_phrases_are_one_line_and_change_nothing(run, app, tmp_path) -> None:
    result = run("topics", "add", "sun", "--name", "Sun", "--keywords", "corona", "--exclude", "--")
    assert result.exit_code == 2
    assert "invalid excluded phrase '--'" in result.stderr
    path = tmp_path / "topics.toml"
    path.write_text('[[topic]]\nslug = "sun"\nname = "Sun"\nexclude = "disc"\n', encoding="utf-8")
    result = run("topics", "import", str(path))
    assert result.exit_code == 2
    assert "exclude must be a list of strings" in result.stderr
    with app.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Topic)) == 0


def test_edit_changes_only_what_it_is_given_and_rematches(run, app, tmp_path) -> None:
    _import_corona_papers(run, tmp_path)
    _add(run, "sun", "corona")
    assert len(_matched_titles(run, "sun")) == 3
    result = run("topics", "edit", "sun", "--exclude", "accretion disc corona")
    assert result.exit_code == 0, result.output
    assert result.stdout == "updated topic sun: it matches 2 papers of the last 30 days\n"
    assert "The accretion disc corona of a Seyfert nucleus" not in _matched_titles(run, "sun")
    [listed] = json.loads(run("topics", "list", "--json").stdout)
    assert (listed["name"], listed["keywords"]) == ("Sun", ["corona"])  # kept
    assert listed["exclude"] == ["accretion disc corona"]
    again = run("topics", "edit", "sun", "--exclude", "accretion disc corona")
    assert again.stdout == "topic sun unchanged: it matches 2 papers of the last 30 days\n"
    cleared = run("topics", "edit", "sun", "--exclude", "")
    assert cleared.stdout == "updated topic sun: it matches 3 papers of the last 30 days\n"


def test_edit_refuses_bad_input_in_one_line_and_changes_nothing(run, app, tmp_path) -> None:
    _import_corona_papers(run, tmp_path)
    _add(run, "sun", "corona")
    with app.sessions() as s:
        before = s.scalar(select(func.count()).select_from(PaperTopic))
    for args, message in (
        (("nope", "--name", "X"), "unknown topic 'nope'"),
        (("sun", "--exclude", "--"), "invalid excluded phrase '--'"),
        (("sun", "--categories", "not a category"), "invalid category 'not a category'"),
        (("sun", "--name", "two\nlines"), "name must be one line"),
    ):
        result = run("topics", "edit", *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    [listed] = json.loads(run("topics", "list", "--json").stdout)
    assert (listed["name"], listed["keywords"], listed["exclude"]) == ("Sun", ["corona"], [])
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PaperTopic)) == before


# -- which signal placed each match, and the papers to teach a topic with -----------------------

FIELDS = REPO / "tests" / "labelled" / "fields"
DAY = date(2026, 11, 27)
SPANNING_TREES = "Weighted spanning trees on some self-similar graphs"


def _field_records(count: int = 120) -> list[PaperRecord]:
    papers = json.loads((FIELDS / "papers.json").read_text(encoding="utf-8"))[:count]
    return [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test",
                    arxiv_id=p["key"], categories=p["categories"])
        for p in papers
    ]  # fmt: skip


def _field_topic(slug: str) -> Topic:
    topics = parse_topics_toml((FIELDS / "topics.toml").read_text(encoding="utf-8"))
    (spec,) = [t for t in topics if t.slug == slug]
    return Topic(slug=spec.slug, name=spec.name, description=spec.description,
                 keywords=list(spec.keywords))  # fmt: skip


@pytest.fixture
def meaning_app(settings: Settings, run) -> Iterator[App]:
    """Real papers of several fields, stored with the sentence model, and a topic in words."""
    application = App(dataclasses.replace(settings, match_neighbours=True))
    application.ensure_schema()
    with application.transaction() as s:
        s.add(_field_topic("combinatorics"))
    store_records(application, _field_records(), DAY)
    run.env["NEWSLETTER_MATCH_NEIGHBOURS"] = "true"
    yield application
    application.close()


def _stored(app: App, slug: str) -> dict[str, tuple[float, list[str]]]:
    with app.reading() as s:
        rows = s.execute(
            select(Paper.arxiv_id, PaperTopic.score, PaperTopic.evidence)
            .join(PaperTopic).join(Topic).where(Topic.slug == slug)
        ).all()  # fmt: skip
    return {arxiv_id: (score, evidence) for arxiv_id, score, evidence in rows}


def _check(run, slug: str) -> tuple[dict, str]:
    result = run("topics", "check", slug, "--json")
    assert result.exit_code == 0, result.output
    [check] = json.loads(result.stdout)
    return check, run("topics", "check", slug).output


def test_check_counts_the_stored_matches_by_the_signal_that_placed_them(meaning_app, run):
    stored = _stored(meaning_app, "combinatorics")
    check, text = _check(run, "combinatorics")
    placed = check["placed_by"]
    assert list(placed) == ["keywords", "category", "meaning", "neighbours"]
    # One definition of matched: the stored rows, as `topics list` counts them.
    [listed] = json.loads(run("topics", "list", "--json").stdout)
    assert check["matched"] == sum(placed.values()) == len(stored) == listed["papers"]
    assert placed["keywords"] == sum(1 for score, _ in stored.values() if score >= 1.0)
    # The paper on spanning trees names none of the topic's keywords: meaning placed it.
    score, evidence = stored["1007.0021"]
    assert score < 1.0 and evidence[0].startswith("meaning: ")
    assert placed["meaning"] >= 1 and placed["category"] == 0
    shown = ", ".join(f"{signal} {n}" for signal, n in placed.items())
    assert f"  placed by {shown}\n" in text
    # The ones it takes by the weakest margin: taken, the least likely first.
    weakest = check["suggestions"]["weakest"]
    assert 0 < len(weakest) <= 5
    assert {s["arxiv_id"] for s in weakest} <= set(stored)
    assert [s["chance"] for s in weakest] == sorted(s["chance"] for s in weakest)
    assert "the papers it takes by the weakest margin: newsletter topics edit combinatorics " \
        "--not-examples ID,..." in text  # fmt: skip
    assert f"    {weakest[0]['arxiv_id']}  standing " in text


def test_check_suggests_the_closest_papers_a_topic_does_not_take(meaning_app, run) -> None:
    # Matched by its words alone, the topic leaves out the paper closest to it in meaning.
    with meaning_app.transaction() as s:
        match_papers(session=s, neighbours=False)
    stored = _stored(meaning_app, "combinatorics")
    assert "1007.0021" not in stored
    check, text = _check(run, "combinatorics")
    assert check["placed_by"] == {"keywords": len(stored), "category": 0, "meaning": 0,
                                  "neighbours": 0}  # fmt: skip
    closest = check["suggestions"]["not_taken"]
    assert len(closest) == 5 and not {s["arxiv_id"] for s in closest} & set(stored)
    assert closest[0]["arxiv_id"] == "1007.0021" and closest[0]["title"] == SPANNING_TREES
    assert closest[0]["standing"] >= 2.0
    standings = [s["standing"] for s in closest]
    assert standings == sorted(standings, reverse=True)
    assert check["suggestions_note"] is None
    hint = "suggested examples, the closest papers it does not take: newsletter topics edit " \
        "combinatorics --examples ID,..."  # fmt: skip
    assert hint in text
    assert f"    1007.0021  standing {closest[0]['standing']:.1f}  {SPANNING_TREES}" in text
    # Taken as an example, it is no longer suggested, and the hint keeps it in the list.
    assert run("topics", "edit", "combinatorics", "--examples", "1007.0021").exit_code == 0
    check, text = _check(run, "combinatorics")
    suggested = check["suggestions"]["not_taken"] + check["suggestions"]["weakest"]
    assert "1007.0021" not in {s["arxiv_id"] for s in suggested}
    assert "newsletter topics edit combinatorics --examples 1007.0021,ID,..." in text


def _store_sun_papers(app: App) -> None:
    records = [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test", categories=[c])
        for p, c in zip(CORONA_PAPERS, ["astro-ph.SR", "astro-ph.SR", "astro-ph.HE"], strict=True)
    ]
    store_records(app, records, DAY)


def test_a_whole_category_topic_counts_its_members_and_is_not_called_broad(run, app) -> None:
    _store_sun_papers(app)
    result = run("topics", "add", "sun", "--name", "The Sun", "--keywords", "corona",
                 "--categories", "astro-ph.SR", "--whole-categories")  # fmt: skip
    assert result.exit_code == 0 and "filters little" not in result.output, result.output
    _add(run, "corona", "corona")
    sun, text = _check(run, "sun")
    assert sun["matched"] == 3 and sun["warnings"] == []
    assert sun["placed_by"] == {"keywords": 1, "category": 2, "meaning": 0, "neighbours": 0}
    assert "  placed by keywords 1, category 2, meaning 0, neighbours 0" in text
    assert "filters little" not in text
    corona, _ = _check(run, "corona")  # the same papers by keywords: a filter that takes all
    assert corona["placed_by"]["keywords"] == 3
    assert any("it filters little" in w for w in corona["warnings"])


def test_without_meaning_check_says_once_that_it_has_no_suggestions(run, app) -> None:
    _store_sun_papers(app)
    _add(run, "sun", "corona")
    _add(run, "flares", "flares")
    result = run("topics", "check")
    line = "no suggestions: matching by keywords alone: match_neighbours is false"
    assert result.output.count("no suggestions") == 1
    assert result.output.endswith(line + "\n")
    checks = json.loads(run("topics", "check", "--json").stdout)
    assert [(c["suggestions"], c["suggestions_note"]) for c in checks] == [(None, line)] * 2


def test_without_the_model_check_says_it_matches_by_keywords_alone(
    run, app, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store_sun_papers(app)
    _add(run, "sun", "corona")
    run.env["NEWSLETTER_MATCH_NEIGHBOURS"] = "true"
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "a_model_package_that_is_not_installed")
    load_encoder.cache_clear()
    try:
        check, text = _check(run, "sun")
    finally:
        load_encoder.cache_clear()
    assert check["suggestions"] is None
    assert check["suggestions_note"].startswith("no suggestions: matching by keywords alone: ")
    assert text.splitlines()[-1] == check["suggestions_note"]
    assert check["placed_by"]["keywords"] == check["matched"] == 3
