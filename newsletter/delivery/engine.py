"""Claiming, sending and recording deliveries: effectively once, crash-safe, fast.

A row is claimed (status `sending`, with a lease) before its message is built and sent, and is
recorded as soon as the transport answers. Each connection waits until its last result is
committed before it sends the next message, so a crash can double at most one message per
connection. Results are committed in groups (whatever arrived while the previous commit ran).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update

from newsletter.audience.suppressions import suppress_after_permanent_failure
from newsletter.content.compose import MessagePreparer, Prepared, Row
from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, InputError, TransportError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    Subscription,
    utcnow,
)
from newsletter.delivery.transports import Outcome, SendResult, Transport, TransportUnavailable

log = logging.getLogger(__name__)

PREPARE_SLICE = 50  # messages built per step; ~40 KB each, so little waits in memory
NOTHING_MATCHED = "no new paper matched the topics"

_SENT, _PENDING, _SENDING, _FAILED, _SKIPPED = (
    DeliveryStatus.SENT.value,
    DeliveryStatus.PENDING.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SendOptions:
    worker_id: str = field(default_factory=default_worker_id)
    batch_size: int = 500
    lease_seconds: float = 600.0
    max_attempts: int = 5
    backoff_base: float = 60.0  # seconds before the first retry; doubles per attempt
    backoff_max: float = 3600.0
    max_wait: float = 0.0  # how long one run may wait for retries that are not yet due
    limit: int | None = None
    empty_policy: str = "skip"
    handle_signals: bool = False


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    owed: int = 0
    elapsed: float = 0.0
    stopped: bool = False

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        return (
            f"sent {self.sent}, failed {self.failed}, skipped {self.skipped}, owed {self.owed} "
            f"in {self.elapsed:.1f}s ({self.rate:.0f} msg/s)"
        )


ProgressCallback = Callable[[SendSummary], None]


def backoff_delay(attempt: int, options: SendOptions) -> float:
    """Exponential backoff with full jitter in its upper half, capped."""
    delay = min(options.backoff_max, options.backoff_base * 2 ** max(attempt - 1, 0))
    return delay * (0.5 + random.random() / 2)


def _owed_clause(now: datetime):
    due = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)
    return or_(
        and_(Delivery.status == _PENDING, due),
        # A `sending` row whose lease ran out belongs to a worker that died.
        and_(Delivery.status == _SENDING, Delivery.lease_until < now),
    )


def claim_deliveries(
    conn: Connection, edition_id: int, *, worker: str, limit: int, lease_seconds: float
) -> list[tuple[int, int, int]]:
    """Claim up to `limit` owed rows; return (delivery id, subscriber id, attempt number)."""
    now = utcnow()
    ids = (
        select(Delivery.id)
        .where(Delivery.edition_id == edition_id, _owed_clause(now))
        .order_by(Delivery.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        ids = ids.with_for_update(skip_locked=True)
    stmt = (
        update(Delivery)
        .where(Delivery.id.in_(ids.scalar_subquery()))
        .values(
            status=_SENDING,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=worker,
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.attempts)
    )
    rows = conn.execute(stmt).all()
    return sorted((r[0], r[1], r[2]) for r in rows)


def release_claims(conn: Connection, *, worker: str, keep: set[int] | None = None) -> int:
    """Give rows this worker claimed but did not send back to the pending pool."""
    stmt = update(Delivery).where(Delivery.claimed_by == worker, Delivery.status == _SENDING)
    if keep:
        stmt = stmt.where(Delivery.id.not_in(sorted(keep)))
    stmt = stmt.values(
        status=_PENDING,
        lease_until=None,
        claimed_by=None,
        attempts=func.max(Delivery.attempts - 1, 0)
        if conn.dialect.name == "sqlite"
        else func.greatest(Delivery.attempts - 1, 0),
    )
    return conn.execute(stmt).rowcount or 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def release_dead_local_claims(conn: Connection, edition_id: int) -> int:
    """Hand back rows claimed by senders on this host that no longer run.

    Rows of dead senders elsewhere come back when their lease runs out.
    """
    host = socket.gethostname()
    workers = conn.scalars(
        select(Delivery.claimed_by)
        .where(Delivery.edition_id == edition_id, Delivery.status == _SENDING)
        .distinct()
    ).all()
    released = 0
    for worker in workers:
        name, _, pid = (worker or "").rpartition(":")
        if name != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        released += (
            conn.execute(
                update(Delivery)
                .where(Delivery.claimed_by == worker, Delivery.status == _SENDING)
                .values(status=_PENDING, lease_until=None, claimed_by=None)
            ).rowcount
            or 0
        )
    return released


_GUARD = and_(
    Delivery.id == bindparam("b_id"),
    Delivery.claimed_by == bindparam("b_worker"),
    Delivery.status == _SENDING,
)
_MARK_SENT = (
    update(Delivery)
    .where(_GUARD)
    .values(
        status=_SENT,
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
    .where(_GUARD)
    .values(status=_FAILED, last_reply=bindparam("b_reply"), lease_until=None)
)
_MARK_RETRY = (
    update(Delivery)
    .where(_GUARD)
    .values(
        status=_PENDING,
        last_reply=bindparam("b_reply"),
        next_attempt_at=bindparam("b_next"),
        lease_until=None,
        claimed_by=None,
    )
)
_MARK_SKIPPED = (
    update(Delivery)
    .where(_GUARD)
    .values(status=_SKIPPED, skip_reason=bindparam("b_reply"), lease_until=None)
)


def _trim_reply(reply: str) -> str:
    return reply.replace("\r", " ").replace("\n", " ")[:500]


class _Recorder:
    """Commits results in groups; each caller waits until its result is durable."""

    def __init__(self, engine: Engine, worker: str, options: SendOptions, summary: SendSummary):
        self._engine = engine
        self._worker = worker
        self._options = options
        self._summary = summary
        self._pending: list[tuple[SendResult, Prepared | None, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.on_flush: Callable[[], None] = lambda: None
        # One thread for every write: fewer malloc arenas and no thread hand-over per flush.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="newsletter-record")
        # and one connection, kept for the run: a pool check-out per flush costs more than
        # the flush's own statements.
        self._conn: Connection | None = None

    def close(self) -> None:
        """Stop the writer thread once nothing is pending."""
        self._pool.submit(self._disconnect)
        self._pool.shutdown(wait=True)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def record(self, result: SendResult, prepared: Prepared | None) -> None:
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

    def _write(self, batch: list[tuple[SendResult, Prepared | None, asyncio.Future[None]]]) -> None:
        now = utcnow()
        sent, failed, retry, skipped = [], [], [], []
        for result, prepared, _ in batch:
            base = {
                "b_id": result.key,
                "b_worker": self._worker,
                "b_reply": _trim_reply(result.reply),
            }
            attempts = prepared.attempts if prepared else 1
            if result.outcome == Outcome.SENT:
                base.update(b_now=now, b_mid=prepared.message_id, b_papers=prepared.paper_ids)
                sent.append(base)
            elif result.outcome == Outcome.FAILED:
                failed.append(base)
            elif result.outcome == "skipped":
                skipped.append(base)
            elif attempts >= self._options.max_attempts:
                base["b_reply"] = f"gave up after {attempts} attempts: {base['b_reply']}"[:500]
                failed.append(base)
            else:
                delay = backoff_delay(attempts, self._options)
                base["b_next"] = now + timedelta(seconds=delay)
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

    def _commit(
        self, conn: Connection, sent: list, failed: list, retry: list, skipped: list
    ) -> None:
        with conn.begin():
            for stmt, params in (
                (_MARK_SENT, sent),
                (_MARK_FAILED, failed),
                (_MARK_RETRY, retry),
                (_MARK_SKIPPED, skipped),
            ):
                if params:
                    conn.execute(stmt, params)
            if failed:  # 5xx "no such mailbox" and the like: never mail the address again
                suppress_after_permanent_failure(conn, [(p["b_id"], p["b_reply"]) for p in failed])


_SKIP = "skipped"


@dataclass(frozen=True)
class _SkipResult:
    key: int
    reply: str
    outcome: str = _SKIP


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
        # Sent but not yet recorded: never handed back, since they may have been delivered.
        self._unrecorded: set[int] = set()

    def stop(self) -> None:
        """Ask the run to finish what is in flight and give back the rest."""
        self._stop = True

    def run(self) -> SendSummary:
        """Send until nothing is owed (or the limit, a stop, or a fatal transport error)."""
        started = time.perf_counter()
        with self.engine.begin() as conn:
            recovered = release_dead_local_claims(conn, self.edition.id)
        if recovered:
            log.warning("took back %d rows claimed by a sender that died", recovered)
        try:
            asyncio.run(self._run())
        except TransportUnavailable as exc:  # could not even connect
            self._fatal = exc
        finally:
            with self.engine.begin() as conn:
                released = release_claims(
                    conn, worker=self.options.worker_id, keep=self._unrecorded
                )
            if released:
                log.info("released %d claimed rows that were not sent", released)
            self.summary.elapsed = time.perf_counter() - started
            self.summary.owed = self._count_owed()
            self.summary.stopped = self._stop
        if self._fatal is not None:
            raise TransportError(
                f"{self._fatal}; {self.summary.owed} deliveries are still owed"
            ) from self._fatal
        return self.summary

    async def _run(self) -> None:
        if self.options.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        recorder = _Recorder(self.engine, self.options.worker_id, self.options, self.summary)
        if self.progress:
            recorder.on_flush = lambda: self.progress(self.summary)
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
            for delivery_id in missing:
                await recorder.record(_SkipResult(delivery_id, NOTHING_MATCHED), None)  # type: ignore[arg-type]
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
                    await recorder.record(skip, None)  # type: ignore[arg-type]
                for prepared in ready:
                    if self._stop or self._fatal is not None:
                        break
                    await queue.put(prepared)
        await queue.join()

    def _claim(self, want: int) -> tuple[list[Row], list[int]]:
        """Claim owed rows and load their subscribers; render the digests new among them."""
        with self.engine.begin() as conn:
            claimed = claim_deliveries(
                conn,
                self.edition.id,
                worker=self.options.worker_id,
                limit=want,
                lease_seconds=self.options.lease_seconds,
            )
            self._claimed += len(claimed)
            if not claimed:
                return [], []
            people = _load_recipients(conn, [c[1] for c in claimed])
        rows = [
            (delivery_id, attempts, subscriber_id, *people[subscriber_id])
            for delivery_id, subscriber_id, attempts in claimed
            if subscriber_id in people
        ]
        missing = [c[0] for c in claimed if c[1] not in people]
        self.preparer.warm(rows)  # one premailer run for the whole batch's new parts
        return rows, missing

    def _prepare(self, rows: list[Row]) -> tuple[list[Prepared], list[_SkipResult]]:
        ready: list[Prepared] = []
        skipped: list[_SkipResult] = []
        for row, prepared in zip(rows, self._build(rows), strict=True):
            if prepared is None:
                skipped.append(_SkipResult(row[0], NOTHING_MATCHED))
            elif isinstance(prepared, _SkipResult):
                skipped.append(prepared)
            else:
                ready.append(prepared)
        return ready, skipped

    def _build(self, rows: list[Row]) -> list[Prepared | _SkipResult | None]:
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
                built.append(_SkipResult(row[0], f"not sent: {exc}", Outcome.FAILED))
        return built

    async def _wait_for_retries(self) -> bool:
        """Sleep until the next retry is due if that is within max_wait; False when done."""
        due = await asyncio.to_thread(self._next_retry_at)
        if due is None:
            return False
        wait = (due - utcnow()).total_seconds()
        if wait > self.options.max_wait:
            return False
        await asyncio.sleep(max(wait, 0.0) + 0.01)
        return True

    def _next_retry_at(self) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.edition_id == self.edition.id, Delivery.status == _PENDING
                )
            )

    async def _consume(self, queue: asyncio.Queue[Prepared | None], recorder: _Recorder) -> None:
        while True:
            prepared = await queue.get()
            try:
                if prepared is None:
                    return
                if self._stop or self._fatal is not None:
                    continue  # left claimed: released at the end of the run
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

    def _count_owed(self) -> int:
        with self.engine.connect() as conn:
            return (
                conn.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.edition_id == self.edition.id,
                        Delivery.status.in_([_PENDING, _SENDING]),
                    )
                )
                or 0
            )


def _load_recipients(
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
