"""Sending what every edition owes: the one loop the worker and the scheduler's tick share.

Rows of a sender of this host that died are owed again at once; then each edition that owes
rows (oldest first, paused ones left alone) is delivered by its own sender. The relay being
down ends the pass: every row stays owed for the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

from newsletter.core import deliveries
from newsletter.core.app import App
from newsletter.core.errors import TransportError
from newsletter.core.leases import host_of
from newsletter.core.models import Edition, EditionKind
from newsletter.core.runner import Stoppable
from newsletter.delivery import guard
from newsletter.delivery.engine import SendOptions
from newsletter.delivery.recorder import SendSummary
from newsletter.delivery.service import edition_sender
from newsletter.delivery.transports import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PausedEdition:
    """An edition the deliverability guard paused while it still owes rows."""

    kind: EditionKind
    listing_date: date
    reason: str

    def line(self) -> str:
        return f"the {self.kind} edition of {self.listing_date} is paused: {self.reason}"


@dataclass
class Drained:
    """What one pass over the owed rows did."""

    total: SendSummary = field(default_factory=SendSummary)
    editions: int = 0  # editions a sender ran for
    released: int = 0  # rows of dead senders of this host made owed again
    error: str | None = None  # the transport error that ended the pass


def paused_editions(app: App) -> list[PausedEdition]:
    """Return the paused editions that still owe rows, oldest first."""
    with app.engine.connect() as conn:
        ids = deliveries.editions_with_owed(conn, paused=True)
        rows = conn.execute(
            select(Edition.kind, Edition.listing_date, Edition.pause_reason)
            .where(Edition.id.in_(ids))
            .order_by(Edition.listing_date, Edition.id)
        ).all()
    return [PausedEdition(kind, day, reason or "paused") for kind, day, reason in rows]


def owed_editions(app: App, *, started_only: bool = False) -> list[int]:
    """Return the ids of the editions owing rows now, oldest first (`deliveries.owed_clause`).

    With started_only, only editions that have begun sending: a complaint hold lets those
    finish while no new one starts.
    """
    with app.engine.connect() as conn:
        ids = deliveries.editions_with_owed(conn)
        ordered = conn.scalars(
            select(Edition.id).where(Edition.id.in_(ids)).order_by(Edition.listing_date, Edition.id)
        ).all()
        return [e for e in ordered if not started_only or guard.edition_started(conn, e)]


def release_dead_local_claims(app: App, worker_id: str) -> int:
    """Make the rows of senders of this host that died owed again, without waiting."""
    with app.engine.begin() as conn:
        return deliveries.release_dead_claims(conn, here=host_of(worker_id))


def drain_owed(
    app: App,
    *,
    options: SendOptions,
    transport: Transport | None = None,
    attach: Callable[[Stoppable | None], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
    started_only: bool = False,
) -> Drained:
    """Deliver what every edition owes, oldest first, until done, stopped or the relay fails.

    `attach` is told of each running sender (then None), so that a stop reaches it.
    """
    drained = Drained(released=release_dead_local_claims(app, options.worker_id))
    if drained.released:
        log.warning("took back %d rows of a sender of this host that died", drained.released)
    for edition_id in owed_editions(app, started_only=started_only):
        if stopped():
            break
        sender = edition_sender(app, edition_id, options=options, transport=transport)
        if attach is not None:
            attach(sender)
        try:
            summary = sender.run()
        except TransportError as exc:
            day = sender.edition.listing_date
            log.error("sending the %s edition of %s failed: %s", sender.edition.kind, day, exc)
            drained.error = str(exc)
            break
        finally:
            if attach is not None:
                attach(None)
        drained.editions += 1
        drained.total.add(summary)
        if summary.sent or summary.failed:
            log.info("edition %s: %s", edition_id, summary.line())
    return drained
