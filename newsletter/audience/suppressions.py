"""The suppression list: addresses never mailed again, with the reason and the time.

Addresses are matched as subscribers are (ASCII case folded, see validation.email_key), so
`Gone@Example.org` bounced means `gone@example.org` is never mailed either. Functions take
the caller's session or connection and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.orm import Session

from newsletter.audience.subscribers import suppressed
from newsletter.audience.validation import email_key, normalise_email
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import (
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)

MAX_REASON = 200
OPERATOR_REASON = "operator"
COMPLAINT_REASON = "complaint"
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
