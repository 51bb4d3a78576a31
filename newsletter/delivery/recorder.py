"""Recording a run's replies: group commits, each sender waiting until its reply is durable.

Replies that arrive while a commit runs go into the next one. On SQLite a commit is a few
statements on a local file and runs on the event loop; elsewhere one thread does every write.
A 5xx reply also suppresses the address (never mailed again).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, Engine

from newsletter.bounces.refusals import suppress_after_permanent_failure
from newsletter.core import deliveries
from newsletter.core.db import db_now
from newsletter.delivery.claims import HeldClaims
from newsletter.delivery.compose import Prepared
from newsletter.delivery.transports import Outcome, SendResult


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



def capped_backoff(attempt: int, base: float, cap: float) -> float:
    """Return the wait after try `attempt`: base doubled per try, at most cap, then jittered."""
    delay: float = min(cap, base * 2 ** max(attempt - 1, 0))  # typeshed: int ** int is Any
    return delay * (0.5 + random.random() / 2)


class Recorder:
    """Commits results in groups; each caller waits until its result is durable."""

    def __init__(
        self,
        engine: Engine,
        worker: str,
        max_attempts: int,
        retry_delay: Callable[[int], float],
        summary: SendSummary,
        claims: HeldClaims,
    ) -> None:
        self._engine = engine
        self._worker = worker
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay  # seconds before the retry after try n
        self._summary = summary
        self._claims = claims
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.on_flush: Callable[[], None] = lambda: None
        # A SQLite commit is a few statements on a local file, quicker than handing it to a
        # thread and back (which each connection would wait for): it runs on the loop. Any
        # other database is across a network: one thread does every write (fewer malloc
        # arenas, no thread hand-over per flush).
        self._inline = engine.dialect.name == "sqlite"
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

    async def record(self, result: SendResult | SkipResult, prepared: Prepared | None) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((result, prepared, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        await fut

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                if self._inline:
                    self._write(batch)
                else:
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

    def _write(self, batch: list[Pending]) -> None:
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
            elif attempts >= self._max_attempts:
                base["b_reply"] = deliveries.trim_reply(
                    f"gave up after {attempts} attempts: {base['b_reply']}"
                )
                failed.append(base)
            else:
                base["b_next"] = timedelta(seconds=self._retry_delay(attempts))
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


SKIP = "skipped"


@dataclass(frozen=True)
class SkipResult:
    key: int
    reply: str
    outcome: str = SKIP


# A result waiting to be recorded: its message (None for a skip) and whoever awaits it.
Pending = tuple[SendResult | SkipResult, Prepared | None, asyncio.Future[None]]
