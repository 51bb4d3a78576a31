"""Refusals during a send, read like returned mail: recorded, and suppressing where due.

A 5xx reply to a recipient is classified by the same rules as a bounce (see `reasons`): an
address that does not exist is suppressed at once; a security or policy refusal is recorded
as blocked and suppresses nobody; a disabled mailbox suppresses once it is reported again.
Functions take the caller's connection and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select

from newsletter.audience.suppressions import suppress
from newsletter.audience.validation import email_key
from newsletter.bounces import reasons
from newsletter.bounces.classify import fingerprint, smtp_reply_verdict
from newsletter.core.models import BounceEvent, Delivery, Subscriber, utcnow

# A disabled mailbox reported this many times within this many days is treated as gone.
DISABLED_REPEAT = 2
DISABLED_DAYS = 30


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
