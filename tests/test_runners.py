"""The base runner: rounds of work, a poll when idle, stops by signal or thread, a hand-back."""

from __future__ import annotations

import os
import signal
import threading
import time

from newsletter.core.runner import Runner, StopControl


class Counting(Runner):
    """Busy for `busy_rounds` rounds, then idle; records what happened."""

    def __init__(self, *, busy_rounds: int = 0, once: bool = False, poll: float = 0.01) -> None:
        super().__init__(poll=poll)
        self.busy_rounds = busy_rounds
        self.once = once
        self.rounds = 0
        self.handed_back = 0
        self.on_round = lambda: None

    def work(self) -> bool:
        self.rounds += 1
        self.on_round()
        return self.rounds <= self.busy_rounds

    def finished(self, busy: bool) -> bool:
        return self.once and not busy

    def hand_back(self) -> None:
        self.handed_back += 1


class Send:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_a_runner_works_until_a_round_finds_nothing_when_asked_to_finish():
    runner = Counting(busy_rounds=3, once=True)
    runner.run()
    assert (runner.rounds, runner.handed_back) == (4, 1)


def test_stop_from_another_thread_ends_the_idle_poll_at_once_and_hands_back():
    runner = Counting(poll=60)  # a poll the stop must cut short
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 10
    while runner.rounds < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    runner.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert runner.handed_back == 1


def test_sigterm_stops_the_send_in_flight_and_the_old_handler_comes_back():
    runner = Counting(busy_rounds=100)
    send = Send()
    previous = signal.getsignal(signal.SIGTERM)

    def send_and_signal() -> None:
        runner.control.attach(send)
        if runner.rounds == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    runner.on_round = send_and_signal
    runner.run()
    assert send.stopped and runner.stopping
    assert runner.rounds == 2 and runner.handed_back == 1
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_hand_back_runs_when_the_work_raises():
    runner = Counting()

    def fail() -> None:
        raise RuntimeError("relay exploded")

    runner.on_round = fail
    try:
        runner.run()
    except RuntimeError:
        pass
    assert runner.handed_back == 1


def test_a_send_attached_after_the_stop_is_stopped_at_once():
    control = StopControl()
    control.stop()
    send = Send()
    control.attach(send)
    assert control.stopped and send.stopped
