"""Subscribers: add, edit, show, list and remove them, and find them by address.

An address is found by its email_key() (see `validation`): the same on SQLite and
PostgreSQL. CSV import and export live in `csv_import` and `csv_format`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.audience.validation import (
    email_key,
    mailable_email,
    normalise_email,
    require_wants,
    split_rules,
    validate_frequency,
    validate_hour,
    validate_interests,
    validate_max_papers,
    validate_name,
    validate_timezone,
    validate_weekday,
)
from newsletter.core.config import Settings
from newsletter.core.db import select_in
from newsletter.core.errors import InputError, NotFound, quoted
from newsletter.core.models import (
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Suppression,
    Topic,
    utcnow,
)
from newsletter.matching.interests import embed_interests, stored_vector
from newsletter.matching.seeds import seed_of
from newsletter.matching.topics import split_list


@dataclass(frozen=True)
class Defaults:
    """Delivery preferences given to a new subscriber who states none."""

    timezone: str = Settings.default_timezone
    hour: int = Settings.default_hour
    max_papers: int = Settings.default_max_papers

    @classmethod
    def from_settings(cls, settings: Settings) -> Defaults:
        """Take the defaults from the instance settings."""
        return cls(settings.default_timezone, settings.default_hour, settings.default_max_papers)


def set_interests(
    subscriber: Subscriber, interests: str, embedded: tuple[str, bytes] | None = None
) -> None:
    """Set a subscriber's checked interests and their sentence vector (embedded here unless
    given: the text is embedded once, when it changes, never per edition)."""
    current = stored_vector(subscriber.interests_model, subscriber.interests_vector)
    if interests == subscriber.interests and (current is not None or not interests):
        return
    if embedded is None and interests:
        (embedded,) = embed_interests([interests])
    subscriber.interests = interests
    subscriber.interests_model, subscriber.interests_vector = embedded or (None, None)


def topic_ids(*, session: Session) -> dict[str, int]:
    """Return every topic's id by slug."""
    return {slug: topic_id for slug, topic_id in session.execute(select(Topic.slug, Topic.id))}


def resolve_topics(
    slugs: Sequence[str], known: dict[str, int], *, required: bool = True
) -> list[int]:
    """Return the ids of the slugs, in any case, once each; raise InputError naming unknown ones
    (and, when `required`, for none at all)."""
    slugs = list(dict.fromkeys(slug.strip().lower() for slug in slugs))
    if not slugs and required:
        raise InputError("no topics given")
    unknown = [s for s in slugs if s not in known]
    if unknown:
        names = ", ".join(quoted(s) for s in unknown)
        listing = ", ".join(sorted(known)) or "none defined yet"
        plural = "s" if len(unknown) > 1 else ""
        raise InputError(f"unknown topic{plural} {names} (known: {listing})")
    return [known[s] for s in slugs]


def add_subscriber(
    *,
    session: Session,
    email: str,
    name: str = "",
    topics: str | Iterable[str] = "",
    interests: str = "",
    confirmed: bool = False,
    timezone: str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    frequency: Frequency | str = Frequency.DAILY,
    weekly_day: int | str = 0,
    paused: bool = False,
    consent_source: str = "admin",
    defaults: Defaults | None = None,
) -> Subscriber:
    """Add one subscriber with their topics or interests; raise InputError if the address exists."""
    defaults = defaults or Defaults()
    address = mailable_email(email)
    subscriber = Subscriber(
        email=address,
        name=validate_name(name),
        timezone=validate_timezone(timezone or defaults.timezone),
        delivery_hour=validate_hour(defaults.hour if hour is None else hour),
        max_papers=validate_max_papers(defaults.max_papers if max_papers is None else max_papers),
        frequency=validate_frequency(frequency),
        weekly_day=validate_weekday(weekly_day),
        paused=paused,
        consent_source=consent_source[:64],
    )
    wants = validate_interests(interests)
    ids = resolve_topics(split_list(topics), topic_ids(session=session), required=False)
    require_wants(ids, wants)
    if _find(session, address) is not None:
        raise InputError(f"subscriber {quoted(address)} already exists")
    reason = suppressed(session, [address]).get(email_key(address))
    if reason is not None:
        raise InputError(f"{quoted(address)} is suppressed ({reason}): it must not be mailed again")
    now = utcnow()
    subscriber.status = SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING
    subscriber.confirmed_at = now if confirmed else None
    subscriber.consent = {"source": consent_source, "recorded_at": now.isoformat()}
    subscriber.subscriptions = [Subscription(topic_id=i) for i in ids]
    set_interests(subscriber, wants)
    session.add(subscriber)
    session.flush()
    return subscriber


def edit_subscriber(
    email: str,
    *,
    session: Session,
    name: str | None = None,
    topics: str | None = None,
    timezone: str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    frequency: Frequency | str | None = None,
    weekly_day: int | str | None = None,
    paused: bool | None = None,
    follow_authors: str | None = None,
    muted_words: str | None = None,
    personal_keywords: str | None = None,
    interests: str | None = None,
) -> Subscriber:
    """Change what is given of a subscriber's preferences; None leaves a field as it is.

    Every value is checked before any is set: on an error the subscriber is as before.
    """
    subscriber = get_subscriber(email, session=session)
    given = {
        "name": name,
        "timezone": timezone,
        "delivery_hour": hour,
        "max_papers": max_papers,
        "frequency": frequency,
        "weekly_day": weekly_day,
        "follow_authors": follow_authors,
        "muted_words": muted_words,
        "personal_keywords": personal_keywords,
    }
    checked = {k: _FIELD_CHECKS[k](v) for k, v in given.items() if v is not None}
    if paused is not None:
        checked["paused"] = paused
    wants = subscriber.interests if interests is None else validate_interests(interests)
    ids = None
    if topics is not None:
        ids = resolve_topics(split_list(topics), topic_ids(session=session), required=False)
    require_wants([s.topic_id for s in subscriber.subscriptions] if ids is None else ids, wants)
    for column, value in checked.items():
        setattr(subscriber, column, value)
    set_interests(subscriber, wants)
    if ids is not None:
        current = {s.topic_id: s for s in subscriber.subscriptions}
        subscriber.subscriptions = [current.get(i) or Subscription(topic_id=i) for i in ids]
    session.flush()
    return subscriber


# How edit_subscriber() checks each column it is given.
_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": validate_name,
    "timezone": validate_timezone,
    "delivery_hour": validate_hour,
    "max_papers": validate_max_papers,
    "frequency": validate_frequency,
    "weekly_day": validate_weekday,
    "follow_authors": lambda v: split_rules(v, "followed authors"),
    "muted_words": lambda v: split_rules(v, "muted words"),
    "personal_keywords": lambda v: split_rules(v, "keywords"),
}


def lookup_values(keys: Iterable[str]) -> list[str]:
    # PostgreSQL's lower() may also fold non-ASCII letters: match both spellings in SQL and
    # let email_key() decide, so both databases agree on who is who.
    return list({v for k in keys for v in (k, k.lower())})


def _find(session: Session, address: str) -> Subscriber | None:
    key = email_key(address)
    query = select(Subscriber).where(func.lower(Subscriber.email).in_(lookup_values([key])))
    matches = [
        s for s in session.scalars(query.order_by(Subscriber.id)) if email_key(s.email) == key
    ]
    return matches[0] if matches else None


def suppressed(session: Session, addresses: Sequence[str]) -> dict[str, str]:
    """Return the reason each suppressed address is suppressed, by email_key()."""
    keys = {email_key(a) for a in addresses}
    sql = f"SELECT email, reason FROM {Suppression.__tablename__} WHERE lower(email) IN ({{}})"
    rows = select_in(session, sql, lookup_values(keys)) if keys else []
    return {email_key(e): r for e, r in rows if email_key(e) in keys}


def stored_ids(session: Session, addresses: Sequence[str]) -> dict[str, int]:
    """Return the id of each of these addresses already a subscriber, by email_key()."""
    keys = {email_key(a) for a in addresses}
    sql = "SELECT email, id FROM subscribers WHERE lower(email) IN ({}) ORDER BY id DESC"
    rows = select_in(session, sql, lookup_values(keys)) if keys else []
    # Descending, so that the first row of one address (the one _find returns) wins.
    return {email_key(e): i for e, i in rows if email_key(e) in keys}


def get_subscriber(email: str, *, session: Session) -> Subscriber:
    """Return the subscriber with this address or raise NotFound."""
    try:
        address = normalise_email(email)
    except InputError:
        address = email.strip()
    subscriber = _find(session, address)
    if subscriber is None:
        raise NotFound(f"no subscriber {quoted(address)}")
    return subscriber


def list_subscribers(
    *, session: Session, status: SubscriberStatus | str | None = None, topic: str | None = None
) -> list[Subscriber]:
    """Return subscribers by address, optionally only those with a status or topic."""
    query = select(Subscriber).options(
        selectinload(Subscriber.subscriptions).selectinload(Subscription.topic),
        selectinload(Subscriber.seeds),
    )
    if status is not None:
        query = query.where(Subscriber.status == SubscriberStatus(status))
    if topic is not None:
        (topic_id,) = resolve_topics([topic], topic_ids(session=session))
        query = query.join(Subscription).where(Subscription.topic_id == topic_id)
    return list(session.scalars(query.order_by(Subscriber.email)))


def remove_subscriber(email: str, *, session: Session) -> Subscriber:
    """Delete a subscriber and their topic choices; return the deleted subscriber."""
    subscriber = get_subscriber(email, session=session)
    session.delete(subscriber)
    session.flush()
    return subscriber


def topic_slugs(subscriber: Subscriber) -> list[str]:
    """Return the slugs of the subscriber's topics, sorted."""
    return sorted(s.topic.slug for s in subscriber.subscriptions)


def subscriber_to_dict(subscriber: Subscriber, *, consent: bool = False) -> dict[str, Any]:
    """Return the subscriber as plain JSON-ready data."""
    data: dict[str, Any] = {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status.value,
        "topics": topic_slugs(subscriber),
        "timezone": subscriber.timezone,
        "hour": subscriber.delivery_hour,
        "max_papers": subscriber.max_papers,
        "frequency": subscriber.frequency.value,
        "weekly_day": subscriber.weekly_day,
        "paused": subscriber.paused,
        "consent_source": subscriber.consent_source,
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
        "unsubscribed_at": subscriber.unsubscribed_at,
        "follow_authors": list(subscriber.follow_authors or ()),
        "muted_words": list(subscriber.muted_words or ()),
        "personal_keywords": list(subscriber.personal_keywords or ()),
        "seed_papers": [seed_of(row).to_dict() for row in subscriber.seeds],
        "interests": subscriber.interests or "",
    }
    if consent:
        data["consent"] = subscriber.consent
    return data


def subscriber_pages(
    session: Session, *, page_size: int = 1000, history: bool = False
) -> Iterator[list[Subscriber]]:
    """Yield every subscriber by id, a page at a time, with their topics (and history)."""
    options = [selectinload(Subscriber.subscriptions).selectinload(Subscription.topic)]
    if history:
        options += [selectinload(Subscriber.consent_events), selectinload(Subscriber.seeds)]
    last_id = 0
    while True:
        query = (
            select(Subscriber)
            .where(Subscriber.id > last_id)
            .options(*options)
            .order_by(Subscriber.id)
            .limit(page_size)
        )
        page = list(session.scalars(query))
        if not page:
            return
        yield page
        last_id = page[-1].id
        session.expunge_all()  # keep memory flat however many subscribers there are
