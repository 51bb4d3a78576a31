"""The base of every long-running process: a stop event, signals, a poll loop, a hand-back.

A runner does one round of work after another until it is stopped (SIGTERM, SIGINT, or
`stop()` from another thread), sleeping `poll_seconds` after a round that found nothing to
do. A stop cuts the work in flight short: a send finishes the messages on the wire and gives
the rest of its rows back. Whatever the runner holds is handed back however the loop ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stoppable(Protocol):
    def stop(self) -> None: ...


@contextmanager
def stop_on_signals(stop: Callable[[], object]) -> Iterator[None]:
    """Call `stop` on SIGTERM or SIGINT during the block; the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only: whoever runs this thread stops it
        return
    previous = {sig: signal.signal(sig, lambda *_: stop()) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StopControl:
    """Lets a signal or another thread stop a run: between its steps, and inside the send."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._current: Stoppable | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """Ask the running send to finish what is in flight and give back the rest."""
        with self._lock:
            self._stopped.set()
            if self._current is not None:
                self._current.stop()

    def attach(self, current: Stoppable | None) -> None:
        """Name the send now running (None: none); it is stopped at once after a stop."""
        with self._lock:
            self._current = current
            if current is not None and self._stopped.is_set():
                current.stop()


class Runner:
    """Does rounds of work until stopped; SIGTERM and SIGINT stop it gracefully.

    A subclass implements `work` (one round; True when it did something) and may override
    `finished` (leave the loop after a round), `interrupt` (cut the work in flight short) and
    `hand_back` (give up what the process holds; runs however the loop ends).
    """

    poll_seconds = 5.0

    def __init__(self, *, poll: float | None = None) -> None:
        if poll is not None:
            self.poll_seconds = poll
        self.control = StopControl()
        self._stopped = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def stop(self, *_: object) -> None:
        """Finish the work in flight, hand back the rest, and return from run()."""
        self._stopped.set()
        self.interrupt()

    def run(self) -> None:
        """Do rounds of work until stopped or finished; then hand back what is held."""
        with stop_on_signals(self.stop):
            try:
                while not self.stopping:
                    busy = self.work()
                    if self.finished(busy):
                        break
                    if not busy:
                        self.snooze(self.poll_seconds)
            finally:
                self.hand_back()

    def snooze(self, seconds: float) -> None:
        """Sleep, waking at once on a stop."""
        self._stopped.wait(seconds)

    def work(self) -> bool:
        """Do one round of work; return True when there was something to do."""
        raise NotImplementedError

    def finished(self, busy: bool) -> bool:
        """Tell whether to leave the loop after a round (default: only on a stop)."""
        return False

    def interrupt(self) -> None:
        """Cut the work in flight short (default: stop the attached send)."""
        self.control.stop()

    def hand_back(self) -> None:
        """Give up what the process holds (default: nothing; a send hands back its own rows)."""
