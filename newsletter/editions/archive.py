"""Queries for the public archive: editions and their papers per topic, no personal data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.models import Edition, EditionKind, Paper, PaperTopic, Topic

MAX_LISTED = 400
FEED_ENTRIES = 30
TOPIC_FEED_ENTRIES = 50


@dataclass(frozen=True)
class EditionSummary:
    """One edition as the archive lists it."""

    listing_date: date
    updated: datetime
    papers: int
    topics: tuple[str, ...]


@dataclass(frozen=True)
class TopicSection:
    """The papers of one topic in one edition: most upvoted first, then the closest match."""

    slug: str
    name: str
    description: str
    papers: tuple[Paper, ...]

    @property
    def upvoted(self) -> bool:
        """Whether the source counted upvotes for these papers (so they lead the order)."""
        return any(p.upvotes is not None for p in self.papers)


def list_editions(*, session: Session, limit: int = MAX_LISTED) -> list[EditionSummary]:
    """Return the newest daily editions with their numbers of matched papers and topics."""
    editions = session.execute(
        select(Edition.listing_date, Edition.created_at, Edition.planned_at)
        .where(Edition.kind == EditionKind.DAILY)
        .order_by(Edition.listing_date.desc())
        .limit(limit)
    ).all()
    if not editions:
        return []
    days = [e.listing_date for e in editions]
    counts = dict(
        session.execute(
            select(Paper.listing_date, func.count(func.distinct(Paper.id)))
            .join(PaperTopic, PaperTopic.paper_id == Paper.id)
            .where(Paper.listing_date.in_(days))
            .group_by(Paper.listing_date)
        ).all()
    )
    names: dict[date, set[str]] = {}
    rows = session.execute(
        select(Paper.listing_date, Topic.name)
        .join(PaperTopic, PaperTopic.paper_id == Paper.id)
        .join(Topic, Topic.id == PaperTopic.topic_id)
        .where(Paper.listing_date.in_(days))
        .distinct()
    )
    for day, name in rows:
        names.setdefault(day, set()).add(name)
    return [
        EditionSummary(
            listing_date=e.listing_date,
            updated=e.planned_at or e.created_at,
            papers=counts.get(e.listing_date, 0),
            topics=tuple(sorted(names.get(e.listing_date, ()))),
        )
        for e in editions
    ]


def edition_exists(day: date, *, session: Session) -> bool:
    """Return True when a daily edition was made for the listing date."""
    query = select(Edition.id).where(Edition.kind == EditionKind.DAILY, Edition.listing_date == day)
    return session.scalar(query) is not None


def edition_sections(day: date, *, session: Session) -> list[TopicSection]:
    """Return the edition's matched papers grouped by topic, topics by name."""
    rows = session.execute(
        select(Topic, Paper)
        .join(PaperTopic, PaperTopic.topic_id == Topic.id)
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date == day)
        .order_by(
            Topic.name,
            func.coalesce(Paper.upvotes, 0).desc(),
            PaperTopic.score.desc(),
            Paper.title,
        )
    ).all()
    grouped: dict[int, tuple[Topic, list[Paper]]] = {}
    for topic, paper in rows:
        grouped.setdefault(topic.id, (topic, []))[1].append(paper)
    return [
        TopicSection(t.slug, t.name, t.description or "", tuple(papers))
        for t, papers in grouped.values()
    ]


def neighbours(day: date, *, session: Session) -> tuple[date | None, date | None]:
    """Return the listing dates of the previous and next daily editions."""
    daily = Edition.kind == EditionKind.DAILY
    before = session.scalar(
        select(func.max(Edition.listing_date)).where(daily, Edition.listing_date < day)
    )
    after = session.scalar(
        select(func.min(Edition.listing_date)).where(daily, Edition.listing_date > day)
    )
    return before, after


@dataclass(frozen=True)
class TopicFeed:
    """A topic and its newest matched papers, for its Atom feed."""

    slug: str
    name: str
    description: str
    papers: tuple[Paper, ...]


def topic_feed(slug: str, *, session: Session, limit: int = TOPIC_FEED_ENTRIES) -> TopicFeed | None:
    """Return a topic's newest matched papers, newest listing first; None if no such topic."""
    topic = session.scalar(select(Topic).where(Topic.slug == slug))
    if topic is None:
        return None
    papers = session.scalars(
        select(Paper)
        .join(PaperTopic, PaperTopic.paper_id == Paper.id)
        .where(PaperTopic.topic_id == topic.id)
        .order_by(
            Paper.listing_date.desc(),
            func.coalesce(Paper.upvotes, 0).desc(),
            PaperTopic.score.desc(),
            Paper.id,
        )
        .limit(limit)
    ).all()
    return TopicFeed(topic.slug, topic.name, topic.description or "", tuple(papers))
