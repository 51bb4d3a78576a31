"""The audience services `subscribers` and `suppressions` print and an admin page could show:
each opens its own session and gives subscribers back as data."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from newsletter.audience import service as audience
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import Paper, Subscriber, utcnow
from newsletter.matching.seeds import Seed
from newsletter.papers import service as papers
from tests import factories as f
from tests.conftest import FIXTURES
from tests.factories import dump_database

ADA = "ada@example.org"


@pytest.fixture
def topics(app):
    with app.transaction() as s:
        f.topic(s, "llm")
        f.topic(s, "rl")
    # No look-up may leave the machine: a closed local port stands for arXiv's API.
    app.settings = dataclasses.replace(
        app.settings, arxiv_api_url="http://127.0.0.1:9", http_retries=1,
        http_backoff=0.01, arxiv_request_interval=0,
    )  # fmt: skip
    return app


def test_adding_a_subscriber_gives_them_back_as_show_prints_them(topics, run):
    added = audience.add_subscriber(
        topics, ADA, name="Ada", topics="llm,rl", confirmed=True, timezone="Europe/London",
        hour=7, frequency="weekly", weekly_day="fri", seeds=[Seed(title="My own paper")],
    )  # fmt: skip

    data = added.subscriber
    assert (data["email"], data["status"], data["topics"]) == (ADA, "confirmed", ["llm", "rl"])
    assert (data["frequency"], data["weekly_day"], data["hour"]) == ("weekly", 4, 7)
    assert [s["title"] for s in data["seed_papers"]] == ["My own paper"]
    assert added.invitations.queued == [] and added.invitations.invited == []
    shown = json.loads(run("subscribers", "show", ADA, "--json").stdout)
    assert shown == json.loads(json.dumps(audience.subscriber(topics, ADA, consent=True),
                                          default=lambda d: d.isoformat()))  # fmt: skip


def test_a_pending_subscriber_asked_to_confirm_has_an_email_queued(topics):
    added = audience.add_subscriber(topics, ADA, topics="llm", send_confirmation=True)

    assert added.subscriber["status"] == "pending"
    assert added.invitations.invited == [ADA] and len(added.invitations.queued) == 1


def test_a_bad_subscriber_is_refused_and_nothing_is_written(topics):
    audience.add_subscriber(topics, ADA, topics="llm")
    before = dump_database(topics.engine)

    with pytest.raises(InputError, match="unknown topic"):
        audience.add_subscriber(topics, "bo@example.org", topics="nope")
    with pytest.raises(InputError):
        audience.add_subscriber(topics, ADA, topics="llm")

    assert dump_database(topics.engine) == before


def test_an_edit_keeps_what_is_not_given_and_seeds_are_kept_replaced_or_forgotten(topics):
    audience.add_subscriber(topics, ADA, topics="llm", seeds=[Seed(title="First")])

    kept = audience.edit_subscriber(topics, ADA, muted_words="survey", hour=9)
    assert kept["muted_words"] == ["survey"] and kept["hour"] == 9
    assert kept["topics"] == ["llm"] and [s["title"] for s in kept["seed_papers"]] == ["First"]
    replaced = audience.edit_subscriber(topics, ADA, seeds=[Seed(title="Second")])
    assert [s["title"] for s in replaced["seed_papers"]] == ["Second"]
    assert audience.edit_subscriber(topics, ADA, seeds=[])["seed_papers"] == []


def test_the_list_filters_by_status_and_topic_as_the_cli_prints_it(topics, run):
    audience.add_subscriber(topics, ADA, topics="llm", confirmed=True)
    audience.add_subscriber(topics, "bo@example.org", topics="rl")

    everyone = audience.list_subscribers(topics)
    assert [s["email"] for s in everyone] == [ADA, "bo@example.org"]
    assert [s["email"] for s in audience.list_subscribers(topics, status="pending")] == [
        "bo@example.org"
    ]
    assert [s["email"] for s in audience.list_subscribers(topics, topic="llm")] == [ADA]
    printed = json.loads(run("subscribers", "list", "--json").stdout)
    assert [s["email"] for s in printed] == [s["email"] for s in everyone]


def test_an_import_reports_each_row_and_asks_the_pending_to_confirm(topics):
    csv = "email,name,topics\nada@example.org,Ada,llm\nbo@example.org,Bo,nope\n"

    imported = audience.import_subscribers(
        topics, io.BytesIO(csv.encode()), status="pending", send_confirmation=True
    )

    report = imported.report
    assert (report.new, report.skipped) == (1, 1) and "nope" in report.errors[0][1]
    assert imported.invitations.invited == [ADA]


def test_an_export_and_an_import_of_the_backup_elsewhere(topics, tmp_path):
    audience.add_subscriber(topics, ADA, name="Ada", topics="llm", confirmed=True)
    out = io.StringIO()

    assert audience.export_subscribers(topics, out, fmt="json") == 1

    audience.remove_subscriber(topics, ADA)
    restored = audience.import_subscribers(topics, io.BytesIO(out.getvalue().encode()),
                                           fmt="json")  # fmt: skip
    assert restored.report.new == 1
    assert audience.subscriber(topics, ADA)["name"] == "Ada"
    csv = io.StringIO()
    assert audience.export_subscribers(topics, csv) == 1
    assert csv.getvalue().splitlines()[1].startswith("ada@example.org,Ada,llm,")


def test_removing_a_subscriber_returns_their_address_and_then_none_is_found(topics):
    audience.add_subscriber(topics, "Ada@Example.org", topics="llm")

    assert audience.remove_subscriber(topics, "ada@example.org") == "Ada@example.org"
    with pytest.raises(NotFound):
        audience.subscriber(topics, ADA)


def test_inviting_the_named_is_all_or_none_and_without_names_every_pending_one(topics):
    audience.add_subscriber(topics, ADA, topics="llm")
    audience.add_subscriber(topics, "bo@example.org", topics="llm")
    before = dump_database(topics.engine)

    with pytest.raises(InputError, match="no subscriber 'cy@example.org'"):
        audience.invite(topics, [ADA, "cy@example.org"])

    assert dump_database(topics.engine) == before
    asked = audience.invite(topics)
    assert sorted(asked.invited) == [ADA, "bo@example.org"] and len(asked.queued) == 2


def test_purging_takes_the_days_from_the_settings_unless_given(topics):
    audience.add_subscriber(topics, ADA, topics="llm")
    audience.add_subscriber(topics, "bo@example.org", topics="llm")
    with topics.transaction() as s:
        s.execute(update(Subscriber).where(Subscriber.email == ADA)
                  .values(created_at=utcnow() - timedelta(days=8)))  # fmt: skip

    assert audience.purge_pending(topics, 30) == (0, 30)
    assert audience.purge_pending(topics) == (1, topics.settings.pending_max_age_days)
    assert [s["email"] for s in audience.list_subscribers(topics)] == ["bo@example.org"]


def test_suppressing_listing_and_lifting_an_address(topics):
    first = audience.suppress(topics, ADA, "asked by phone")
    again = audience.suppress(topics, ADA)

    assert (first["email"], first["reason"], first["created"]) == (ADA, "asked by phone", True)
    assert (again["reason"], again["created"]) == ("asked by phone", False)
    assert [r["email"] for r in audience.list_suppressions(topics, reason="asked")] == [ADA]
    assert audience.list_suppressions(topics, reason="complaint") == []
    assert audience.unsuppress(topics, ADA)["reason"] == "asked by phone"
    with pytest.raises(NotFound):
        audience.unsuppress(topics, ADA)


def test_own_papers_from_stored_identifiers_and_from_a_library_file(topics):
    with topics.transaction() as s:
        stored = f.paper(s, "A stored paper")
        s.get(Paper, stored.id).arxiv_id = "2507.01234"

    [seed] = papers.seeds_from_refs(topics, "2507.01234v2").seeds
    assert (seed.title, seed.arxiv_id) == ("A stored paper", "2507.01234")
    library = (FIXTURES / "libraries" / "zotero_microbiome.ris").read_bytes()
    choice = papers.seeds_from_library(topics, library, "microbiome.ris")
    assert len(choice.seeds) == 5 and all(s.title for s in choice.seeds)
    assert choice.seeds[0].doi == "10.1371/journal.pcbi.1003531"
    with pytest.raises(InputError, match="10.1000/none"):
        papers.seeds_from_refs(topics, "10.1000/none")  # a DOI the store lacks: not looked up
