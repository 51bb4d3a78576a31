"""The topic services `topics` prints and an admin page could show: a topic's fit when added
or edited, checks, the list, removal and matching again, each in its own session; and readers'
votes as `feedback list` prints them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import Paper, Topic, utcnow
from newsletter.matching import service
from newsletter.matching.feedback import LESS, MORE, record_vote
from newsletter.matching.matched import MATCH_DAYS
from tests import factories as f
from tests.factories import dump_database

TITLES = ["Scaling laws for language models", "Language models that plan", "A kagome metal"]


@pytest.fixture
def papers(app):
    """Three papers today, one yesterday; one reader of a topic `llm` added later."""
    with app.transaction() as s:
        for title in TITLES:
            f.paper(s, title)
        f.paper(s, "Yesterday's language models", day=f.DAY - timedelta(days=1))
    return app


def _add_llm(app) -> service.TopicFit:
    return service.add_topic(app, "llm", "Language models", keywords="language models")


def test_adding_a_topic_matches_it_and_says_how_it_fits(papers, run):
    fit = _add_llm(papers)

    assert (fit.slug, fit.changed, fit.matched, fit.days) == ("llm", True, 3, MATCH_DAYS)
    [info] = service.list_topics(papers)
    assert (info.slug, info.papers, info.subscribers) == ("llm", 3, 0)
    assert "llm  0 subscribers  3 papers  Language models" in run("topics", "list").stdout


def test_a_topic_that_matches_nothing_comes_with_its_warnings(papers):
    fit = service.add_topic(papers, "sun", "The Sun", keywords="heliosphere")

    assert fit.matched == 0 and fit.warnings
    assert any("matched none of the 4 papers of the last 30 days" in w for w in fit.warnings)


def test_adding_a_slug_again_is_refused_and_changes_nothing(papers):
    _add_llm(papers)
    before = dump_database(papers.engine)

    with pytest.raises(InputError, match="already exists"):
        _add_llm(papers)

    assert dump_database(papers.engine) == before


def test_an_edit_that_changes_nothing_matches_nothing_again(papers):
    _add_llm(papers)
    before = dump_database(papers.engine)

    same = service.edit_topic(papers, "llm", keywords="language models")

    assert (same.changed, same.matched, same.warnings) == (False, 3, [])
    assert dump_database(papers.engine) == before
    narrower = service.edit_topic(papers, "llm", name="Scaling", keywords="scaling laws")
    assert (narrower.changed, narrower.matched) == (True, 1)


def test_checks_name_the_topic_and_refuse_an_unknown_one(papers):
    _add_llm(papers)

    [check] = service.check(papers, "llm", days=7, papers=True)

    assert check.slug == "llm" and check.matched == 3
    assert sorted(p.title for p in check.matched_papers or []) == sorted(TITLES[:2] + [
        "Yesterday's language models"
    ])  # fmt: skip
    with pytest.raises(NotFound, match="unknown topic 'nope'"):
        service.check(papers, "nope")
    unmatched = service.unmatched(papers, days=7)
    assert (unmatched.papers, [p.title for p in unmatched.unmatched]) == (4, ["A kagome metal"])


def test_removing_a_topic_counts_the_readers_who_lose_it(papers):
    _add_llm(papers)
    with papers.transaction() as s:
        llm = s.scalar(select(Topic).where(Topic.slug == "llm"))
        f.subscriber(s, "ada@example.org", [llm])

    assert service.count_subscribers(papers, "llm") == 1
    assert service.remove_topic(papers, "llm") == 1
    assert service.list_topics(papers) == []
    with pytest.raises(NotFound):
        service.count_subscribers(papers, "llm")


def test_matching_again_reports_its_progress_over_the_papers_it_scores(papers):
    _add_llm(papers)
    reports: list[tuple[int, int]] = []

    today = service.match_again(papers, f.DAY, progress=lambda *r: reports.append(r))

    assert (today.papers, today.topics, today.matches, today.removed) == (3, 1, 2, 2)
    assert reports[0] == (0, 3) and reports[-1] == (3, 3)
    every = service.match_again(papers)
    assert (every.papers, every.matches, every.removed) == (4, 3, 3)
    assert service.match_again(papers, f.DAY + timedelta(days=1)).papers == 0


def test_readers_votes_newest_first_and_one_readers_as_feedback_list_prints_them(papers, run):
    with papers.transaction() as s:
        ada = f.subscriber(s, "ada@example.org", [])
        bo = f.subscriber(s, "bo@example.org", [])
        first, second = s.scalars(select(Paper).order_by(Paper.id).limit(2))
        now = utcnow()
        record_vote(ada.id, first.id, MORE, session=s, now=now - timedelta(hours=2))
        record_vote(bo.id, second.id, LESS, session=s, now=now - timedelta(hours=1))

    votes = service.votes(papers)

    assert [(v["email"], v["vote"], v["paper"]) for v in votes] == [
        ("bo@example.org", "less", TITLES[1]), ("ada@example.org", "more", TITLES[0]),
    ]  # fmt: skip
    assert [v["email"] for v in service.votes(papers, email="ada@example.org")] == [
        "ada@example.org"
    ]
    assert json.loads(run("feedback", "list", "--json").stdout) == votes
