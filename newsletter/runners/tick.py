"""The scheduler's tick: fetch what the sources owe, plan who is due, send what is owed.

What is due when is the editions stage's (`editions/schedule.py`); this module only
triggers it, under the scheduler lease, and reports what one run did.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from newsletter.core.app import App
from newsletter.core.leases import (
    default_worker_id,
    give_up_lease,
    lease_holder,
    take_lease,
)
from newsletter.core.runner import StopControl
from newsletter.delivery import guard
from newsletter.delivery.drain import drain_owed, paused_editions
from newsletter.delivery.service import options_from_settings
from newsletter.delivery.transports import Transport
from newsletter.editions.schedule import ScheduleConfig, due_now, plan_due
from newsletter.papers.fetch import FetchOutcome, run_scheduled_fetch

log = logging.getLogger(__name__)


def complaint_hold(app: App) -> str | None:
    """Return why no new edition may start: the last one sent drew too many complaints."""
    with app.engine.connect() as conn:
        settings = app.settings
        return guard.complaint_hold(
            conn, None, settings.complaint_rate_limit, min_count=settings.complaint_min_count
        )


def log_paused(app: App) -> list[str]:
    """Log each paused edition that still owes rows; return them as lines."""
    lines = [edition.line() for edition in paused_editions(app)]
    for line in lines:
        log.warning("%s; `newsletter resume --date` lifts it", line)
    return lines


# -- leases -----------------------------------------------------------------------------------

SCHEDULER_LEASE = "scheduler"
# A one-off run holds the lease this long: longer than any single run should take.
ONCE_LEASE_SECONDS = 900.0


# -- fetching ---------------------------------------------------------------------------------


def run_fetch(
    app: App, now: datetime, *, config: ScheduleConfig, holder: str
) -> list[FetchOutcome]:
    """Fetch each scheduled source's listing of the day its schedule last fired, once."""
    return run_scheduled_fetch(
        app,
        now,
        sources=config.sources,
        cron=config.fetch_cron,
        window=config.staleness,
        backoff_seconds=config.fetch_backoff_seconds,
        holder=holder,
    )


# -- one tick ---------------------------------------------------------------------------------


@dataclass
class TickReport:
    """What one run of the scheduler did."""

    now: datetime
    fetched: list[FetchOutcome] = field(default_factory=list)
    planned: int = 0
    stale: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    owed: int = 0
    error: str | None = None
    # Why no new edition started: the last one drew too many complaints.
    held: str | None = None
    paused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.status != "failed" for f in self.fetched)

    def line(self) -> str:
        fetched = "; ".join(f"{f.source} {f.day}: {f.status}" for f in self.fetched)
        text = (
            f"planned {self.planned}, sent {self.sent}, failed {self.failed}, "
            f"skipped {self.skipped}, stale {self.stale}, owed {self.owed}"
        )
        text = f"fetch {fetched}; {text}" if fetched else text
        if self.held:
            text += f"; held: {self.held}"
        text += "".join(f"; {line}" for line in self.paused)
        return f"{text}; error: {self.error}" if self.error else text

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ok"] = self.ok
        return data


def run_due(
    app: App,
    now: datetime,
    *,
    config: ScheduleConfig | None = None,
    transport: Transport | None = None,
    control: StopControl | None = None,
    holder: str | None = None,
    fetch: bool = True,
) -> TickReport:
    """Fetch what the schedule owes, plan whoever is due at `now`, and send what is owed."""
    config = config or ScheduleConfig.from_settings(app.settings)
    report = TickReport(now)
    if fetch and config.sources:
        holder = holder or default_worker_id(app.settings.host_name)
        report.fetched = run_fetch(app, now, config=config, holder=holder)
    options = options_from_settings(app)
    report.held = complaint_hold(app)
    if report.held:
        # Nothing new is planned either: workers would send what the tick planned.
        log.warning("no new edition starts: %s; `newsletter send --force` starts one", report.held)
    else:
        with app.transaction() as session:
            due = due_now(
                now, session=session, config=config, default_tz=app.settings.default_timezone
            )
            planned = plan_due(
                due, now, session=session, empty_policy=options.empty_policy,
                min_likes=app.settings.ranking_discovery_min_likes,
            )  # fmt: skip
        report.planned, report.stale = planned.planned, planned.stale
    report.paused = log_paused(app)
    control = control or StopControl()
    drained = drain_owed(
        app, options=options, transport=transport, attach=control.attach,
        stopped=lambda: control.stopped, started_only=report.held is not None,
    )  # fmt: skip
    summary, report.error = drained.total, drained.error
    report.sent, report.failed, report.skipped = summary.sent, summary.failed, summary.skipped
    report.owed = summary.owed
    return report


def run_once(
    app: App,
    now: datetime,
    *,
    holder: str | None = None,
    transport: Transport | None = None,
    control: StopControl | None = None,
) -> TickReport | None:
    """Run one tick under the scheduler lease; None when an active scheduler holds it."""
    holder = holder or default_worker_id(app.settings.host_name)
    config = ScheduleConfig.from_settings(app.settings)
    if take_lease(app.sessions, SCHEDULER_LEASE, holder, ONCE_LEASE_SECONDS) is not None:
        return None
    try:
        return run_due(app, now, config=config, transport=transport, control=control, holder=holder)
    finally:
        give_up_lease(app.sessions, SCHEDULER_LEASE, holder)


def active_holder(app: App) -> str | None:
    """Return who holds the scheduler lease now, if anyone."""
    with app.reading() as session:
        return lease_holder(SCHEDULER_LEASE, session=session)
