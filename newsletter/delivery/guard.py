"""The deliverability guard: pause an edition whose first answers put the domain at risk.

An edition's *answers* are each delivery's final SMTP reply (sent or failed) plus each bounce
or complaint that came back for a sent one. Over its first `guard_window` answers (counted
since the last resume), more than `guard_address_failure_rate` of address failures (5.1.x
refusals and hard bounces: a bad list import) or more than `guard_block_rate` of policy
blocks (5.7.x refusals and blocked bounces: the relay or the receivers distrust us) pause it.
A paused edition's owed rows stay owed and no sender claims them until an admin resumes it;
the guard then judges only the answers that come after the resume. Once a window has filled
without a pause, the guard stops counting for that edition, so a long send pays nothing.

Apart from pauses: an edition that has not started is held while the last edition sent drew
more complaints than `complaint_rate_limit` and at least `complaint_min_count` of them; only
an admin's --force starts it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, distinct, exists, func, select, update

from newsletter.bounces import reasons
from newsletter.core.config import Settings, default
from newsletter.core.models import BounceEvent, Delivery, DeliveryStatus, Edition, utcnow

SENT, FAILED = DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value
UNFINISHED = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
COMPLAINT = "complaint"
REASON_MAX = 300  # characters of Edition.pause_reason


@dataclass(frozen=True)
class GuardLimits:
    """The guard's thresholds (`guard_*` settings)."""

    window: int = default("guard_window")
    address_failure_rate: float = default("guard_address_failure_rate")
    block_rate: float = default("guard_block_rate")

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardLimits:
        """Read guard_window, guard_address_failure_rate and guard_block_rate."""
        return cls(
            settings.guard_window,
            settings.guard_address_failure_rate,
            settings.guard_block_rate,
        )


@dataclass(frozen=True)
class Answers:
    """What an edition's answers said so far: how many, and how many were alarms."""

    answers: int = 0
    address_failures: int = 0
    blocks: int = 0

    def since(self, baseline: Answers) -> Answers:
        """Return the answers that came after `baseline` (never below zero)."""
        pairs = zip(_values(self), _values(baseline), strict=True)
        return Answers(*(max(now - then, 0) for now, then in pairs))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _values(answers: Answers) -> tuple[int, int, int]:
    return answers.answers, answers.address_failures, answers.blocks


def _more_than(count: int, rate: float, total: int) -> bool:
    """Tell whether count exceeds rate of total, exactly (0.29 * 100 is not 28.99...)."""
    return count > Fraction(str(rate)) * total


def judge(seen: Answers, owed: int, limits: GuardLimits) -> str | None:
    """Return why an edition must pause, or None while its answers are within the limits.

    The window is the first `limits.window` answers, or every answer of a smaller edition
    (`owed` counts the rows still to answer). An alarm count above the limit's share of the
    window pauses at once: later answers cannot bring it back under. A check that lands a
    little past the window (replies are recorded in groups) judges all it counted.
    """
    window = max(min(limits.window, seen.answers + owed), seen.answers)
    for count, rate, what in (
        (seen.address_failures, limits.address_failure_rate, "address failures"),
        (seen.blocks, limits.block_rate, "policy blocks"),
    ):
        if count and _more_than(count, rate, window):
            share = count / max(seen.answers, 1)
            return (
                f"{count} {what} in {seen.answers} answers ({share:.1%}): more than "
                f"{rate:.0%} of the first {window}"
            )
    return None


def window_full(seen: Answers, limits: GuardLimits) -> bool:
    """Tell whether the answers fill the guard's window (it then stops judging)."""
    return seen.answers >= limits.window


# -- counting ---------------------------------------------------------------------------------


def count_answers(conn: Connection, edition_id: int, *, cap: int) -> tuple[Answers, int]:
    """Count the edition's answers and alarms, and its rows still to answer (at most `cap`)."""
    replies = conn.scalar(
        select(func.count()).where(
            Delivery.edition_id == edition_id, Delivery.status.in_([SENT, FAILED])
        )
    )
    # Counting the unfinished rows stops at the cap: a million owed rows cost what a window does.
    unfinished = (
        select(Delivery.id)
        .where(Delivery.edition_id == edition_id, Delivery.status.in_(UNFINISHED))
        .limit(cap)
        .subquery()
    )
    owed = conn.scalar(select(func.count()).select_from(unfinished)) or 0
    later = address = blocks = 0
    for kind, status, count in conn.execute(
        select(BounceEvent.kind, Delivery.status, func.count(distinct(BounceEvent.delivery_id)))
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(Delivery.edition_id == edition_id)
        .group_by(BounceEvent.kind, Delivery.status)
    ):
        # A refusal is the failed row's own reply; a report about a sent row is a new answer.
        if status == SENT:
            later += count
        if kind == reasons.HARD:
            address += count
        elif kind == reasons.BLOCKED:
            blocks += count
    return Answers((replies or 0) + later, address, blocks), owed


# -- the pause --------------------------------------------------------------------------------


def check_edition(
    conn: Connection, edition_id: int, limits: GuardLimits, *, now: datetime | None = None
) -> str | None:
    """Judge the edition's answers, pausing it when they say so; return why it is paused."""
    state = conn.execute(
        select(Edition.paused_at, Edition.pause_reason, Edition.guard_baseline,
               Edition.guard_cleared_at).where(Edition.id == edition_id)
    ).one()  # fmt: skip
    if state.paused_at is not None:
        return state.pause_reason or "paused"
    if state.guard_cleared_at is not None:
        return None
    counts, owed = count_answers(conn, edition_id, cap=limits.window)
    seen = counts.since(Answers(**(state.guard_baseline or {})))
    now = now or utcnow()
    reason = judge(seen, owed, limits)
    if reason is not None:
        conn.execute(
            update(Edition)
            .where(Edition.id == edition_id, Edition.paused_at.is_(None))
            .values(paused_at=now, pause_reason=reason[:REASON_MAX])
        )
        # Another sender may have paused it first: its reason stands.
        return conn.scalar(select(Edition.pause_reason).where(Edition.id == edition_id))
    if window_full(seen, limits):
        conn.execute(update(Edition).where(Edition.id == edition_id).values(guard_cleared_at=now))
    return None


def judging(conn: Connection, edition_id: int) -> bool:
    """Tell whether the guard still judges the edition: neither paused nor cleared."""
    row = conn.execute(
        select(Edition.paused_at, Edition.guard_cleared_at).where(Edition.id == edition_id)
    ).one()
    return row.paused_at is None and row.guard_cleared_at is None


def pause_reason(conn: Connection, edition_id: int) -> str | None:
    """Return why the edition is paused, or None when it is not."""
    row = conn.execute(
        select(Edition.paused_at, Edition.pause_reason).where(Edition.id == edition_id)
    ).first()
    if row is None or row.paused_at is None:
        return None
    return row.pause_reason or "paused"


def resume_edition(conn: Connection, edition_id: int) -> str | None:
    """Lift the edition's pause; later judge only answers from now. Return the lifted reason."""
    reason = pause_reason(conn, edition_id)
    if reason is None:
        return None
    counts, _ = count_answers(conn, edition_id, cap=0)
    conn.execute(
        update(Edition)
        .where(Edition.id == edition_id)
        .values(
            paused_at=None,
            pause_reason=None,
            guard_baseline=counts.as_dict(),
            guard_cleared_at=None,
        )
    )
    return reason


def guard_status(conn: Connection, edition_id: int, limits: GuardLimits) -> dict[str, Any]:
    """Return the edition's pause and the answers the guard judges, with their rates."""
    state = conn.execute(
        select(Edition.paused_at, Edition.pause_reason, Edition.guard_baseline,
               Edition.guard_cleared_at).where(Edition.id == edition_id)
    ).one()  # fmt: skip
    counts, _ = count_answers(conn, edition_id, cap=0)
    seen = counts.since(Answers(**(state.guard_baseline or {})))
    total = max(seen.answers, 1)
    return {
        "paused": state.paused_at is not None,
        "paused_at": state.paused_at,
        "reason": state.pause_reason if state.paused_at is not None else None,
        "resumed": state.guard_baseline is not None,
        "cleared": state.guard_cleared_at is not None,
        "window": limits.window,
        **seen.as_dict(),
        "address_failure_rate": seen.address_failures / total,
        "block_rate": seen.blocks / total,
    }


# -- complaints -------------------------------------------------------------------------------


def edition_started(conn: Connection, edition_id: int) -> bool:
    """Tell whether any of the edition's deliveries has been answered."""
    query = select(Delivery.id).where(
        Delivery.edition_id == edition_id, Delivery.status.in_([SENT, FAILED])
    )
    return conn.execute(query.limit(1)).first() is not None


def complaint_hold(
    conn: Connection, edition_id: int | None, limit: float, *, min_count: int = 1
) -> str | None:
    """Return why starting an edition needs --force: the last edition drew too many complaints.

    Too many is more than `limit` of its messages and at least `min_count`: on a small list
    one reader alone is a large share, and must not stop every later edition.
    An edition that has started goes on; `edition_id` None asks about whichever comes next.
    """
    if edition_id is not None and edition_started(conn, edition_id):
        return None
    last = _last_sent_edition(conn, edition_id)
    if last is None:
        return None
    attempted = conn.scalar(
        select(func.count()).where(
            Delivery.edition_id == last.id, Delivery.status.in_([SENT, FAILED])
        )
    )
    complaints = (
        conn.scalar(
            select(func.count(distinct(BounceEvent.delivery_id)))
            .join(Delivery, Delivery.id == BounceEvent.delivery_id)
            .where(Delivery.edition_id == last.id, BounceEvent.kind == COMPLAINT)
        )
        or 0
    )
    if not attempted or complaints < min_count or not _more_than(complaints, limit, attempted):
        return None
    return (
        f"the {last.listing_date} edition drew {complaints} complaints in {attempted} messages "
        f"({complaints / attempted:.2%}), above complaint_rate_limit {limit:.1%} "
        f"(and at least complaint_min_count {min_count})"
    )


def _last_sent_edition(conn: Connection, other_than: int | None) -> Any:
    """Return (id, listing_date) of the newest edition with a sent delivery, but `other_than`."""
    sent = exists().where(Delivery.edition_id == Edition.id, Delivery.status == SENT)
    query = select(Edition.id, Edition.listing_date).where(sent)
    if other_than is not None:
        query = query.where(Edition.id != other_than)
    return conn.execute(
        query.order_by(Edition.listing_date.desc(), Edition.id.desc()).limit(1)
    ).first()
