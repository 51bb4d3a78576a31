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

from newsletter.core.app import App
from newsletter.core.runner import Runner
from newsletter.delivery.drain import PausedEdition, drain_owed, paused_editions
from newsletter.delivery.recorder import SendSummary
from newsletter.delivery.service import options_from_settings
from newsletter.delivery.transports import make_transport

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

    # A Runner's run returns nothing; the worker's returns its report.
    def run(self, *, once: bool = False) -> WorkerReport:  # type: ignore[override]
        """Drain owed deliveries until stopped (or, with once, until nothing is owed)."""
        self.once = once
        super().run()
        return self.report

    def work(self) -> bool:
        self._note_paused(paused_editions(self.app))
        drained = drain_owed(
            self.app, options=self._options, transport=make_transport(self._spec),
            attach=self.control.attach, stopped=lambda: self.stopping,
        )  # fmt: skip
        self.report.runs += drained.editions
        self.report.add(drained.total)
        if drained.error is not None:
            # The relay is down: everything stays owed; try again after a pause.
            self.report.errors.append(drained.error)
            return False
        total = drained.total
        return bool(drained.released or total.sent or total.failed or total.skipped)

    def finished(self, busy: bool) -> bool:
        return self.once and not busy

    def _note_paused(self, paused: list[PausedEdition]) -> None:
        """Log each edition the guard paused, once per worker."""
        for edition in paused:
            day = edition.listing_date.isoformat()
            if day not in self.report.paused:
                log.warning("%s", edition.line())
            self.report.paused[day] = edition.reason
