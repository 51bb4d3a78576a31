"""Sending deliveries: effectively once, crash-safe, fast (the SQL lives in `store`).

A row is claimed (status `sending`, with a short lease renewed by a heartbeat while the run
lasts) before its message is built and sent, and is recorded as soon as the transport
answers. Before each message the sender checks that it still holds the row (see `claims`):
once its lease may have run out it renews first, and it never sends a row that another
sender took meanwhile. Each connection sends the next message while its last result is
committed, but holds back the end of its data until that commit is done (and the row is
still ours), so a crash can double at most one message per connection. Results are committed
in groups (whatever arrived while the previous commit ran). Large runs build their messages
in a second process (see `builder`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from newsletter.core import deliveries
from newsletter.core.config import Settings, default
from newsletter.core.db import database_error, read_only_engine
from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.errors import NewsletterError, TransportError
from newsletter.core.leases import Heartbeat, default_worker_id, host_of
from newsletter.core.models import Edition
from newsletter.delivery import guard
from newsletter.delivery.builder import BuilderFailed, BuilderProcess, PreparerFactory, usable_cores
from newsletter.delivery.claims import HeldClaims
from newsletter.delivery.compose import Built, MessagePreparer, NotBuilt, Prepared, build_rows
from newsletter.delivery.guard import GuardLimits
from newsletter.delivery.recorder import Recorder, SendSummary, SkipResult, capped_backoff
from newsletter.delivery.transports import Outcome, SendResult, Transport, TransportUnavailable

log = logging.getLogger(__name__)

PREPARE_SLICE = 50  # messages built per step; ~40 KB each, so little waits in memory
# The guard judges about this many times over its window: a pause lands within a fiftieth of
# it, and a count costs little beside the window's sends.
JUDGE_STEPS = 50
NOTHING_MATCHED = "no new paper matched the topics"

# How long a claim lasts unless its sender renews it: the rows of a sender that died come
# back this long after its last heartbeat.


@dataclass(frozen=True)
class SendOptions:
    worker_id: str = field(default_factory=default_worker_id)
    batch_size: int = default("send_batch_size")
    # Renewed every third of it while the run lasts.
    lease_seconds: float = default("claim_lease_seconds")
    max_attempts: int = default("max_attempts")
    backoff_base: float = default("retry_base_seconds")  # before the first retry; doubles
    backoff_max: float = default("retry_max_seconds")
    max_wait: float = default("retry_wait_seconds")  # a run's wait for retries not yet due
    limit: int | None = None
    empty_policy: str = default("empty_policy")
    # Messages owed from which a run builds them in a process of its own (0: never).
    build_process_from: int = default("build_process_from")
    guard: GuardLimits | None = None  # None: no deliverability guard (previews, tests)


ProgressCallback = Callable[[SendSummary], None]


def backoff_delay(attempt: int, options: SendOptions) -> float:
    """Exponential backoff with full jitter in its upper half, capped."""
    return capped_backoff(attempt, options.backoff_base, options.backoff_max)


# A built slice: the messages to send, and the rows that have none.
_Slice = tuple[list[Prepared], list[SkipResult]]


def _sorted(rows: Sequence[ClaimedDelivery], built: Sequence[Built]) -> _Slice:
    """Sort a built slice into messages to send and rows to record without one."""
    ready: list[Prepared] = []
    skipped: list[SkipResult] = []
    for row, one in zip(rows, built, strict=True):
        if one is None:
            skipped.append(SkipResult(row.key, NOTHING_MATCHED))
        elif isinstance(one, NotBuilt):
            skipped.append(SkipResult(one.key, f"not sent: {one.reason}", Outcome.FAILED))
        else:
            ready.append(one)
    return ready, skipped


class EditionSender:
    """Sends one edition's owed deliveries through a transport."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        edition: Edition,
        transport: Transport,
        preparer: MessagePreparer,
        options: SendOptions,
        progress: ProgressCallback | None = None,
        build_apart: PreparerFactory | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.edition = edition
        self.transport = transport
        self.preparer = preparer
        self.options = options
        self.progress = progress
        # Makes the preparer of a builder process (picklable); None: build in this one.
        self.build_apart = build_apart
        self.builder_wait = 0.0  # how long a batch may wait for the builder to be ready
        self._builder: BuilderProcess | None = None
        self.summary = SendSummary()
        self._stop = False
        self._fatal: BaseException | None = None
        self._claimed = 0
        self._claims = HeldClaims(options.lease_seconds)
        # Sent but not yet recorded: never handed back, since they may have been delivered.
        self._unrecorded: set[int] = set()
        # Replies recorded since the guard last judged; None once its window is behind us.
        self._unjudged: int | None = 0 if options.guard is not None else None

    def stop(self) -> None:
        """Ask the run to finish what is in flight and give back the rest."""
        self._stop = True

    def pause(self, reason: str) -> None:
        """Stop claiming and sending because the guard paused the edition; the rest stays owed."""
        if self.summary.paused is None:
            log.error("the %s edition is paused: %s", self.edition.listing_date, reason)
        self.summary.paused = reason
        self._stop = True

    def run(self) -> SendSummary:
        """Send until nothing is owed (or the limit, a stop, or a fatal transport error)."""
        started = time.perf_counter()
        worker = self.options.worker_id
        with self.engine.begin() as conn:
            recovered = deliveries.release_dead_claims(
                conn, here=host_of(worker), edition_id=self.edition.id
            )
        if recovered:
            log.warning("took back %d rows claimed by a sender that died", recovered)
        try:
            self._builder = self._start_builder()
            with Heartbeat(f"claims-{worker}", self.options.lease_seconds / 3, self._renew_claims):
                asyncio.run(self._run())
        # The relay could not even be reached, or the database refused a claim (locked, full).
        except (TransportUnavailable, OperationalError) as exc:
            self._fatal = exc
        finally:
            if self._builder is not None:
                self._builder.close()
            self._hand_back()
            self.summary.elapsed = time.perf_counter() - started
            self.summary.stopped = self._stop
        if self._fatal is not None:
            raise self._fatal_error() from self._fatal
        return self.summary

    def _start_builder(self) -> BuilderProcess | None:
        """Start a builder process when the run is large enough and a second core is there."""
        threshold = self.options.build_process_from
        if self.build_apart is None or threshold <= 0 or usable_cores() < 2:
            return None
        with read_only_engine(self.engine).connect() as conn:
            owed = deliveries.count_unfinished(conn, self.edition.id)
        if min(owed, self.options.limit or owed) < threshold:
            return None
        try:
            builder = BuilderProcess(self.build_apart, PREPARE_SLICE)
        except OSError as exc:
            log.warning("could not start a builder process (%s): building here", exc)
            return None
        log.info("building messages in a process of their own (pid %s)", builder.pid)
        return builder

    def _hand_back(self) -> None:
        """Give back the rows claimed but not sent, then count what the edition still owes."""
        try:
            with self.engine.begin() as conn:
                released = deliveries.release_claims(
                    conn, worker=self.options.worker_id, keep=self._unrecorded
                )
        except OperationalError as exc:  # raised below unless the run already failed
            # Still claimed by us: owed again once the lease lapses, or at once after we exit.
            log.info("could not give back the claimed rows: %s", database_error(exc))
            self._fatal = self._fatal or exc
            released = 0
        if released:
            log.info("released %d claimed rows that were not sent", released)
        with read_only_engine(self.engine).connect() as conn:  # a read waits for no writer
            self.summary.owed = deliveries.count_unfinished(conn, self.edition.id)

    def _fatal_error(self) -> NewsletterError:
        """Say on one line why the run stopped, and what the edition still owes."""
        owed = f"{self.summary.owed} deliveries are still owed"
        if isinstance(self._fatal, OperationalError):
            return database_error(self._fatal, owed)
        return TransportError(f"{self._fatal}; {owed}")

    def _renew_claims(self, *, only_if_stale: bool = False) -> None:
        """Keep this run's claims alive: they lapse soon after the process stops beating."""
        with self._claims.lock:
            if only_if_stale and self._claims.trusted():
                return  # another thread renewed them meanwhile
            started = time.monotonic()
            with self.engine.begin() as conn:
                held = deliveries.renew_claims(
                    conn, worker=self.options.worker_id, lease_seconds=self.options.lease_seconds
                )
            lost = self._claims.renewed(held, started)
        if lost:
            log.warning("%d claimed rows were taken by another sender: not sent here", len(lost))

    def _renew_stale_claims(self) -> None:
        """Renew before sending when the lease may have run out (a late beat, a stop)."""
        try:
            self._renew_claims(only_if_stale=True)
        except OperationalError as exc:
            log.warning("could not renew the claims: %s", exc)

    async def _may_send(self, key: int) -> bool:
        """Tell whether the row is still ours to send; stop the run when that is unknown."""
        if not self._claims.trusted():
            await asyncio.to_thread(self._renew_stale_claims)
        if self._claims.holds(key):
            return True
        if not self._claims.lost(key) and not self._stop:
            log.error("the claims could not be renewed in time: stopping this run")
            self.stop()
        return False

    async def _run(self) -> None:
        recorder = Recorder(
            self.engine,
            self.options.worker_id,
            self.options.max_attempts,
            lambda attempts: backoff_delay(attempts, self.options),
            self.summary,
            self._claims,
        )
        recorder.after_commit = self._judge_after_commit
        progress = self.progress
        if progress:
            recorder.on_flush = lambda: progress(self.summary)
        queue: asyncio.Queue[Prepared | None] = asyncio.Queue(maxsize=2 * PREPARE_SLICE)
        # Claiming and building stay on one thread, so their memory stays in one arena.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="newsletter-prepare")
        try:
            async with self.transport:
                consumers = [
                    asyncio.create_task(self._consume(queue, recorder))
                    for _ in range(max(1, self.transport.connections))
                ]
                try:
                    await self._produce(queue, recorder)
                finally:
                    for _ in consumers:
                        await queue.put(None)
                    await asyncio.gather(*consumers, return_exceptions=True)
        finally:
            self._pool.shutdown(wait=True)
            recorder.close()

    def _remaining_limit(self) -> int:
        if self.options.limit is None:
            return self.options.batch_size
        return min(self.options.batch_size, self.options.limit - self._claimed)

    async def _produce(self, queue: asyncio.Queue[Prepared | None], recorder: Recorder) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop and self._fatal is None:
            want = self._remaining_limit()
            if want <= 0:
                break
            rows, missing = await loop.run_in_executor(self._pool, self._claim, want)
            if self.summary.paused is not None:
                break
            for delivery_id in missing:
                await recorder.record(SkipResult(delivery_id, NOTHING_MATCHED), None)
            if not rows and not missing:
                await queue.join()
                if not await self._wait_for_retries():
                    break
                continue
            async for ready, skipped in self._built_slices(rows):
                for skip in skipped:
                    await recorder.record(skip, None)
                for prepared in ready:
                    if self._stop or self._fatal is not None:
                        break
                    await queue.put(prepared)
        await queue.join()

    def _judge(self, conn: Connection) -> None:
        """Let the guard judge the edition's answers; pause this run when it is paused."""
        assert self.options.guard is not None
        with conn.begin():
            reason = guard.check_edition(conn, self.edition.id, self.options.guard)
            self._unjudged = 0 if guard.judging(conn, self.edition.id) else None
        if reason is not None:
            self.pause(reason)

    def _judge_after_commit(self, conn: Connection, replies: int) -> None:
        """Judge again every few recorded replies while the guard's window is open."""
        if self._unjudged is None or self.options.guard is None:
            return
        self._unjudged += replies
        if self._unjudged < max(1, self.options.guard.window // JUDGE_STEPS):
            return
        try:
            self._judge(conn)
        except Exception as exc:  # the replies are recorded; unjudged, the run must not go on
            self._fatal = exc

    def _claim(self, want: int) -> tuple[list[ClaimedDelivery], list[int]]:
        """Claim owed rows and load their subscribers; render the digests new among them."""
        if self.options.guard is not None:
            with self.engine.connect() as conn:
                self._judge(conn)
            if self.summary.paused is not None:
                return [], []
        started = time.monotonic()
        with self.engine.begin() as conn:
            claimed = deliveries.claim_deliveries(
                conn,
                self.edition.id,
                worker=self.options.worker_id,
                limit=want,
                lease_seconds=self.options.lease_seconds,
            )
            self._claimed += len(claimed)
            if not claimed:
                return [], []
            rows, missing = deliveries.load_claimed(conn, claimed)
        self._claims.claimed((c[0] for c in claimed), started)
        return rows, missing

    async def _built_slices(self, rows: list[ClaimedDelivery]) -> AsyncIterator[_Slice]:
        """Yield a claimed batch built in slices: only a few hundred KB of messages wait at any
        time. The builder process builds them when it is ready; otherwise, and from where it
        failed, this process does."""
        loop = asyncio.get_running_loop()
        builder = self._builder
        if builder is not None and not builder.ready(self.builder_wait):
            builder = None
        done = 0
        if builder is not None:
            try:
                await loop.run_in_executor(self._pool, builder.start, rows)
                while done < len(rows) and not self._stop and self._fatal is None:
                    built = await loop.run_in_executor(self._pool, builder.next_slice)
                    part = rows[done : done + len(built)]
                    done += len(built)
                    yield _sorted(part, built)
            except BuilderFailed as exc:
                await loop.run_in_executor(self._pool, builder.fail, exc)
                self._builder = None
            finally:
                if done < len(rows) and self._builder is not None:
                    # Left mid-batch: its other slices would come first, so it serves no more.
                    self._builder = None
                    builder.close()
        rest = rows[done:]
        if not rest or self._stop or self._fatal is not None:
            return
        # One premailer run for the whole batch's new parts.
        await loop.run_in_executor(self._pool, self.preparer.warm, rest)
        for start in range(0, len(rest), PREPARE_SLICE):
            if self._stop or self._fatal is not None:
                return
            part = rest[start : start + PREPARE_SLICE]
            yield await loop.run_in_executor(self._pool, self._prepare, part)

    def _prepare(self, rows: list[ClaimedDelivery]) -> _Slice:
        return _sorted(rows, build_rows(self.preparer, rows))

    async def _wait_for_retries(self) -> bool:
        """Sleep until the next retry is due if that is within max_wait; False when done."""
        wait = await asyncio.to_thread(self._seconds_to_next_retry)
        if wait is None or wait > self.options.max_wait:
            return False
        await asyncio.sleep(max(wait, 0.0) + 0.01)
        return True

    def _seconds_to_next_retry(self) -> float | None:
        with self.engine.connect() as conn:
            return deliveries.seconds_to_next_retry(conn, self.edition.id)

    async def _consume(self, queue: asyncio.Queue[Prepared | None], recorder: Recorder) -> None:
        """Send on one connection: the next message's data goes out while the last one's reply
        is recorded, and its end only once that record is committed and the row is still
        ours, so a crash can double at most one message per connection."""
        recorded: asyncio.Task[None] | None = None  # the record of this connection's last one
        try:
            while True:
                prepared = await queue.get()
                recording = False  # once its record is on the way, that marks it done
                try:
                    if prepared is None:
                        return
                    if self._stop or self._fatal is not None:
                        continue  # left claimed: released at the end of the run
                    if not await self._may_send(prepared.key):
                        continue  # another sender's now, or left claimed for the release
                    gate = asyncio.create_task(self._may_end(recorded, prepared.key))
                    try:
                        result = await self.transport.send(prepared.message, after=gate)
                    except TransportUnavailable as exc:
                        self._fatal = exc
                        continue
                    except (_Abandoned, _RecordFailed):  # not delivered; the run knows why
                        continue
                    finally:
                        _settle(gate)
                    self._unrecorded.add(prepared.key)
                    recorded = asyncio.create_task(self._record(recorder, result, prepared, queue))
                    recording = True
                finally:
                    if not recording:
                        queue.task_done()
        finally:
            if recorded is not None:
                await asyncio.gather(recorded, return_exceptions=True)

    async def _may_end(self, recorded: asyncio.Task[None] | None, key: int) -> None:
        """Return once a message may be completed: the previous one recorded, its row ours."""
        if recorded is not None:
            await asyncio.shield(recorded)  # a cancelled wait must not cancel the record
        if not await self._may_send(key):
            raise _Abandoned(key)

    async def _record(
        self,
        recorder: Recorder,
        result: SendResult,
        prepared: Prepared,
        queue: asyncio.Queue[Prepared | None],
    ) -> None:
        try:
            await recorder.record(result, prepared)
        except Exception as exc:
            self._fatal = exc
            raise _RecordFailed from exc
        else:
            self._unrecorded.discard(prepared.key)
        finally:
            queue.task_done()  # a message is done once its reply is recorded


class _Abandoned(Exception):
    """A message left undelivered before its end: its row is no longer this sender's."""


class _RecordFailed(Exception):
    """The record of a connection's previous message failed: the run stops (see _fatal)."""


def _settle(task: asyncio.Task[None]) -> None:
    """Take the error of a gate the transport never waited for (a refused message), so that
    nothing is logged about it."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
