"""Self-service subscriptions: subscribe with consent, confirm, preferences, unsubscribe, GDPR.

The web pages call these; each takes `session=` and never commits. Addresses are never
revealed: `subscribe` answers the same way for new, pending, confirmed and suppressed ones
and only decides which email, if any, goes out. Rate limits live in the rate_limits table,
so every web process shares them; their keys are keyed hashes, not addresses or IPs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from newsletter.config import Settings
from newsletter.errors import InputError, NotFound
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    RateLimit,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Topic,
    utcnow,
)
from newsletter.notices import Notice, build_notice, send_notice  # noqa: F401 (re-exported)
from newsletter.rendering import DEFAULT_LIST_NAME
from newsletter.subscribers import email_key, get_subscriber, subscriber_to_dict, suppressed

FORM_VERSION = "subscribe-form-1"
# Stored word for word with each consent record: change FORM_VERSION when it changes.
CONSENT_TEXT = (
    "I want to receive the {list_name} digest of research papers on the topics I chose, "
    "by email, at the frequency I chose. I can change my preferences or unsubscribe at any "
    "time with the links in every email."
)
UNSUBSCRIBED_REASON = "unsubscribed"


class RateLimited(InputError):
    """Too many requests from one address or network in a short time."""


@dataclass(frozen=True)
class Limits:
    """The web's timing rules, from the settings."""

    confirm_max_age_hours: int = 72
    pending_max_age_days: int = 7
    mail_interval_minutes: int = 10
    subscribe_per_ip_per_hour: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Read the limits from the settings; a value under 1 raises InputError naming it."""
        values = {name: getattr(settings, name) for name in cls.__dataclass_fields__}
        for name, value in values.items():
            if value < 1:
                raise InputError(f"setting {name}: must be at least 1, got {value!r}")
        return cls(**values)


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chooses: already validated (see newsletter.web.forms)."""

    topic_ids: tuple[int, ...]
    frequency: Frequency = Frequency.DAILY
    weekly_day: int = 0  # Monday, as datetime.weekday()
    hour: int = 8
    timezone: str = "UTC"
    max_papers: int = 10
    name: str = ""
    paused: bool = False


@dataclass(frozen=True)
class ConsentRecord:
    """Evidence of a sign-up: who asked, from where, agreeing to which words."""

    ip: str
    user_agent: str
    form_version: str = FORM_VERSION
    text: str = ""

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "source": "web",
            "recorded_at": now.isoformat(),
            "ip": self.ip,
            "user_agent": self.user_agent[:500],
            "form_version": self.form_version,
            "text": self.text,
        }


def list_name(settings: Settings) -> str:
    """Return the newsletter's display name (the From header's name)."""
    return parseaddr(settings.from_address)[0] or DEFAULT_LIST_NAME


def consent_text(settings: Settings) -> str:
    """Return the consent sentence shown beside the subscribe button."""
    return CONSENT_TEXT.format(list_name=list_name(settings))


# --- rate limits ------------------------------------------------------------------------


def rate_key(settings: Settings, kind: str, value: str) -> str:
    """Return a rate-limit key that does not reveal the IP or address it counts."""
    digest = hmac.new(settings.secret_key.encode(), value.encode(), hashlib.sha256)
    return f"{kind}:{digest.hexdigest()[:40]}"


def take_rate_limit(
    key: str, *, limit: int, window: timedelta, session: Session, now: datetime | None = None
) -> bool:
    """Count one event in a fixed window; return False when the window is already full."""
    now = now or utcnow()
    session.execute(_insert_missing(session, {"key": key, "window_start": now, "count": 0}))
    query = select(RateLimit).where(RateLimit.key == key).with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one()
    if row.window_start + window <= now:
        row.window_start, row.count = now, 0
    if row.count >= limit:
        return False
    row.count += 1
    session.flush()
    return True


def _insert_missing(session: Session, values: dict[str, Any]) -> Any:
    """Return an INSERT of a rate-limit row that does nothing when the key exists."""
    # Two web processes may count the same new key at once: neither may fail.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(RateLimit).values(values).on_conflict_do_nothing()


# --- subscribe and confirm --------------------------------------------------------------


def subscribe(
    email: str,
    prefs: Preferences,
    consent: ConsentRecord,
    *,
    session: Session,
    settings: Settings,
    now: datetime | None = None,
) -> Notice | None:
    """Record a sign-up and return the email it calls for (None: send nothing).

    Raises RateLimited when the network asks too often. Whatever the address's state,
    the caller must answer the same way, so no one can learn who subscribes.
    """
    now = now or utcnow()
    limits = Limits.from_settings(settings)
    ip_key = rate_key(settings, "subscribe-ip", consent.ip)
    hour = timedelta(hours=1)
    if not take_rate_limit(
        ip_key, limit=limits.subscribe_per_ip_per_hour, window=hour, session=session, now=now
    ):
        raise RateLimited("too many sign-ups from your network: please try again in an hour")
    if suppressed(session, [email]):
        return None
    subscriber = _existing(email, session=session)
    kind = "manage" if subscriber and subscriber.status == SubscriberStatus.CONFIRMED else "confirm"
    if subscriber is None:
        subscriber = Subscriber(email=email, created_at=now)
        session.add(subscriber)
    if kind == "confirm":
        # A stranger may type anyone's address: only unconfirmed rows take the form's choices.
        _start_pending(subscriber, prefs, consent, now)
    session.flush()
    mail_key = rate_key(settings, "mail", email_key(email))
    interval = timedelta(minutes=limits.mail_interval_minutes)
    if not take_rate_limit(mail_key, limit=1, window=interval, session=session, now=now):
        return None
    if kind == "confirm":
        subscriber.confirmation_sent_at = now
    return Notice(kind, subscriber.id, subscriber.email, subscriber.name)


def _existing(email: str, *, session: Session) -> Subscriber | None:
    try:
        return get_subscriber(email, session=session)
    except NotFound:
        return None


def _start_pending(
    subscriber: Subscriber, prefs: Preferences, consent: ConsentRecord, now: datetime
) -> None:
    subscriber.status = SubscriberStatus.PENDING
    subscriber.confirmed_at = None
    subscriber.unsubscribed_at = None
    subscriber.consent_source = "web"
    subscriber.consent = consent.to_dict(now)
    _apply(subscriber, prefs)


def _apply(subscriber: Subscriber, prefs: Preferences) -> None:
    subscriber.name = prefs.name
    subscriber.frequency = prefs.frequency
    subscriber.weekly_day = prefs.weekly_day
    subscriber.delivery_hour = prefs.hour
    subscriber.timezone = prefs.timezone
    subscriber.max_papers = prefs.max_papers
    subscriber.paused = prefs.paused
    current = {s.topic_id: s for s in subscriber.subscriptions}
    wanted = dict.fromkeys(prefs.topic_ids)
    subscriber.subscriptions = [current.get(t) or Subscription(topic_id=t) for t in wanted]


def load_subscriber(subscriber_id: int, *, session: Session) -> Subscriber:
    """Return the subscriber a token names, or raise NotFound (deleted or purged since)."""
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
    )
    if subscriber is None:
        raise NotFound("this link belongs to a subscription that no longer exists")
    return subscriber


def confirm(subscriber_id: int, *, session: Session, now: datetime | None = None) -> Subscriber:
    """Confirm a pending subscriber (idempotent); refuse one who unsubscribed since."""
    subscriber = load_subscriber(subscriber_id, session=session)
    if subscriber.status == SubscriberStatus.PENDING:
        subscriber.status = SubscriberStatus.CONFIRMED
        subscriber.confirmed_at = now or utcnow()
        # A new dict: the JSON column only notices reassignment, not changes in place.
        subscriber.consent = {
            **subscriber.consent,
            "confirmed_at": subscriber.confirmed_at.isoformat(),
        }
    elif subscriber.status != SubscriberStatus.CONFIRMED:
        raise InputError("this confirmation link is no longer valid: please subscribe again")
    session.flush()
    return subscriber


# --- preferences, unsubscribe, GDPR -----------------------------------------------------


def update_preferences(subscriber_id: int, prefs: Preferences, *, session: Session) -> Subscriber:
    """Replace the subscriber's topics and delivery preferences."""
    if not prefs.topic_ids:
        raise InputError("choose at least one topic")
    subscriber = load_subscriber(subscriber_id, session=session)
    _apply(subscriber, prefs)
    session.flush()
    return subscriber


def unsubscribe(
    subscriber_id: int, *, session: Session, now: datetime | None = None
) -> Subscriber | None:
    """Unsubscribe (idempotent) and skip their unsent deliveries; None if already deleted."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now or utcnow()
    session.execute(
        update(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.SKIPPED, skip_reason=UNSUBSCRIBED_REASON)
    )
    session.flush()
    return subscriber


def resubscribe(subscriber_id: int, *, session: Session) -> Subscriber:
    """Undo an unsubscribe from its own link: the link proves the mailbox was confirmed."""
    subscriber = load_subscriber(subscriber_id, session=session)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED and subscriber.confirmed_at:
        subscriber.status = SubscriberStatus.CONFIRMED
        subscriber.unsubscribed_at = None
    elif subscriber.status != SubscriberStatus.CONFIRMED:
        raise InputError("this subscription cannot be resumed here: please subscribe again")
    session.flush()
    return subscriber


def export_my_data(subscriber_id: int, *, session: Session) -> dict[str, Any]:
    """Return everything stored about a subscriber, JSON-ready (GDPR article 15)."""
    subscriber = load_subscriber(subscriber_id, session=session)
    data = subscriber_to_dict(subscriber, consent=True)
    data.update(paused=subscriber.paused, weekly_day=subscriber.weekly_day)
    data["confirmation_sent_at"] = subscriber.confirmation_sent_at
    rows = session.execute(
        select(Delivery).where(Delivery.subscriber_id == subscriber_id).order_by(Delivery.id)
    ).scalars()
    data["deliveries"] = [
        {
            "edition": d.edition.listing_date.isoformat(),
            "status": d.status.value,
            "sent_at": d.sent_at,
            "skip_reason": d.skip_reason,
        }
        for d in rows
    ]
    return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def delete_my_data(subscriber_id: int, *, session: Session) -> bool:
    """Delete the subscriber, their topics and delivery records; False if already gone."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return False
    session.execute(delete(Delivery).where(Delivery.subscriber_id == subscriber_id))
    session.delete(subscriber)
    session.flush()
    return True


def purge_pending(*, session: Session, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete subscribers still unconfirmed after `older_than`, and stale rate limits."""
    cutoff = (now or utcnow()) - older_than
    last_asked = func.coalesce(Subscriber.confirmation_sent_at, Subscriber.created_at)
    ids = list(
        session.scalars(
            select(Subscriber.id).where(
                and_(Subscriber.status == SubscriberStatus.PENDING, last_asked < cutoff)
            )
        )
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(delete(Delivery).where(Delivery.subscriber_id.in_(chunk)))
        session.execute(delete(Subscription).where(Subscription.subscriber_id.in_(chunk)))
        session.execute(delete(Subscriber).where(Subscriber.id.in_(chunk)))
    # Windows are at most a day long: older counters only take space.
    day_ago = (now or utcnow()) - timedelta(days=1)
    session.execute(delete(RateLimit).where(RateLimit.window_start < day_ago))
    return len(ids)


def active_topics(*, session: Session) -> Sequence[Topic]:
    """Return the topics a reader may choose, by name."""
    return session.scalars(select(Topic).order_by(Topic.name)).all()
