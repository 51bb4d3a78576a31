"""Self-service subscriptions: subscribe with consent, confirm, preferences, unsubscribe, GDPR.

The web pages call these; each takes `session=` and never commits. Addresses are never
revealed: `subscribe` does the same work for new, pending, confirmed and suppressed ones and
only decides which email goes out. A confirmation link confirms the one sign-up it was sent
for, with that sign-up's choices (or what its owner changed them to on the confirm page).
Rate limits are in `limits`.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.audience.limits import (  # noqa: F401 - re-exported for the web
    Limits,
    RateLimited,
    network_of,
    rate_key,
    take_rate_limit,
)
from newsletter.audience.subscribers import get_subscriber, set_interests, subscriber_to_dict
from newsletter.audience.suppressions import remove_suppression, suppression_reason
from newsletter.audience.validation import email_key, require_wants
from newsletter.content.notices import Notice
from newsletter.core import deliveries, identity
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import (
    ConsentEvent,
    Delivery,
    Frequency,
    QueuedMail,
    RateLimit,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Topic,
    new_link_key,
    utcnow,
)
from newsletter.core.tokens import LinkClaim
from newsletter.matching import feedback

FORM_VERSION = "subscribe-form-1"
# Stored word for word with each consent record: change FORM_VERSION when it changes.
CONSENT_TEXT = (
    "I want to receive the {list_name} digest of research papers on the topics I chose, "
    "by email, at the frequency I chose. I can change my preferences or unsubscribe at any "
    "time with the links in every email."
)
UNSUBSCRIBED_REASON = "unsubscribed"
SIGNUP = "signup"
GONE = "this link belongs to a subscription that no longer exists"
NO_LONGER_VALID = "this confirmation link is no longer valid: please subscribe again"
RESUME_EXPIRED = (
    "this link can no longer undo the unsubscribe: please subscribe again on the sign-up page"
)
# What ends a sign-up: after one of these, its confirmation link confirms nothing.
CLOSES_SIGNUP = ("confirm", "unsubscribe")
NO_WANTS = "choose at least one topic, or describe your interests"


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
    # A reader's own rules; None leaves them as they are (the sign-up form has none).
    follow_authors: tuple[str, ...] | None = None
    muted_words: tuple[str, ...] | None = None
    personal_keywords: tuple[str, ...] | None = None
    # Their interests in their own words, checked; None leaves them as they are.
    interests: str | None = None


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


def consent_text(settings: Settings) -> str:
    """Return the consent sentence shown beside the subscribe button."""
    return CONSENT_TEXT.format(list_name=identity.list_name(settings))


# --- subscribe and confirm --------------------------------------------------------------


def request_signup(
    email: str,
    prefs: Preferences,
    consent: ConsentRecord,
    *,
    session: Session,
    settings: Settings,
    now: datetime | None = None,
) -> QueuedMail:
    """Queue a sign-up from the form; the mail queue decides what it calls for later.

    The same work for every address, whatever its state, so neither the answer nor its
    timing tells anyone who subscribes. Raises RateLimited when the network asks too often.
    """
    now = now or utcnow()
    limits = Limits.from_settings(settings)
    ip_key = rate_key(settings, "subscribe-ip", network_of(consent.ip))
    hour = timedelta(hours=1)
    if not take_rate_limit(
        ip_key, limit=limits.subscribe_per_ip_per_hour, window=hour, session=session, now=now
    ):
        raise RateLimited("too many sign-ups from your network: please try again in an hour")
    payload = {"prefs": prefs_to_dict(prefs), "consent": consent.to_dict(now)}
    queued = QueuedMail(kind=SIGNUP, email=email, payload=payload, created_at=now)
    queued.next_attempt_at = now
    session.add(queued)
    session.flush()
    return queued


def subscribe(
    email: str,
    prefs: Preferences,
    consent: ConsentRecord,
    *,
    session: Session,
    settings: Settings,
    now: datetime | None = None,
) -> Notice | None:
    """Record a sign-up in the address's history and return the email it calls for.

    A stranger may type anyone's address, so nothing already stored changes here: a new
    address becomes a pending row; for a known one the choices wait in the history until
    the mailbox's owner confirms. A confirmed reader gets a link to their preferences. A
    suppressed address is asked to confirm like any other: a confirmation that arrives
    proves the mailbox works again.
    """
    now = now or utcnow()
    lifted = suppression_reason(email, session=session) is not None
    subscriber = _existing(email, session=session)
    if subscriber is None:
        subscriber = Subscriber(email=email, created_at=now, status=SubscriberStatus.PENDING)
        subscriber.consent_source = "web"
        subscriber.consent = consent.to_dict(now)
        _apply(subscriber, prefs)
        session.add(subscriber)
    confirmed = subscriber.status == SubscriberStatus.CONFIRMED and not lifted
    signup = None
    if not confirmed:
        details = {"prefs": prefs_to_dict(prefs), "consent": consent.to_dict(now)}
        signup = record_event(subscriber, SIGNUP, consent.ip, consent.user_agent, details, now=now)
    session.flush()
    if not take_mail_limit(email, session=session, settings=settings, now=now):
        return None
    if signup is None:
        name, key = subscriber.name, subscriber.link_key
        return Notice("manage", subscriber.id, subscriber.email, name, key)
    return confirmation_notice(subscriber, signup, now=now)


def take_mail_limit(
    email: str, *, session: Session, settings: Settings, now: datetime | None = None
) -> bool:
    """Count one email to an address; False when one went there under the interval ago.

    However often a form is sent or an admin asks, a mailbox gets at most one sign-up
    email per `mail_interval_minutes`.
    """
    interval = timedelta(minutes=Limits.from_settings(settings).mail_interval_minutes)
    key = rate_key(settings, "mail", email_key(email))
    return take_rate_limit(key, limit=1, window=interval, session=session, now=now)


def confirmation_notice(
    subscriber: Subscriber, signup: ConsentEvent, *, now: datetime | None = None
) -> Notice:
    """Return the email whose link confirms this sign-up, and note when it was sent."""
    subscriber.confirmation_sent_at = now or utcnow()
    # An unconfirmed name is never echoed: it is whatever a stranger typed.
    return Notice("confirm", subscriber.id, subscriber.email, "", subscriber.link_key, signup.id)


def record_event(
    subscriber: Subscriber,
    kind: str,
    ip: str = "",
    user_agent: str = "",
    details: dict[str, Any] | None = None,
    *,
    source: str = "web",
    now: datetime | None = None,
) -> ConsentEvent:
    """Append one entry to the subscriber's consent history (never rewritten)."""
    event = ConsentEvent(
        kind=kind,
        source=source,
        at=now or utcnow(),
        ip=ip,
        user_agent=user_agent[:500],
        details=details or {},
    )
    subscriber.consent_events.append(event)
    return event


def preferences_of(subscriber: Subscriber) -> Preferences:
    """Return a subscriber's stored choices as a sign-up would hold them (without rules)."""
    return Preferences(
        topic_ids=tuple(sorted(s.topic_id for s in subscriber.subscriptions)),
        frequency=subscriber.frequency,
        weekly_day=subscriber.weekly_day,
        hour=subscriber.delivery_hour,
        timezone=subscriber.timezone,
        max_papers=subscriber.max_papers,
        name=subscriber.name,
        paused=subscriber.paused,
        interests=subscriber.interests or "",
    )


def prefs_to_dict(prefs: Preferences) -> dict[str, Any]:
    """Return Preferences as the JSON a queued sign-up or a consent event stores."""
    return {**dataclasses.asdict(prefs), "frequency": prefs.frequency.value}


def prefs_from_dict(data: dict[str, Any]) -> Preferences:
    """Return the Preferences a queued sign-up or a consent event stored as JSON."""
    fields = {k: v for k, v in data.items() if k in Preferences.__dataclass_fields__}
    fields["topic_ids"] = tuple(fields.get("topic_ids", ()))
    fields["frequency"] = Frequency(fields.get("frequency", Frequency.DAILY.value))
    return Preferences(**fields)


def _existing(email: str, *, session: Session) -> Subscriber | None:
    try:
        return get_subscriber(email, session=session)
    except NotFound:
        return None


def _apply(subscriber: Subscriber, prefs: Preferences, *, name: bool = True) -> None:
    if name:
        subscriber.name = prefs.name
    subscriber.frequency = prefs.frequency
    subscriber.weekly_day = prefs.weekly_day
    subscriber.delivery_hour = prefs.hour
    subscriber.timezone = prefs.timezone
    subscriber.max_papers = prefs.max_papers
    subscriber.paused = prefs.paused
    for rule in ("follow_authors", "muted_words", "personal_keywords"):
        if getattr(prefs, rule) is not None:
            setattr(subscriber, rule, list(getattr(prefs, rule)))
    if prefs.interests is not None:
        set_interests(subscriber, prefs.interests)
    current = {s.topic_id: s for s in subscriber.subscriptions}
    wanted = dict.fromkeys(prefs.topic_ids)
    subscriber.subscriptions = [current.get(t) or Subscription(topic_id=t) for t in wanted]


def load_subscriber(subscriber_id: int, *, session: Session) -> Subscriber:
    """Return a subscriber by id, or raise NotFound (deleted or purged since)."""
    subscriber = session.scalar(
        select(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .options(selectinload(Subscriber.subscriptions).selectinload(Subscription.topic))
    )
    if subscriber is None:
        raise NotFound(GONE)
    return subscriber


def check_link(claim: LinkClaim, *, session: Session) -> Subscriber:
    """Return the subscriber a link was made for, or raise NotFound.

    The link key must match the row's: a link outlives neither a deletion nor a new
    subscription, whatever id the database hands out later.
    """
    subscriber = load_subscriber(claim.subscriber_id, session=session)
    if not hmac.compare_digest(subscriber.link_key.encode(), claim.key.encode()):
        raise NotFound(GONE)
    return subscriber


def signup_to_confirm(
    subscriber: Subscriber, signup_id: int | None, *, session: Session
) -> ConsentEvent | None:
    """Return the sign-up a confirmation link may still confirm, or None once confirmed.

    `signup_id` is the sign-up the link was sent for (None: the newest, for the admin's
    tools). Raises InputError when a confirmation or an opt-out came after that sign-up.
    """
    confirmed = subscriber.status == SubscriberStatus.CONFIRMED
    if confirmed and suppression_reason(subscriber.email, session=session) is None:
        return None
    if signup_id is None:
        signup = _open_signup(subscriber)
    else:
        signup = _bound_signup(subscriber, signup_id)
    if signup is None:
        raise InputError(NO_LONGER_VALID)
    return signup


def signup_prefs(signup: ConsentEvent) -> Preferences:
    """Return the choices made with a sign-up (its interests too), without rules (no form for
    them asks)."""
    prefs = prefs_from_dict(signup.details.get("prefs", {}))
    return dataclasses.replace(prefs, follow_authors=None, muted_words=None, personal_keywords=None)


def confirm(
    subscriber_id: int,
    *,
    session: Session,
    signup_id: int | None = None,
    prefs: Preferences | None = None,
    now: datetime | None = None,
) -> Subscriber:
    """Confirm one sign-up of a subscriber (idempotent once confirmed).

    The choices of that sign-up take effect now, or `prefs`, what its owner made of them on
    the confirm page. Someone who had unsubscribed is subscribed again, under a new link
    key: links from the old subscription stop working. A suppressed address is taken off
    the suppression list: the confirmation reached its mailbox.
    """
    now = now or utcnow()
    subscriber = load_subscriber(subscriber_id, session=session)
    signup = signup_to_confirm(subscriber, signup_id, session=session)
    if signup is None:
        return subscriber
    if subscriber.status != SubscriberStatus.PENDING:
        subscriber.link_key = new_link_key()
        subscriber.unsubscribed_at = None
    applied = prefs or signup_prefs(signup)
    if prefs is not None or "prefs" in signup.details:
        _apply(subscriber, applied)
    subscriber.status = SubscriberStatus.CONFIRMED
    subscriber.confirmed_at = now
    subscriber.consent_source = "web"
    subscriber.consent = {**signup.details.get("consent", {}), "confirmed_at": now.isoformat()}
    details = {"signup": signup.id, "prefs": prefs_to_dict(applied)} if signup.id else {}
    record_event(subscriber, "confirm", details=details, now=now)
    _lift_suppression(subscriber, signup, session=session, now=now)
    session.flush()
    return subscriber


def _lift_suppression(
    subscriber: Subscriber, signup: ConsentEvent, *, session: Session, now: datetime
) -> None:
    reason = suppression_reason(subscriber.email, session=session)
    if reason is None:
        return
    remove_suppression(subscriber.email, session=session)
    details = {"reason": reason, "signup": signup.id}
    record_event(subscriber, "unsuppress", details=details, now=now)


def _bound_signup(subscriber: Subscriber, signup_id: int) -> ConsentEvent | None:
    """Return the sign-up with this id, unless a confirmation or an opt-out followed it."""
    found = None
    for event in subscriber.consent_events:
        if found is None and event.id == signup_id and event.kind == SIGNUP:
            found = event
        elif found is not None and event.kind in CLOSES_SIGNUP:
            return None
    return found


def _open_signup(subscriber: Subscriber) -> ConsentEvent | None:
    """Return the newest sign-up not overtaken by an opt-out, if any."""
    for event in reversed(subscriber.consent_events):
        if event.kind == SIGNUP:
            return event
        if event.kind in CLOSES_SIGNUP:
            break
    if subscriber.status == SubscriberStatus.PENDING and not subscriber.consent_events:
        # A row from before the consent history: its sign-up is the row itself.
        return ConsentEvent(kind=SIGNUP, details={"consent": subscriber.consent})
    return None


# --- preferences, unsubscribe, GDPR -----------------------------------------------------


def update_preferences(subscriber_id: int, prefs: Preferences, *, session: Session) -> Subscriber:
    """Replace the subscriber's topics, interests and delivery preferences."""
    subscriber = load_subscriber(subscriber_id, session=session)
    interests = subscriber.interests if prefs.interests is None else prefs.interests
    require_wants(prefs.topic_ids, interests, NO_WANTS)
    _apply(subscriber, prefs)
    session.flush()
    return subscriber


def unsubscribe(
    subscriber_id: int, *, session: Session, now: datetime | None = None, source: str = "web"
) -> Subscriber | None:
    """Unsubscribe (idempotent) and skip their unsent deliveries; None if already deleted."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
        subscriber.unsubscribed_at = now or utcnow()
        record_event(subscriber, "unsubscribe", source=source, now=subscriber.unsubscribed_at)
    deliveries.skip_pending_of(subscriber_id, UNSUBSCRIBED_REASON, session=session)
    session.flush()
    return subscriber


def resubscribe(
    subscriber_id: int,
    *,
    session: Session,
    window: timedelta | None = None,
    now: datetime | None = None,
) -> Subscriber:
    """Undo an unsubscribe from its own link, within `window` of the opt-out.

    The link proves the mailbox was confirmed, but it travels with every forwarded digest:
    later, subscribing again takes a new confirmation.
    """
    subscriber = load_subscriber(subscriber_id, session=session)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED and subscriber.confirmed_at:
        if not can_resume(subscriber, window=window, now=now):
            raise InputError(RESUME_EXPIRED)
        subscriber.status = SubscriberStatus.CONFIRMED
        subscriber.unsubscribed_at = None
        record_event(subscriber, "resubscribe", now=now)
    elif subscriber.status != SubscriberStatus.CONFIRMED:
        raise InputError("this subscription cannot be resumed here: please subscribe again")
    session.flush()
    return subscriber


def can_resume(
    subscriber: Subscriber, *, window: timedelta | None = None, now: datetime | None = None
) -> bool:
    """Tell whether the unsubscribe link may still undo this reader's opt-out."""
    window = window or timedelta(hours=Limits.resubscribe_window_hours)
    since = subscriber.unsubscribed_at
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED or not subscriber.confirmed_at:
        return False
    return since is not None and (now or utcnow()) < since + window


def export_my_data(subscriber_id: int, *, session: Session) -> dict[str, Any]:
    """Return everything stored about a subscriber, JSON-ready (GDPR article 15)."""
    subscriber = load_subscriber(subscriber_id, session=session)
    data = subscriber_to_dict(subscriber, consent=True)
    data["confirmation_sent_at"] = subscriber.confirmation_sent_at
    data["feedback"] = feedback.votes_of_subscriber(subscriber_id, session=session)
    data["consent_history"] = [
        {"kind": e.kind, "source": e.source, "at": e.at, "ip": e.ip, "user_agent": e.user_agent}
        | ({"details": e.details} if e.details else {})
        for e in subscriber.consent_events
    ]
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
    deliveries.delete_of([subscriber_id], session=session)
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
        deliveries.delete_of(chunk, session=session)
        session.execute(delete(Subscription).where(Subscription.subscriber_id.in_(chunk)))
        session.execute(delete(Subscriber).where(Subscriber.id.in_(chunk)))
    # Windows are at most a day long: older counters only take space.
    day_ago = (now or utcnow()) - timedelta(days=1)
    session.execute(delete(RateLimit).where(RateLimit.window_start < day_ago))
    # Handled sign-ups keep an address typed by anyone: forget them once handled.
    session.execute(
        delete(QueuedMail).where(QueuedMail.done_at.is_not(None), QueuedMail.done_at < day_ago)
    )
    return len(ids)


def active_topics(*, session: Session) -> Sequence[Topic]:
    """Return the topics a reader may choose, by name."""
    return session.scalars(select(Topic).order_by(Topic.name)).all()
