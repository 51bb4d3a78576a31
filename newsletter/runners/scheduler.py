"""APScheduler wiring: a fetch job on a cron line, a delivery tick, and a lease for one leader.

The jobs only trigger the service functions in `newsletter.runners.tick`; their state lives
in the database, so nothing is pickled and a restart catches up on whatever is owed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from newsletter.core.app import App
from newsletter.core.leases import default_worker_id, give_up_lease, lease_holder, take_lease
from newsletter.core.models import utcnow
from newsletter.core.runner import Runner, StopControl
from newsletter.delivery.transports import Transport
from newsletter.editions.schedule import ScheduleConfig
from newsletter.papers.fetch import check_cron
from newsletter.runners.tick import SCHEDULER_LEASE, run_due

log = logging.getLogger(__name__)

JOB_GRACE_SECONDS = 3600  # a job held up by a long send still runs (once) afterwards
STOP_WAIT_SECONDS = 120.0  # how long a stop waits for a running send to hand back its rows


class Scheduler(Runner):
    """Runs the jobs while it holds the scheduler lease; waits as a standby otherwise."""

    def __init__(
        self,
        app: App,
        *,
        config: ScheduleConfig | None = None,
        holder: str | None = None,
        transport: Transport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.app = app
        self.config = config or ScheduleConfig.from_settings(app.settings)
        for cron in self.config.fetch_crons:
            check_cron(cron)
        super().__init__(poll=self.renew_seconds)
        self.holder = holder or default_worker_id(app.settings.host_name)
        self.transport = transport
        self.clock = clock
        self._control = StopControl()  # one per term as leader: a lost lease stops its jobs
        self._aps: BlockingScheduler | None = None
        self._busy = threading.Semaphore(1)  # held while a job runs
        self._waiting_logged = False

    @property
    def renew_seconds(self) -> float:
        return self.config.lease_seconds / 3

    def work(self) -> bool:
        """Wait as a standby, or run the jobs while holding the lease (until stop or loss)."""
        if not self._try_lease():
            if not self._waiting_logged:
                log.info("standby: another scheduler holds the lease (%s)", self._holder())
                self._waiting_logged = True
            return False
        self._waiting_logged = False
        log.info("active: %s holds the scheduler lease", self.holder)
        self._run_jobs()
        return True

    def interrupt(self) -> None:
        """Stop the jobs: the send in flight finishes or hands back its rows."""
        log.info("stopping: finishing the send in flight")
        self._stop_jobs()

    def hand_back(self) -> None:
        """Release the scheduler lease."""
        if give_up_lease(self.app.sessions, SCHEDULER_LEASE, self.holder):
            log.info("released the scheduler lease")

    def _stop_jobs(self) -> None:
        self._control.stop()
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)

    def _run_jobs(self) -> None:
        self._control = StopControl()
        aps = BlockingScheduler(
            timezone="UTC",
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": JOB_GRACE_SECONDS,
            },
        )
        aps.add_listener(self._log_job, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        now = self.clock()
        aps.add_job(
            self._renew, IntervalTrigger(seconds=self.renew_seconds), id="lease", name="lease"
        )
        aps.add_job(
            self._tick,
            IntervalTrigger(seconds=self.config.tick_seconds),
            id="deliver",
            name="deliver",
            next_run_time=now,  # catch up on start
        )
        # One job per cron line: each fetch checks every source, and the ones whose line
        # did not fire (or whose day is fetched) are left alone.
        for number, cron in enumerate(self.config.fetch_crons):
            aps.add_job(
                self._fetch,
                CronTrigger.from_crontab(cron, timezone="UTC"),
                id=f"fetch-{number}",
                name="fetch",
            )
        self._aps = aps
        if self.stopping:
            return
        aps.start()  # blocks until stop() or a lost lease shuts it down
        self._aps = None
        # Wait for a running job to finish or hand back its rows before going on.
        if self._busy.acquire(timeout=STOP_WAIT_SECONDS):
            self._busy.release()
        else:
            log.warning("a job did not finish within %.0f s of the stop", STOP_WAIT_SECONDS)

    def _job(self, body: Callable[[], object]) -> object:
        with self._busy:
            if self.stopping or not self._renew():
                return None
            return body()

    def _tick(self) -> object:
        return self._job(
            lambda: run_due(
                self.app,
                self.clock(),
                config=self.config,
                transport=self.transport,
                control=self._control,
                holder=self.holder,
            )
        )

    def _fetch(self) -> object:
        # The fetch is part of every tick (retries, catch-up); the cron job makes it punctual.
        return self._tick()

    def _renew(self) -> bool:
        """Renew the lease; on losing it, stop the jobs and go back to standby."""
        if self._try_lease():
            return True
        log.warning("lost the scheduler lease to %s: back to standby", self._holder())
        self._stop_jobs()
        return False

    def _try_lease(self) -> bool:
        """Take or renew the lease (the one take/renew of `core.leases`)."""
        return (
            take_lease(self.app.sessions, SCHEDULER_LEASE, self.holder, self.config.lease_seconds)
            is None
        )

    def _holder(self) -> str | None:
        with self.app.reading() as session:
            return lease_holder(SCHEDULER_LEASE, session=session)

    def _log_job(self, event: JobExecutionEvent) -> None:
        if event.exception is not None:
            log.error("job %s failed: %s", event.job_id, event.exception, exc_info=event.exception)
        elif event.job_id != "lease" and event.retval is not None:
            log.info("job %s: %s", event.job_id, event.retval.line())
