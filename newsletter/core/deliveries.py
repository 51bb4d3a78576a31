"""The delivery store: the one module that writes delivery rows.

Every statement that plans, skips, claims, renews, releases, records and deletes deliveries
is here; planning, the schedule's stale skips, the sign-up flow and the sender call it.

The crash-safety contract reads here. A row is *owed* when it is pending and due, or when it is
being sent under a claim that ran out (its sender died). A sender claims owed rows (status
`sending`, its name in `claimed_by`, a short lease in `lease_until`) before it builds their
messages, renews the lease of everything it holds while it runs, and records each reply only
for rows it still holds. Every lease is reckoned on the database's clock (`db_now`), never a
sender's own, so a sender whose clock runs ahead cannot take rows from a live one. Rows of a
sender that stopped beating come back when their lease ends; rows of a sender of this host
that is gone come back at once. A renewal names the rows the sender still holds: one that
lost some (it was stopped past its lease) learns which, and sends none of them. Nobody claims
the rows of an edition the deliverability guard paused (see `guard`): they stay owed until it
is resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    SQLColumnExpression,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from newsletter.core.db import db_now
from newsletter.core.leases import holder_is_dead_here
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    Subscription,
)

SENT, PENDING, SENDING, FAILED, SKIPPED = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.PENDING.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
)
REPLY_MAX = 500  # characters of a server's reply kept on the row


class ClaimedDelivery(NamedTuple):
    """A delivery row this process claimed, with what its message needs of the subscriber."""

    key: int  # the delivery's id
    attempts: int  # this one included
    subscriber_id: int
    email: str
    name: str
    max_papers: int
    topic_ids: tuple[int, ...]
    link_key: str


# -- what is owed -----------------------------------------------------------------------------


def owed_clause(now: datetime) -> ColumnElement[bool]:
    """Select the rows a sender may claim at `now` (the database's time, see `db_now`).

    Owed: pending and due, or claimed under a lapsed lease.
    """
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    return or_(
        and_(Delivery.status == PENDING, due),
        # A live sender renews its lease; one whose lease ran out has stopped.
        and_(Delivery.status == SENDING, Delivery.lease_until < now),
    )


def editions_with_owed(conn: Connection, *, paused: bool = False) -> list[int]:
    """Return the ids of the editions with rows owed now, lowest first (paused ones, or not)."""
    query = select(Delivery.edition_id).where(owed_clause(db_now(conn))).distinct()
    query = query.where(_paused(Delivery.edition_id) if paused else ~_paused(Delivery.edition_id))
    return list(conn.scalars(query.order_by(Delivery.edition_id)))


def _paused(edition_id: SQLColumnExpression[int] | int) -> ColumnElement[bool]:
    """Select rows of an edition the deliverability guard paused."""
    return exists().where(Edition.id == edition_id, Edition.paused_at.is_not(None))


def count_unfinished(conn: Connection, edition_id: int) -> int:
    """Count the edition's rows without a final status (owed now, later, or being sent)."""
    query = (
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_([PENDING, SENDING]))
    )
    return conn.scalar(query) or 0


def seconds_to_next_retry(conn: Connection, edition_id: int) -> float | None:
    """Return how long until the edition's earliest pending retry falls due, if any is pending."""
    due = conn.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.edition_id == edition_id, Delivery.status == PENDING
        )
    )
    return None if due is None else (due - db_now(conn)).total_seconds()


# -- claiming ---------------------------------------------------------------------------------


def claim_deliveries(
    conn: Connection, edition_id: int, *, worker: str, limit: int, lease_seconds: float
) -> list[tuple[int, int, int]]:
    """Claim up to `limit` owed rows; return (delivery id, subscriber id, attempt number)."""
    now = db_now(conn)
    ids = (
        select(Delivery.id)
        # A paused edition is claimed by nobody, whatever a sender read before the pause.
        .where(Delivery.edition_id == edition_id, owed_clause(now), ~_paused(edition_id))
        .order_by(Delivery.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(ids.scalar_subquery()))
        .values(
            status=SENDING,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=worker,
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.attempts)
    )
    rows = conn.execute(stmt).all()
    return sorted((r[0], r[1], r[2]) for r in rows)


def load_claimed(
    conn: Connection, claimed: Sequence[tuple[int, int, int]]
) -> tuple[list[ClaimedDelivery], list[int]]:
    """Join claimed rows to their subscribers; also return the ids of rows whose reader is gone."""
    people = load_recipients(conn, [c[1] for c in claimed])
    rows = [
        ClaimedDelivery(delivery_id, attempts, subscriber_id, *people[subscriber_id])
        for delivery_id, subscriber_id, attempts in claimed
        if subscriber_id in people
    ]
    missing = [c[0] for c in claimed if c[1] not in people]
    return rows, missing


def load_recipients(
    conn: Connection, subscriber_ids: list[int]
) -> dict[int, tuple[str, str, int, tuple[int, ...], str]]:
    """Load (email, name, max papers, topic ids, link key) for each subscriber id."""
    rows = conn.execute(
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.max_papers,
            Subscriber.link_key,
        ).where(Subscriber.id.in_(subscriber_ids))
    ).all()
    topics: dict[int, list[int]] = {sid: [] for sid in subscriber_ids}
    for sid, tid in conn.execute(
        select(Subscription.subscriber_id, Subscription.topic_id).where(
            Subscription.subscriber_id.in_(subscriber_ids)
        )
    ):
        topics[sid].append(tid)
    return {r[0]: (r[1], r[2] or "", r[3], tuple(sorted(topics[r[0]])), r[4]) for r in rows}


def renew_claims(conn: Connection, *, worker: str, lease_seconds: float) -> set[int]:
    """Extend the lease of every row this worker is sending; return the ids it still holds."""
    stmt = (
        update(Delivery)
        .where(Delivery.claimed_by == worker, Delivery.status == SENDING)
        .values(lease_until=db_now(conn) + timedelta(seconds=lease_seconds))
        .returning(Delivery.id)
    )
    return set(conn.scalars(stmt))


def release_claims(conn: Connection, *, worker: str, keep: set[int] | None = None) -> int:
    """Give rows this worker claimed but did not send back to the pending pool."""
    stmt = update(Delivery).where(Delivery.claimed_by == worker, Delivery.status == SENDING)
    if keep:
        stmt = stmt.where(Delivery.id.not_in(sorted(keep)))
    stmt = stmt.values(
        status=PENDING,
        lease_until=None,
        claimed_by=None,
        attempts=func.max(Delivery.attempts - 1, 0)
        if conn.dialect.name == "sqlite"
        else func.greatest(Delivery.attempts - 1, 0),
    )
    return conn.execute(stmt).rowcount or 0


def release_dead_claims(conn: Connection, *, here: str, edition_id: int | None = None) -> int:
    """Hand back rows claimed by senders of host `here` that no longer run (zombies included).

    Rows of senders elsewhere come back when their lease runs out.
    """
    query = select(Delivery.claimed_by).where(Delivery.status == SENDING).distinct()
    if edition_id is not None:
        query = query.where(Delivery.edition_id == edition_id)
    released = 0
    for worker in conn.scalars(query).all():
        if not worker or not holder_is_dead_here(worker, here):
            continue
        stmt = (
            update(Delivery)
            .where(Delivery.claimed_by == worker, Delivery.status == SENDING)
            .values(status=PENDING, lease_until=None, claimed_by=None)
        )
        released += conn.execute(stmt).rowcount or 0
    return released


# -- recording replies ------------------------------------------------------------------------

# Only the claimant records a row, and only while it still holds it.
_HELD = and_(
    Delivery.id == bindparam("b_id"),
    Delivery.claimed_by == bindparam("b_worker"),
    Delivery.status == SENDING,
)
_MARK_SENT = (
    update(Delivery)
    .where(_HELD)
    .values(
        status=SENT,
        sent_at=bindparam("b_now"),
        last_reply=bindparam("b_reply"),
        message_id=bindparam("b_mid"),
        paper_ids=bindparam("b_papers", type_=Delivery.paper_ids.type),
        lease_until=None,
        next_attempt_at=None,
    )
)
_MARK_FAILED = (
    update(Delivery)
    .where(_HELD)
    .values(status=FAILED, last_reply=bindparam("b_reply"), lease_until=None)
)
_MARK_RETRY = (
    update(Delivery)
    .where(_HELD)
    .values(
        status=PENDING,
        last_reply=bindparam("b_reply"),
        next_attempt_at=bindparam("b_next"),
        lease_until=None,
        claimed_by=None,
    )
)
_MARK_SKIPPED = (
    update(Delivery)
    .where(_HELD)
    .values(status=SKIPPED, skip_reason=bindparam("b_reply"), lease_until=None)
)

Params = list[dict[str, Any]]


def trim_reply(reply: str) -> str:
    """Return a server reply as one line of at most REPLY_MAX characters."""
    return reply.replace("\r", " ").replace("\n", " ")[:REPLY_MAX]


def record_results(
    conn: Connection, *, sent: Params, failed: Params, retry: Params, skipped: Params
) -> None:
    """Record replies (parameters b_id, b_worker, b_reply, and b_now/b_mid/b_papers or b_next)."""
    for stmt, params in (
        (_MARK_SENT, sent),
        (_MARK_FAILED, failed),
        (_MARK_RETRY, retry),
        (_MARK_SKIPPED, skipped),
    ):
        if params:
            conn.execute(stmt, params)


# -- planning and a subscriber's rows ---------------------------------------------------------

PLANNED_COLUMNS = ("edition_id", "subscriber_id", "status", "attempts", "skip_reason", "created_at")


def insert_planned(session: Session, rows: Select[*tuple[Any, ...]]) -> int:
    """Insert the rows a SELECT gives, in PLANNED_COLUMNS' order; return how many."""
    stmt = insert(Delivery).from_select(list(PLANNED_COLUMNS), rows)
    # An INSERT ... SELECT only reports its row count when asked to keep it.
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True))
    return max(result.rowcount or 0, 0)


def skip_pending_of(subscriber_id: int, reason: str, *, session: Session) -> None:
    """Record a subscriber's pending rows as skipped (they unsubscribed): never sent."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == PENDING)
        .values(status=SKIPPED, skip_reason=reason)
    )


def delete_of(subscriber_ids: Sequence[int], *, session: Session) -> None:
    """Delete every delivery row of these subscribers (their data is erased)."""
    session.execute(delete(Delivery).where(Delivery.subscriber_id.in_(list(subscriber_ids))))
