"""Keyword specificity from the recent papers: common keywords weigh less, in any field."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from newsletter.core.app import App
from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching.matches import match_papers
from newsletter.matching.scoring import PaperText, TopicIndex, TopicMatcher
from newsletter.matching.specificity import (
    COMMON_FACTOR,
    DocumentFrequencies,
    factor_for_share,
)

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO / "seeds" / "hf-daily-papers-page.txt"
DAY = date(2026, 11, 27)

# A small education-research listing: "learning" is rare in it, so it names a subject.
EDUCATION = [
    f"{subject} in {place}"
    for subject in (
        "Teacher retention",
        "School funding formulas",
        "Classroom seating plans",
        "Parental involvement",
        "Homework policy",
        "Curriculum reform",
        "Student attendance",
        "Principal leadership",
        "Class size",
        "Grading practices",
    )
    for place in ("rural districts", "city schools", "secondary schools", "primary schools")
]
# The same number of machine-learning papers: "learning" is in nearly every one.
MACHINE_LEARNING = [
    f"{method} learning for {task}"
    for method in ("Deep", "Contrastive", "Federated", "Meta", "Active", "Online", "Curriculum")
    for task in ("tabular data", "graphs", "time series", "text", "images", "tables")
]
LEARNING_PAPER = PaperText(
    "Learning in rural classrooms",
    "We study how pupils in small rural schools progress. Teachers were interviewed.",
)


def _learning_score(listing: list[str]) -> float:
    topic = TopicMatcher.compile("learning", ["learning", "pedagogy"])
    papers = [LEARNING_PAPER, *(PaperText(title) for title in listing)]
    found = TopicIndex([topic]).score_listing(papers, threshold=0.0)[0]
    return found[0][1] if found else 0.0


def test_learning_is_a_strong_keyword_in_an_education_listing_only() -> None:
    assert _learning_score(EDUCATION) >= 1.0
    assert _learning_score(MACHINE_LEARNING) < 1.0


def test_word_lists_decide_only_while_few_papers_are_known() -> None:
    empty = DocumentFrequencies()
    assert empty.factor("learn", generic=True) == COMMON_FACTOR
    assert empty.factor("diffus model", generic=False) == 1.0
    rare = DocumentFrequencies(papers=1000, counts={"learn": 10})
    assert rare.factor("learn", generic=True) > 0.95
    common = DocumentFrequencies(papers=1000, counts={"diffus model": 700})
    assert common.factor("diffus model", generic=False) == COMMON_FACTOR
    assert factor_for_share(0.1) > factor_for_share(0.3) > factor_for_share(0.5)


def _import_seeds(run) -> None:
    result = run("papers", "import", str(SEEDS), "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output


def _matched(run, slug: str) -> list[dict]:
    listed = run("papers", "list", "--date", DAY.isoformat(), "--topic", slug, "--json")
    assert listed.exit_code == 0, listed.output
    return json.loads(listed.output)


def test_a_machine_learning_topic_matches_the_seed_papers_about_it(run) -> None:
    _import_seeds(run)
    added = run(
        "topics", "add", "ml", "--name", "Machine learning", "--keywords", "machine learning"
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    papers = _matched(run, "ml")
    assert 3 <= len(papers) <= 25
    for paper in papers:
        opening = " ".join(re.split(r"(?<=\.)\s", paper["abstract"])[:2])
        assert re.search(r"machine[- ]learning", paper["title"] + " " + opening, re.I), paper


def test_a_broad_keyword_beside_specific_ones_no_longer_takes_the_listing(run) -> None:
    _import_seeds(run)
    all_papers = _matched_all(run)
    mention = [p for p in all_papers if re.search(r"pre-?train", _text(p), re.I)]
    assert len(mention) >= len(all_papers) / 3  # the premise: a third of the listing says it
    added = run(
        "topics", "add", "fm", "--name", "Foundation models",
        "--keywords", "pre-training, foundation model",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert len(_matched(run, "fm")) <= len(all_papers) / 10


def _matched_all(run) -> list[dict]:
    listed = run("papers", "list", "--date", DAY.isoformat(), "--json")
    return json.loads(listed.output)


def _text(paper: dict) -> str:
    return paper["title"] + " " + paper["abstract"]


def _store(session, title: str, day: date) -> Paper:
    paper = Paper(title=title, title_key=title.lower(), listing_date=day, source="test")
    session.add(paper)
    return paper


def _learning_matches(app: App) -> set[int]:
    with app.transaction() as s:
        match_papers(session=s)
    with app.transaction() as s:
        return set(s.scalars(select(PaperTopic.paper_id)))


def test_frequencies_come_from_the_recent_window_and_follow_new_papers(app: App) -> None:
    with app.transaction() as s:
        for n, title in enumerate(MACHINE_LEARNING * 3):  # long ago, "learning" was everywhere
            _store(s, f"{title} {n}", DAY - timedelta(days=90))
        for title in EDUCATION:
            _store(s, title, DAY)
        paper = _store(s, LEARNING_PAPER.title, DAY)
        s.add(Topic(slug="learning", name="Learning", keywords=["learning", "pedagogy"]))
    assert paper.id in _learning_matches(app)
    with app.transaction() as s:  # the listing turns to machine learning
        for n, title in enumerate(MACHINE_LEARNING * 3):
            _store(s, f"{title} {n} again", DAY + timedelta(days=1))
    assert paper.id not in _learning_matches(app)
