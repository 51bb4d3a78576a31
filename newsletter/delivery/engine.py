"""Sending deliveries: effectively once, crash-safe, fast (the SQL lives in `store`).

A row is claimed (status `sending`, with a short lease renewed by a heartbeat while the run
lasts) before its message is built and sent, and is recorded as soon as the transport
answers. Before each message the sender checks that it still holds the row (see `claims`):
once its lease may have run out it renews first, and it never sends a row that another
sender took meanwhile. Each connection waits until its last result is committed before it
sends the next message, so a crash can double at most one message per connection. Results
are committed in groups (whatever arrived while the previous commit ran).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from newsletter.bounces.refusals import suppress_after_permanent_failure
from newsletter.core import deliveries
from newsletter.core.config import Settings, default
from newsletter.core.db import database_error, db_now, read_only_engine
from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.errors import ConfigError, InputError, NewsletterError, TransportError
from newsletter.core.leases import Heartbeat, default_worker_id, host_of
from newsletter.core.models import Edition
from newsletter.delivery import guard
from newsletter.delivery.claims import HeldClaims
from newsletter.delivery.compose import MessagePreparer, Prepared
from newsletter.delivery.guard import GuardLimits
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
    guard: GuardLimits | None = None  # None: no deliverability guard (previews, tests)


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    owed: int = 0
    elapsed: float = 0.0
    stopped: bool = False
    paused: str | None = None  # why the deliverability guard paused the edition

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, part: SendSummary) -> None:
        """Count another run's figures into these (editions sent one after another)."""
        self.sent += part.sent
        self.failed += part.failed
        self.retried += part.retried
        self.skipped += part.skipped
        self.owed += part.owed
        self.elapsed += part.elapsed
        self.stopped = self.stopped or part.stopped

    def line(self) -> str:
        return (
            f"sent {self.sent}, failed {self.failed}, skipped {self.skipped}, owed {self.owed} "
            f"in {self.elapsed:.1f}s ({self.rate:.0f} msg/s)"
        )


ProgressCallback = Callable[[SendSummary], None]


def backoff_delay(attempt: int, options: SendOptions) -> float:
    """Exponential backoff with full jitter in its upper half, capped."""
    return capped_backoff(attempt, options.backoff_base, options.backoff_max)


def capped_backoff(attempt: int, base: float, cap: float) -> float:
    """Return the wait after try `attempt`: base doubled per try, at most cap, then jittered."""
    delay: float = min(cap, base * 2 ** max(attempt - 1, 0))  # typeshed: int ** int is Any
    return delay * (0.5 + random.random() / 2)


class _Recorder:
    """Commits results in groups; each caller waits until its result is durable."""

    def __init__(
        self,
        engine: Engine,
        worker: str,
        options: SendOptions,
        summary: SendSummary,
        claims: HeldClaims,
    ) -> None:
        self._engine = engine
        self._worker = worker
        self._options = options
        self._summary = summary
        self._claims = claims
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.on_flush: Callable[[], None] = lambda: None
        # One thread for every write: fewer malloc arenas and no thread hand-over per flush.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="newsletter-record")
        # and one connection, kept for the run: a pool check-out per flush costs more than
        # the flush's own statements.
        self._conn: Connection | None = None
        # Called in the writer thread after each commit with the number of replies recorded.
        self.after_commit: Callable[[Connection, int], None] = lambda _conn, _count: None

    def close(self) -> None:
        """Stop the writer thread once nothing is pending."""
        self._pool.submit(self._disconnect)
        self._pool.shutdown(wait=True)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def record(self, result: SendResult | _SkipResult, prepared: Prepared | None) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((result, prepared, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        await fut

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._write, batch)
            except Exception as exc:  # the callers must learn that nothing was recorded
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            self.on_flush()

    def _write(self, batch: list[_Pending]) -> None:
        sent, failed, retry, skipped = [], [], [], []
        for result, prepared, _ in batch:
            base = {
                "b_id": result.key,
                "b_worker": self._worker,
                "b_reply": deliveries.trim_reply(result.reply),
            }
            attempts = prepared.attempts if prepared else 1
            if result.outcome == Outcome.SENT:
                assert prepared is not None  # only a prepared message is sent
                base.update(b_mid=prepared.message_id, b_papers=prepared.paper_ids)
                sent.append(base)
            elif result.outcome == Outcome.FAILED:
                failed.append(base)
            elif result.outcome == "skipped":
                skipped.append(base)
            elif attempts >= self._options.max_attempts:
                base["b_reply"] = deliveries.trim_reply(
                    f"gave up after {attempts} attempts: {base['b_reply']}"
                )
                failed.append(base)
            else:
                base["b_next"] = timedelta(seconds=backoff_delay(attempts, self._options))
                retry.append(base)
        if self._conn is None:
            self._conn = self._engine.connect()
        conn = self._conn
        try:
            self._commit(conn, sent, failed, retry, skipped)
        except BaseException:
            self._disconnect()  # a fresh connection for the next flush, whatever broke
            raise
        s = self._summary
        s.sent += len(sent)
        s.failed += len(failed)
        s.retried += len(retry)
        s.skipped += len(skipped)
        self.after_commit(conn, len(sent) + len(failed))

    def _commit(
        self,
        conn: Connection,
        sent: deliveries.Params,
        failed: deliveries.Params,
        retry: deliveries.Params,
        skipped: deliveries.Params,
    ) -> None:
        with self._claims.lock, conn.begin():
            now = db_now(conn)  # the clock that decides when a retry is owed
            for params in sent:
                params["b_now"] = now
            for params in retry:
                params["b_next"] = now + params["b_next"]
            deliveries.record_results(conn, sent=sent, failed=failed, retry=retry, skipped=skipped)
            if failed:  # 5xx "no such mailbox" and the like: never mail the address again
                suppress_after_permanent_failure(conn, [(p["b_id"], p["b_reply"]) for p in failed])
            self._claims.done(p["b_id"] for group in (sent, failed, retry, skipped) for p in group)


_SKIP = "skipped"


@dataclass(frozen=True)
class _SkipResult:
    key: int
    reply: str
    outcome: str = _SKIP


# A result waiting to be recorded: its message (None for a skip) and whoever awaits it.
_Pending = tuple[SendResult | _SkipResult, Prepared | None, asyncio.Future[None]]


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
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.edition = edition
        self.transport = transport
        self.preparer = preparer
        self.options = options
        self.progress = progress
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
            with Heartbeat(f"claims-{worker}", self.options.lease_seconds / 3, self._renew_claims):
                asyncio.run(self._run())
        # The relay could not even be reached, or the database refused a claim (locked, full).
        except (TransportUnavailable, OperationalError) as exc:
            self._fatal = exc
        finally:
            self._hand_back()
            self.summary.elapsed = time.perf_counter() - started
            self.summary.stopped = self._stop
        if self._fatal is not None:
            raise self._fatal_error() from self._fatal
        return self.summary

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
        recorder = _Recorder(
            self.engine, self.options.worker_id, self.options, self.summary, self._claims
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

    async def _produce(self, queue: asyncio.Queue[Prepared | None], recorder: _Recorder) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop and self._fatal is None:
            want = self._remaining_limit()
            if want <= 0:
                break
            rows, missing = await loop.run_in_executor(self._pool, self._claim, want)
            if self.summary.paused is not None:
                break
            for delivery_id in missing:
                await recorder.record(_SkipResult(delivery_id, NOTHING_MATCHED), None)
            if not rows and not missing:
                await queue.join()
                if not await self._wait_for_retries():
                    break
                continue
            # Build in slices: only a few hundred KB of messages wait at any time.
            for start in range(0, len(rows), PREPARE_SLICE):
                if self._stop or self._fatal is not None:
                    break
                part = rows[start : start + PREPARE_SLICE]
                ready, skipped = await loop.run_in_executor(self._pool, self._prepare, part)
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
        self.preparer.warm(rows)  # one premailer run for the whole batch's new parts
        return rows, missing

    def _prepare(self, rows: list[ClaimedDelivery]) -> tuple[list[Prepared], list[_SkipResult]]:
        ready: list[Prepared] = []
        skipped: list[_SkipResult] = []
        for row, prepared in zip(rows, self._build(rows), strict=True):
            if prepared is None:
                skipped.append(_SkipResult(row.key, NOTHING_MATCHED))
            elif isinstance(prepared, _SkipResult):
                skipped.append(prepared)
            else:
                ready.append(prepared)
        return ready, skipped

    def _build(self, rows: list[ClaimedDelivery]) -> list[Prepared | _SkipResult | None]:
        """Build the rows' messages; a row whose stored data makes no valid message fails alone."""
        try:
            return list(self.preparer.prepare_many(rows))
        except ConfigError:
            raise
        except InputError:  # e.g. an address stored before validation: find the row
            pass
        built: list[Prepared | _SkipResult | None] = []
        for row in rows:
            try:
                built.append(self.preparer.prepare(*row))
            except ConfigError:
                raise
            except InputError as exc:
                built.append(_SkipResult(row.key, f"not sent: {exc}", Outcome.FAILED))
        return built

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

    async def _consume(self, queue: asyncio.Queue[Prepared | None], recorder: _Recorder) -> None:
        while True:
            prepared = await queue.get()
            try:
                if prepared is None:
                    return
                if self._stop or self._fatal is not None:
                    continue  # left claimed: released at the end of the run
                if not await self._may_send(prepared.key):
                    continue  # another sender's now, or left claimed for the release
                try:
                    result = await self.transport.send(prepared.message)
                except TransportUnavailable as exc:
                    self._fatal = exc
                    continue
                self._unrecorded.add(prepared.key)
                try:
                    await recorder.record(result, prepared)
                except Exception as exc:
                    self._fatal = exc
                    continue
                self._unrecorded.discard(prepared.key)
            finally:
                queue.task_done()
