"""The sending worker: drain owed deliveries of every edition until stopped.

Many workers, on one machine or many, share the work through the database: each claims rows
with a lease (on PostgreSQL with FOR UPDATE SKIP LOCKED), so no row goes to two of them, and
rows of a worker that died come back when its lease runs out.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select

from newsletter.core.app import App
from newsletter.core.errors import TransportError
from newsletter.core.models import Delivery, DeliveryStatus, utcnow
from newsletter.delivery.engine import SendSummary, release_dead_local_claims
from newsletter.delivery.service import edition_sender, options_from_settings
from newsletter.delivery.transports import make_transport

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


@dataclass
class WorkerReport:
    runs: int = 0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

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
    """Return the ids of editions that have rows to send now (pending and due, or abandoned)."""
    now = utcnow()
    with app.sessions() as session:
        due = (Delivery.status == DeliveryStatus.PENDING) & (
            Delivery.next_attempt_at.is_(None) | (Delivery.next_attempt_at <= now)
        )
        abandoned = (Delivery.status == DeliveryStatus.SENDING) & (Delivery.lease_until < now)
        query = select(Delivery.edition_id).where(due | abandoned).distinct()
        return list(session.scalars(query.order_by(Delivery.edition_id)))


def recover_dead_local_claims(app: App) -> int:
    """Hand back rows held by senders on this host that died (no need to wait for the lease)."""
    recovered = 0
    with app.engine.begin() as conn:
        editions = conn.scalars(
            select(Delivery.edition_id).where(Delivery.status == DeliveryStatus.SENDING).distinct()
        ).all()
        for edition_id in editions:
            recovered += release_dead_local_claims(conn, edition_id)
    return recovered


class Worker:
    """Loops: send what is owed, sleep a little, until stop() or, with once, nothing is owed."""

    def __init__(self, app: App, *, concurrency: int = 4, poll: float = POLL_SECONDS) -> None:
        self.app = app
        self.concurrency = concurrency
        self.poll = poll
        self.report = WorkerReport()
        self._stopped = threading.Event()
        self._current = None

    def stop(self, *_args: object) -> None:
        """Finish the messages in flight, hand the rest back, and return from run()."""
        self._stopped.set()
        if self._current is not None:
            self._current.stop()

    def run(self, *, once: bool = False) -> WorkerReport:
        spec = with_connections(self.app.settings.transport, self.concurrency)
        options = options_from_settings(self.app)
        while not self._stopped.is_set():
            progressed = recover_dead_local_claims(self.app) > 0
            for edition_id in editions_with_owed_rows(self.app):
                if self._stopped.is_set():
                    break
                progressed |= self._send(edition_id, spec, options)
            if once and not progressed:
                break
            if not progressed:
                self._stopped.wait(self.poll)
        return self.report

    def _send(self, edition_id: int, spec: str, options) -> bool:  # noqa: ANN001
        """Deliver what one edition owes; True when any row got a final answer."""
        sender = edition_sender(self.app, edition_id, options=options,
                                transport=make_transport(spec))  # fmt: skip
        self._current = sender
        try:
            summary = sender.run()
        except TransportError as exc:
            # The relay is down: everything stays owed; try again after a pause.
            log.error("edition %s: %s", edition_id, exc)
            self.report.errors.append(str(exc))
            return False
        finally:
            self._current = None
        self.report.add(summary)
        if summary.sent or summary.failed:
            log.info("edition %s: %s", edition_id, summary.line())
        return bool(summary.sent or summary.failed or summary.skipped)


def install_signal_handlers(worker: Worker) -> None:
    """Make SIGTERM and SIGINT stop the worker gracefully."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, worker.stop)
