"""Editions and planning them into one delivery row per confirmed subscriber."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    case,
    func,
    literal,
    or_,
    select,
    true,
    union,
    union_all,
)
from sqlalchemy.orm import Session

from newsletter.audience.eligibility import receives_digests
from newsletter.core import deliveries
from newsletter.core.config import default
from newsletter.core.errors import NoListing, NotFound
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionKind,
    FeedbackVote,
    Paper,
    PaperTopic,
    ReaderSeed,
    Subscriber,
    Subscription,
    utcnow,
)
from newsletter.matching.profiles import PROFILE_DAYS
from newsletter.papers.queries import latest_listing_date

NO_MATCH_REASON = (
    "no paper matched the subscriber's topics, and no followed author, keyword, interest, "
    "like or paper of their own could bring one"
)
WEEK = 7
_OWED = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
EMPTY_POLICIES = ("skip", "note")


@dataclass(frozen=True)
class PlanStats:
    edition_id: int
    listing_date: date
    planned: int  # rows added by this call
    pending: int
    skipped: int


def resolve_listing_date(listing_date: date | None, *, session: Session) -> date:
    """Return the given date, or the newest listing date; fail when there are no papers."""
    if listing_date is not None:
        return listing_date
    latest = latest_listing_date(session=session)
    if latest is None:
        raise NotFound("no papers in the database: import or fetch a listing first")
    return latest


def require_listing(listing_date: date | None, *, session: Session) -> date:
    """Return the date to make an edition of (default: the newest listing); NoListing when
    the database holds no paper listed that day."""
    day = resolve_listing_date(listing_date, session=session)
    if session.scalar(select(Paper.id).where(Paper.listing_date == day).limit(1)) is None:
        latest = latest_listing_date(session=session)
        raise NoListing(
            f"no papers listed on {day}: fetch or import that day's listing first "
            f"(the newest is {latest})"
        )
    return day


def get_or_create_edition(
    listing_date: date, *, session: Session, kind: EditionKind = EditionKind.DAILY
) -> Edition:
    """Return the edition for a listing date, creating it when missing."""
    edition = find_edition(listing_date, session=session, kind=kind)
    if edition is None:
        edition = Edition(kind=kind, listing_date=listing_date)
        session.add(edition)
        session.flush()
    return edition


def find_edition(
    listing_date: date, *, session: Session, kind: EditionKind = EditionKind.DAILY
) -> Edition | None:
    """Return the edition for a listing date, or None."""
    return session.scalar(
        select(Edition).where(Edition.kind == kind, Edition.listing_date == listing_date)
    )


def _matched_topic_ids(listing_date: date):
    """Topics with at least one matched paper on the listing date."""
    return (
        select(PaperTopic.topic_id)
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date == listing_date)
        .distinct()
    )


def _may_get_papers(listing_date: date, now: datetime, min_likes: int) -> CompoundSelect:
    """Subscribers a paper of the day matched, and those whose likes (their own papers
    count as likes) bring papers from outside their topics (`min_likes` of them)."""
    matched = select(Subscription.subscriber_id).where(
        Subscription.topic_id.in_(_matched_topic_ids(listing_date))
    )
    likes = union_all(
        select(FeedbackVote.subscriber_id.label("sid")).where(
            FeedbackVote.vote > 0, FeedbackVote.updated_at >= now - timedelta(PROFILE_DAYS)
        ),
        select(ReaderSeed.subscriber_id.label("sid")),
    ).subquery("likes")
    likers = (
        select(likes.c.sid).group_by(likes.c.sid).having(func.count() >= min_likes)
    )
    return union(matched, likers)


def _has_own_rules() -> ColumnElement[bool]:
    """A subscriber follows an author, set a keyword or wrote their interests: any of them may
    bring a paper on any day."""
    own = (Subscriber.follow_authors, Subscriber.personal_keywords)
    lists = (func.coalesce(func.json_array_length(c), 0) > 0 for c in own)
    return or_(*lists, Subscriber.interests != "")


def plan_edition(
    edition: Edition,
    *,
    session: Session,
    empty_policy: str = "skip",
    now: datetime | None = None,
    only: ColumnElement[bool] | None = None,
    min_likes: int = default("ranking_discovery_min_likes"),
) -> PlanStats:
    """Plan one delivery per confirmed, unsuppressed, not yet planned subscriber, in one go.

    Under "skip", a subscriber the selection can find nothing for is planned as skipped:
    no paper matched their topics, they follow no author, set no keyword, wrote no interests
    and liked too few papers for discoveries. Whether the others get a digest is the
    selection's to say when it is composed (a muted word may leave nothing). `only` narrows
    the subscribers further (e.g. those whose local delivery hour has come); `min_likes` is
    the likes from which discoveries join (`ranking_discovery_min_likes`).
    """
    if empty_policy not in EMPTY_POLICIES:
        raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES}")
    now = now or utcnow()
    # A join to the set of subscribers with a match, not a correlated EXISTS per subscriber:
    # with fresh statistics PostgreSQL ran the latter as a scan per row (quadratic).
    matched = _may_get_papers(edition.listing_date, now, min_likes).subquery("matched")
    has_match = or_(matched.c.subscriber_id.is_not(None), _has_own_rules())
    skip = has_match if empty_policy == "skip" else literal(True)
    source = (
        select(
            literal(edition.id),
            Subscriber.id,
            case((skip, DeliveryStatus.PENDING.value), else_=DeliveryStatus.SKIPPED.value),
            literal(0),
            case((skip, None), else_=NO_MATCH_REASON),
            literal(now, type_=Delivery.created_at.type),
        )
        .select_from(
            Subscriber.__table__.outerjoin(matched, matched.c.subscriber_id == Subscriber.id)
        )
        .where(
            receives_digests(),
            only if only is not None else true(),
            # NOT IN, evaluated once: a correlated NOT EXISTS let PostgreSQL rescan the rows
            # this very statement inserts, once per subscriber.
            Subscriber.id.not_in(
                select(Delivery.subscriber_id).where(Delivery.edition_id == edition.id)
            ),
        )
    )
    planned = deliveries.insert_planned(session, source)
    edition.planned_at = now
    counts = count_by_status(edition.id, session=session)
    return PlanStats(
        edition_id=edition.id,
        listing_date=edition.listing_date,
        planned=planned,
        pending=counts[DeliveryStatus.PENDING],
        skipped=counts[DeliveryStatus.SKIPPED],
    )


def count_by_status(edition_id: int, *, session: Session) -> dict[DeliveryStatus, int]:
    """Count the edition's deliveries per status (every status present, zeros included)."""
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.status)
    )
    counts = dict.fromkeys(DeliveryStatus, 0)
    for status, n in rows:
        counts[DeliveryStatus(status)] = n
    return counts


def edition_first_day(kind: EditionKind, listing_date: date) -> date:
    """Return the first listing date an edition covers (weekly: the six days before too)."""
    if kind == EditionKind.WEEKLY:
        return listing_date - timedelta(days=WEEK - 1)
    return listing_date


def sent_paper_ids(
    edition: Edition, *, session: Session, subscriber_ids: list[int] | None = None
) -> dict[int, frozenset[int]]:
    """Return, per subscriber owed this edition (or per one of subscriber_ids), the papers of
    its dates they already received in other editions.

    Only editions that may hold the same papers are read: a paper has one listing date, and an
    edition covers dates up to its own. An edition not saved yet is owed to no one.
    """
    first = edition_first_day(edition.kind, edition.listing_date)
    owed: list[int] | Select[Any]
    if subscriber_ids is not None:
        owed = subscriber_ids
    elif edition.id is None:
        return {}
    else:
        owed = select(Delivery.subscriber_id).where(
            Delivery.edition_id == edition.id, Delivery.status.in_(_OWED)
        )
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.paper_ids)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Delivery.status == DeliveryStatus.SENT,
            Delivery.edition_id != edition.id,
            Edition.listing_date >= first,
            Delivery.subscriber_id.in_(owed),
        )
    )
    sent: dict[int, set[int]] = defaultdict(set)
    for subscriber_id, paper_ids in rows:
        sent[subscriber_id].update(paper_ids or ())
    return {sid: frozenset(ids) for sid, ids in sent.items()}
