"""The paper services `papers list`, `show` and `sources` print and a page could show."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from newsletter.core.errors import NotFound
from newsletter.matching.feedback import LESS, MORE, record_vote
from newsletter.papers import service
from tests import factories as f


@pytest.fixture
def listed(app):
    """Three papers today (two of `llm`), one yesterday; two readers' votes on the first."""
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        first = f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.paper(s, "Instruction tuning revisited", topics={llm: 1.2}, upvotes=10)
        f.paper(s, "A kagome metal", upvotes=25)
        f.paper(s, "Yesterday's model", day=f.DAY - timedelta(days=1))
        for email, vote in (("ada@example.org", MORE), ("alan@example.org", LESS)):
            reader = f.subscriber(s, email, [llm])
            record_vote(reader.id, first.id, vote, session=s)
    return app


def test_the_listing_of_the_newest_day_comes_most_upvoted_first_with_readers_votes(listed, run):
    found = service.listing(listed)

    assert found.listing_date == f.DAY and found.upvoted
    titles = [row["title"] for row in found.papers]
    assert titles == ["Scaling laws for tiny models", "A kagome metal",
                      "Instruction tuning revisited"]  # fmt: skip
    assert (found.papers[0]["likes"], found.papers[0]["dislikes"]) == (1, 1)
    assert (found.papers[1]["likes"], found.papers[1]["dislikes"]) == (0, 0)
    printed = json.loads(run("papers", "list", "--json").stdout)
    assert printed == json.loads(json.dumps(found.papers, default=str))


def test_the_listing_of_a_topic_a_limit_and_another_day(listed):
    llm = service.listing(listed, f.DAY, topic_slug="llm", limit=1)
    assert [row["title"] for row in llm.papers] == ["Scaling laws for tiny models"]
    assert [t["slug"] for t in llm.papers[0]["topics"]] == ["llm"]
    yesterday = service.listing(listed, f.DAY - timedelta(days=1))
    assert [row["title"] for row in yesterday.papers] == ["Yesterday's model"]
    assert not yesterday.upvoted
    assert service.listing(listed, f.DAY + timedelta(days=1)).papers == []


def test_an_empty_store_has_no_newest_listing(app):
    assert service.listing(app) == service.Listing(None, [])


def test_one_paper_by_its_id_and_an_unknown_one(listed):
    first = service.listing(listed).papers[0]

    shown = service.paper(listed, str(first["id"]))

    assert shown["title"] == "Scaling laws for tiny models"
    assert [(t["slug"], t["score"], t["evidence"]) for t in shown["topics"]] == [
        ("llm", 2.0, ["test"])
    ]
    with pytest.raises(NotFound, match="no paper with id or arXiv id '9999.99999'"):
        service.paper(listed, "9999.99999")


def test_the_sources_say_each_was_never_fetched(app):
    rows = service.sources(app)

    assert rows and {row["last_fetch"] for row in rows} == {None}
    assert "hf" in {row["name"] for row in rows}
