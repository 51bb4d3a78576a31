"""Building messages in a process of its own, beside the sending loop: a second core.

A large send spends about half its time composing (choosing each reader's papers, rendering,
assembling MIME) and half talking SMTP and recording replies. In one process the two share
one interpreter lock; here the sending process hands each claimed batch to a builder process
started for the run and takes the built messages back slice by slice while the builder goes
on with the next. Only claimed rows go out and only message bytes come back: claims, sends and
records stay with the sender, so the rules of `engine` hold unchanged.

The builder is started with `spawn` (no state of a threaded parent is copied) and loads its
own selection from the database; until it says it is ready, and after it fails, the sender
builds in its own thread as it would without one. It ignores the signals of the terminal and
of service managers (the sender decides when to stop) and exits when the sender's end of the
pipe closes, whatever killed the sender.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.errors import ConfigError
from newsletter.delivery.compose import Built, MessagePreparer, build_rows

log = logging.getLogger(__name__)

PreparerFactory = Callable[[], MessagePreparer]

STOP_SECONDS = 10.0  # how long closing waits for the builder before ending it


class BuilderFailed(Exception):
    """The builder process stopped or raised: the sender builds the rest itself."""


def usable_cores() -> int:
    """Return how many cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class BuilderProcess:
    """The sender's end of one builder process: a batch in, its slices out, in order."""

    def __init__(self, factory: PreparerFactory, slice_size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=serve, args=(child, factory, slice_size), name="newsletter-builder", daemon=True
        )
        self._process.start()
        child.close()
        self._ready = False
        self.failed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def ready(self, wait: float = 0.0) -> bool:
        """Tell whether the builder has loaded what it needs, waiting at most `wait` seconds."""
        if not self._ready and not self.failed:
            try:
                if self._conn.poll(wait):
                    self._expect("ready")
                    self._ready = True
            except BuilderFailed as exc:
                self.fail(exc)
        return self._ready

    def start(self, rows: Sequence[ClaimedDelivery]) -> None:
        """Hand over a claimed batch; its slices come back through `next_slice`."""
        try:
            self._conn.send(list(rows))
        except OSError as exc:
            raise BuilderFailed(f"the builder process is gone ({exc})") from None

    def next_slice(self) -> list[Built]:
        """Wait for the next built slice of the batch handed over."""
        built: list[Built] = self._expect("built")
        return built

    def _expect(self, kind: str) -> Any:
        try:
            got, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise BuilderFailed(f"the builder process stopped ({str(exc) or 'no reply'})") from None
        if got == "config":
            raise value  # the settings are wrong: the same error as building here
        if got == "error":
            raise BuilderFailed(f"the builder process failed: {value}")
        if got != kind:
            raise BuilderFailed(f"the builder process answered {got!r}, not {kind!r}")
        return value

    def fail(self, exc: BuilderFailed) -> None:
        """Give up on the builder after `exc`; the caller builds from now on."""
        log.warning("%s; building messages in the sending process", exc)
        self.failed = True
        self.close()

    def close(self) -> None:
        """Stop the builder: it exits when its pipe closes; one that does not is ended."""
        self._conn.close()
        if not self._ready:
            self._process.kill()  # still loading: it holds nothing, and would keep us waiting
        self._process.join(STOP_SECONDS)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(STOP_SECONDS)


def serve(conn: Connection, factory: PreparerFactory, slice_size: int) -> None:
    """The builder process: load the preparer, then build every batch handed over."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)  # the sender stops us by closing the pipe
    try:
        preparer = _attempt(conn, factory)
        if preparer is _FAILED:
            return
        conn.send(("ready", None))
        while True:
            rows = conn.recv()
            # One premailer run for the whole batch's new digests, as the sender's thread does.
            if _attempt(conn, partial(preparer.warm, rows)) is _FAILED:
                return
            for start in range(0, len(rows), slice_size):
                part = rows[start : start + slice_size]
                built = _attempt(conn, partial(build_rows, preparer, part))
                if built is _FAILED:
                    return
                conn.send(("built", built))
    except (EOFError, OSError):  # the sender closed its end or went away
        return


_FAILED = object()


def _attempt(conn: Connection, work: Callable[[], Any]) -> Any:
    """Return what `work` gives; on an error, tell the sender and return _FAILED."""
    try:
        return work()
    except ConfigError as exc:
        conn.send(("config", exc))
    except Exception as exc:  # reported to the sender, which builds the rest itself
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    return _FAILED
