"""The sending worker: drain owed deliveries of every edition until stopped.

Many workers, on one machine or many, share the work through the database: each claims rows
with a short lease (on PostgreSQL with FOR UPDATE SKIP LOCKED) and renews it while it runs, so
no row goes to two of them, and rows of a worker that died come back within that lease
(at once when it ran on this host). Leases run on the database's clock; a worker that lost a
claim (stopped past its lease) sends none of the rows it lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select

from newsletter.core.app import App
from newsletter.core.errors import TransportError
from newsletter.core.leases import host_of
from newsletter.core.models import Edition
from newsletter.delivery import store
from newsletter.delivery.engine import SendOptions, SendSummary
from newsletter.delivery.service import edition_sender, options_from_settings
from newsletter.delivery.transports import make_transport
from newsletter.runners.base import Runner

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


@dataclass
class WorkerReport:
    runs: int = 0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    # The editions left alone because the deliverability guard paused them: date -> why.
    paused: dict[str, str] = field(default_factory=dict)

    def add(self, summary: SendSummary) -> None:
        self.runs += 1
        self.sent += summary.sent
        self.failed += summary.failed


def with_connections(spec: str, connections: int) -> str:
    """Return an smtp:// transport spec with its number of parallel connections set."""
    parts = urlsplit(spec)
    if parts.scheme not in ("smtp", "smtps"):
        return spec
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "connections"]
    query.append(("connections", str(connections)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def editions_with_owed_rows(app: App) -> list[int]:
    """Return the ids of editions that have rows owed now (see `store.owed_clause`)."""
    with app.engine.connect() as conn:
        return store.editions_with_owed(conn)


def paused_editions_with_owed_rows(app: App) -> dict[str, str]:
    """Return the listing date and pause reason of each paused edition that still owes rows."""
    with app.engine.connect() as conn:
        ids = store.editions_with_owed(conn, paused=True)
        rows = conn.execute(
            select(Edition.listing_date, Edition.pause_reason).where(Edition.id.in_(ids))
        )
        return {day.isoformat(): reason or "paused" for day, reason in rows}


def recover_dead_local_claims(app: App, here: str) -> int:
    """Hand back rows held by senders of host `here` that died (no need to wait for the lease)."""
    with app.engine.begin() as conn:
        return store.release_dead_claims(conn, here=here)


class Worker(Runner):
    """Sends what is owed, sleeps a little, until stopped or, with once, nothing is owed."""

    def __init__(self, app: App, *, concurrency: int = 4, poll: float = POLL_SECONDS) -> None:
        super().__init__(poll=poll)
        self.app = app
        self.concurrency = concurrency
        self.report = WorkerReport()
        self.once = False
        self._spec = with_connections(app.settings.transport, concurrency)
        self._options = options_from_settings(app)

    def run(self, *, once: bool = False) -> WorkerReport:  # type: ignore[override]
        """Drain owed deliveries until stopped (or, with once, until nothing is owed)."""
        self.once = once
        super().run()
        return self.report

    def work(self) -> bool:
        progressed = recover_dead_local_claims(self.app, host_of(self._options.worker_id)) > 0
        self._note_paused(paused_editions_with_owed_rows(self.app))
        for edition_id in editions_with_owed_rows(self.app):
            if self.stopping:
                break
            progressed |= self._send(edition_id, self._options)
        return progressed

    def finished(self, busy: bool) -> bool:
        return self.once and not busy

    def _note_paused(self, paused: dict[str, str]) -> None:
        """Log each edition the guard paused, once per worker."""
        for day, reason in paused.items():
            if day not in self.report.paused:
                log.warning("the %s edition is paused, not sent: %s", day, reason)
        self.report.paused.update(paused)

    def _send(self, edition_id: int, options: SendOptions) -> bool:
        """Deliver what one edition owes; True when any row got a final answer."""
        sender = edition_sender(self.app, edition_id, options=options,
                                transport=make_transport(self._spec))  # fmt: skip
        self.control.attach(sender)
        try:
            summary = sender.run()
        except TransportError as exc:
            # The relay is down: everything stays owed; try again after a pause.
            log.error("edition %s: %s", edition_id, exc)
            self.report.errors.append(str(exc))
            return False
        finally:
            self.control.attach(None)
        self.report.add(summary)
        if summary.paused:
            self.report.paused[sender.edition.listing_date.isoformat()] = summary.paused
        if summary.sent or summary.failed:
            log.info("edition %s: %s", edition_id, summary.line())
        return bool(summary.sent or summary.failed or summary.skipped)
