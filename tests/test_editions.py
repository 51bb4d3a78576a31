from datetime import date

import pytest
from sqlalchemy import func, select

from newsletter.core.errors import NotFound
from newsletter.core.models import Delivery, DeliveryStatus, SubscriberStatus, Suppression
from newsletter.editions.planning import (
    NO_MATCH_REASON,
    count_by_status,
    get_or_create_edition,
    plan_edition,
    resolve_listing_date,
)
from tests import factories as f


@pytest.fixture
def world(app):
    with app.transaction() as s:
        llm, rl, bio = f.topic(s, "llm"), f.topic(s, "rl"), f.topic(s, "bio")
        f.paper(s, "A language model", topics={llm: 2.0})
        f.paper(s, "A policy gradient", topics={rl: 1.5})
        f.paper(s, "Old paper", day=date(2026, 11, 20), topics={bio: 3.0})
        f.subscriber(s, "a@example.org", [llm])
        f.subscriber(s, "b@example.org", [llm, rl])
        f.subscriber(s, "c@example.org", [bio])  # nothing today
        f.subscriber(s, "p@example.org", [llm], status=SubscriberStatus.PENDING)
        f.subscriber(s, "u@example.org", [llm], status=SubscriberStatus.UNSUBSCRIBED)
        f.subscriber(s, "x@example.org", [llm])
        s.add(Suppression(email="x@example.org", reason="hard bounce"))
    return app


def _plan(app, policy="skip"):
    with app.transaction() as s:
        edition = get_or_create_edition(f.DAY, session=s)
        return plan_edition(edition, session=s, empty_policy=policy)


def test_plans_confirmed_unsuppressed_and_skips_those_without_matches(world):
    stats = _plan(world)
    assert (stats.planned, stats.pending, stats.skipped) == (3, 2, 1)
    with world.sessions() as s:
        rows = {d.subscriber.email: d for d in s.scalars(select(Delivery))}
    assert set(rows) == {"a@example.org", "b@example.org", "c@example.org"}
    assert rows["c@example.org"].status == DeliveryStatus.SKIPPED
    assert rows["c@example.org"].skip_reason == NO_MATCH_REASON
    assert rows["a@example.org"].status == DeliveryStatus.PENDING
    assert rows["a@example.org"].attempts == 0


def test_planning_twice_adds_nothing_and_picks_up_new_subscribers(world):
    _plan(world)
    again = _plan(world)
    assert again.planned == 0 and again.pending == 2
    with world.transaction() as s:
        f.subscriber(s, "late@example.org", [f.topic(s, "late")])
        llm_id = s.scalar(select(func.min(Delivery.id)))  # any: proves rows untouched below
    third = _plan(world)
    assert third.planned == 1 and third.skipped == 2
    with world.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 4
        assert s.get(Delivery, llm_id).status == DeliveryStatus.PENDING


def test_note_policy_plans_everyone_as_pending(world):
    stats = _plan(world, policy="note")
    assert (stats.pending, stats.skipped) == (3, 0)


def test_count_by_status_has_every_status(world):
    stats = _plan(world)
    with world.sessions() as s:
        counts = count_by_status(stats.edition_id, session=s)
    assert set(counts) == set(DeliveryStatus)
    assert counts[DeliveryStatus.SENT] == 0


def test_resolve_listing_date_defaults_to_newest_and_fails_on_empty(app, world):
    with world.sessions() as s:
        assert resolve_listing_date(None, session=s) == f.DAY


def test_resolve_listing_date_without_papers(app):
    with app.sessions() as s, pytest.raises(NotFound, match="no papers"):
        resolve_listing_date(None, session=s)


def test_suppressions_match_whatever_the_case(app):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.subscriber(s, "jane@example.org", [t])
        s.add(Suppression(email="Jane@Example.org", reason="complaint"))
    assert _plan(app).planned == 0


def test_paused_subscribers_and_the_only_filter(app):
    from newsletter.core.models import Subscriber

    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.subscriber(s, "a@example.org", [t]).paused = True
        f.subscriber(s, "b@example.org", [t]).timezone = "Asia/Tokyo"
        f.subscriber(s, "c@example.org", [t])
    with app.transaction() as s:
        edition = get_or_create_edition(f.DAY, session=s)
        stats = plan_edition(edition, session=s, only=Subscriber.timezone == "Asia/Tokyo")
    assert stats.planned == 1
    with app.transaction() as s:
        assert plan_edition(get_or_create_edition(f.DAY, session=s), session=s).planned == 1
