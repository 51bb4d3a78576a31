"""The suppression list: addresses never mailed again, with the reason and the time.

Addresses are matched as subscribers are (ASCII case folded, see subscribers.email_key), so
`Gone@Example.org` bounced means `gone@example.org` is never mailed either. Functions take
the caller's session or connection and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from newsletter.audience.subscribers import email_key, normalise_email, suppressed
from newsletter.bounces import reasons
from newsletter.bounces.classify import fingerprint, smtp_reply_verdict
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)

MAX_REASON = 200
OPERATOR_REASON = "operator"
COMPLAINT_REASON = "complaint"
# A disabled mailbox reported this many times within this many days is treated as gone.
DISABLED_REPEAT = 2
DISABLED_DAYS = 30
# Which subscriber states a suppression moves on from; an unsubscribed one stays unsubscribed.
_ACTIVE = (SubscriberStatus.CONFIRMED.value, SubscriberStatus.PENDING.value)


def _address(email: str) -> str:
    try:
        return normalise_email(email)
    except InputError:
        # Removing or looking up an address stored before validation got stricter.
        return email.strip()


def suppression_reason(email: str, *, session: Session) -> str | None:
    """Return why an address is suppressed, or None when it may be mailed."""
    return suppressed(session, [_address(email)]).get(email_key(_address(email)))


def list_suppressions(*, session: Session, reason: str | None = None) -> list[Suppression]:
    """Return suppressed addresses, newest first; optionally those whose reason starts so."""
    query = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if reason:
        query = query.where(func.lower(Suppression.reason).startswith(reason.lower()))
    return list(session.scalars(query))


def add_suppression(
    email: str, reason: str = OPERATOR_REASON, *, session: Session
) -> tuple[Suppression, bool]:
    """Suppress an address; return its row and whether it is new (an old row keeps its reason)."""
    address = normalise_email(email)
    reason = " ".join(reason.split())[:MAX_REASON]
    if not reason:
        raise InputError("a suppression needs a reason")
    existing = _find(session, address)
    if existing is not None:
        return existing, False
    row = Suppression(email=address, reason=reason, created_at=utcnow())
    session.add(row)
    session.flush()
    return row, True


def remove_suppression(email: str, *, session: Session) -> Suppression:
    """Take an address off the list (it may be mailed again); raise NotFound if absent."""
    row = _find(session, _address(email))
    if row is None:
        raise NotFound(f"{email.strip()!r} is not suppressed")
    session.delete(row)
    session.flush()
    return row


def _find(session: Session, address: str) -> Suppression | None:
    key = email_key(address)
    query = select(Suppression).where(func.lower(Suppression.email).in_({key, key.lower()}))
    rows = [r for r in session.scalars(query.order_by(Suppression.id)) if email_key(r.email) == key]
    return rows[0] if rows else None


def suppression_to_dict(row: Suppression) -> dict[str, Any]:
    """Return a suppression as plain data for JSON output."""
    return {"email": row.email, "reason": row.reason, "created_at": row.created_at.isoformat()}


def check_test_recipient(email: str, *, session: Session, force: bool = False) -> None:
    """Refuse a test copy to a suppressed address unless forced."""
    reason = suppression_reason(email, session=session)
    if reason is not None and not force:
        raise InputError(f"{email.strip()} is suppressed ({reason}): add --force to send anyway")


# --- used by bounce processing and by the sender ---------------------------------------


def suppress(
    conn: Connection,
    email: str,
    reason: str,
    *,
    status: SubscriberStatus = SubscriberStatus.BOUNCED,
    now: datetime | None = None,
) -> bool:
    """Suppress an address and move its subscriber to `status`; True when newly suppressed."""
    now = now or utcnow()
    address = email.strip()
    _set_subscriber_status(conn, address, status, now)
    key = email_key(address)
    rows = conn.execute(
        select(Suppression.email).where(func.lower(Suppression.email).in_({key, key.lower()}))
    )
    if any(email_key(e) == key for (e,) in rows):
        return False
    conn.execute(
        insert(Suppression).values(email=address, reason=reason[:MAX_REASON], created_at=now)
    )
    return True


def _set_subscriber_status(
    conn: Connection, address: str, status: SubscriberStatus, now: datetime
) -> None:
    key = email_key(address)
    found = conn.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.status).where(
            func.lower(Subscriber.email).in_({key, key.lower()})
        )
    )
    ids = [i for i, e, s in found if email_key(e) == key and s in _ACTIVE]
    if not ids:
        return
    values: dict[str, Any] = {"status": status.value}
    if status == SubscriberStatus.UNSUBSCRIBED:
        values["unsubscribed_at"] = now
    conn.execute(update(Subscriber).where(Subscriber.id.in_(ids)).values(**values))


def suppress_after_permanent_failure(
    conn: Connection, failures: Iterable[tuple[int, str]]
) -> list[str]:
    """Record refusals of deliveries just marked failed; suppress where the address is gone.

    `failures` are (delivery id, server reply) pairs. A reply saying the address does not
    exist suppresses it; a security or policy refusal is recorded as blocked and suppresses
    nobody; a disabled mailbox suppresses once it has been reported again (see
    `repeatedly_disabled`); other replies and time-outs are left as they are.
    Returns the addresses newly suppressed.
    """
    verdicts = {d: (r, v) for d, r in failures if (v := smtp_reply_verdict(r)) and _recorded(v)}
    if not verdicts:
        return []
    rows = conn.execute(
        select(Delivery.id, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(verdicts))
    )
    now = utcnow()
    newly = []
    for delivery_id, email in rows:
        reply, verdict = verdicts[delivery_id]
        _record_smtp_event(conn, delivery_id, email, reply, verdict, now)
        if verdict.kind == reasons.HARD:
            reason = f"hard bounce (SMTP): {reply}"
        elif repeatedly_disabled(conn, email, now):
            reason = f"mailbox disabled, reported again (SMTP): {reply}"
        else:
            continue
        if suppress(conn, email, reason, now=now):
            newly.append(email)
    return newly


def _recorded(verdict: reasons.Verdict) -> bool:
    return verdict.kind in (reasons.HARD, reasons.BLOCKED) or (
        verdict.reason == reasons.MAILBOX_DISABLED
    )


def repeatedly_disabled(conn: Connection, email: str, now: datetime) -> bool:
    """Tell whether a mailbox was reported disabled often enough to treat it as gone.

    A mailbox is disabled for a while (unpaid, locked, on hold) and may come back; one still
    disabled on a later delivery within DISABLED_DAYS has been abandoned.
    """
    since = now - timedelta(days=DISABLED_DAYS)
    return count_events(conn, email, since, reason=reasons.MAILBOX_DISABLED) >= DISABLED_REPEAT


def count_events(
    conn: Connection,
    email: str,
    since: datetime,
    *,
    kind: str | None = None,
    reason: str | None = None,
) -> int:
    """Count an address's bounce events since a time, of one kind or reason."""
    key = email_key(email)
    query = select(BounceEvent.email).where(
        func.lower(BounceEvent.email).in_({key, key.lower()}), BounceEvent.created_at >= since
    )
    if kind is not None:
        query = query.where(BounceEvent.kind == kind)
    if reason is not None:
        query = query.where(BounceEvent.reason == reason)
    return sum(1 for (e,) in conn.execute(query) if email_key(e) == key)


def _record_smtp_event(
    conn: Connection,
    delivery_id: int,
    email: str,
    reply: str,
    verdict: reasons.Verdict,
    now: datetime,
) -> None:
    digest = fingerprint(f"smtp:{delivery_id}:{reply}".encode())
    seen = conn.execute(select(BounceEvent.id).where(BounceEvent.message_hash == digest)).first()
    if seen is not None:
        return
    conn.execute(
        insert(BounceEvent).values(
            email=email,
            kind=verdict.kind,
            status=verdict.status or _basic_code(reply),
            reason=verdict.reason,
            diagnostic=reply[:500],
            delivery_id=delivery_id,
            message_hash=digest,
            created_at=now,
        )
    )


def _basic_code(reply: str) -> str | None:
    return reply[:3] if reply[:3].isdigit() else None
