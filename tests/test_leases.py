"""Named leases: one holder, renewal, markers, dead holders of this host, the heartbeat."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.core.leases import (
    Heartbeat,
    LeaseTaken,
    acquire_lease,
    default_worker_id,
    hold_lease,
    holder_is_dead_here,
    lease_holder,
    pid_alive,
    release_lease,
    take_lease,
)
from newsletter.core.models import Lease, utcnow
from tests.skewed_clock import skewed_newsletter

HOST = socket.gethostname()
T0 = datetime(2026, 3, 23, 8, tzinfo=UTC)


def test_the_lease_is_held_by_one_holder_until_it_expires_or_is_released(app):
    with app.transaction() as s:
        assert acquire_lease("scheduler", "a", T0, 30, session=s)
        assert not acquire_lease("scheduler", "b", T0 + timedelta(seconds=10), 30, session=s)
        assert acquire_lease("scheduler", "a", T0 + timedelta(seconds=20), 30, session=s)
        # a renewed at 20 s: still held at 45 s, free after 50 s.
        assert not acquire_lease("scheduler", "b", T0 + timedelta(seconds=45), 30, session=s)
        assert lease_holder("scheduler", T0 + timedelta(seconds=45), session=s) == "a"
        assert acquire_lease("scheduler", "b", T0 + timedelta(seconds=51), 30, session=s)
        assert not release_lease("scheduler", "a", session=s)
        assert release_lease("scheduler", "b", session=s)
        assert acquire_lease("scheduler", "a", T0 + timedelta(seconds=52), 30, session=s)


def test_a_marker_is_not_taken_again_before_it_expires_and_keeps_its_first_time(app):
    with app.transaction() as s:
        assert acquire_lease("fetch:x", "a", T0, 600, session=s, marker=True)
        assert not acquire_lease(
            "fetch:x", "a", T0 + timedelta(minutes=9), 600, session=s, marker=True
        )
        assert acquire_lease(
            "fetch:x", "b", T0 + timedelta(minutes=10), 600, session=s, marker=True
        )
        lease = s.get(Lease, "fetch:x", populate_existing=True)
        assert lease.holder == "b" and lease.acquired_at.replace(tzinfo=UTC) == T0


def _zombie() -> subprocess.Popen:
    """Start a child and kill it without reaping it: it stays a zombie until wait()."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here: zombies cannot be told from live processes")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)
    return child


def test_a_zombie_is_dead_though_it_still_answers_kill_0():
    child = _zombie()
    try:
        os.kill(child.pid, 0)  # no error: this alone would call it alive
        assert not pid_alive(child.pid)
        assert holder_is_dead_here(f"{HOST}:{child.pid}")
        assert not holder_is_dead_here(f"elsewhere:{child.pid}")  # not ours to judge
    finally:
        child.wait()
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid()) and not holder_is_dead_here(default_worker_id())
    assert pid_alive(1)  # someone else's process is alive too


def test_take_lease_frees_the_lease_of_a_dead_holder_of_this_host_only(app):
    child = _zombie()
    try:
        with app.transaction() as s:
            assert acquire_lease("a", f"{HOST}:{child.pid}", utcnow(), 600, session=s)
            assert acquire_lease("b", f"elsewhere:{child.pid}", utcnow(), 600, session=s)
        assert take_lease(app.sessions, "a", default_worker_id(), 60) is None
        assert take_lease(app.sessions, "b", default_worker_id(), 60) == f"elsewhere:{child.pid}"
    finally:
        child.wait()


def test_hold_lease_renews_while_held_and_releases_after(app):
    with hold_lease(app.sessions, "send:1", "me:1", seconds=0.6):
        with pytest.raises(LeaseTaken, match="me:1"):
            with hold_lease(app.sessions, "send:1", "other:2", seconds=0.6):
                pass
        time.sleep(1.5)  # more than twice the lease: only the heartbeat keeps it
        with app.sessions() as s:
            assert lease_holder("send:1", utcnow(), session=s) == "me:1"
    with app.sessions() as s:
        assert s.get(Lease, "send:1") is None


def test_a_heartbeat_beats_until_stopped_and_survives_a_failed_beat():
    from sqlalchemy.exc import OperationalError

    beats: list[float] = []

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) == 1:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))

    with Heartbeat("test", 0.05, beat):
        deadline = time.monotonic() + 10
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    count = len(beats)
    time.sleep(0.2)
    assert count >= 3 and len(beats) == count  # went on after the failure, stopped after


def _scheduler(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err
        )


def _scheduler_holder(app) -> str | None:  # noqa: ANN001
    with app.sessions() as s:
        lease = s.get(Lease, "scheduler", populate_existing=True)
        return lease.holder if lease is not None else None


def _wait_for(predicate, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_scheduler_whose_clock_runs_ahead_stays_a_standby_beside_a_live_one(
    app, env, tmp_path
):
    (tmp_path / "newsletter.toml").write_text(
        "scheduler_lease_seconds = 3\nscheduler_tick_seconds = 1\nscheduler_sources = []\n",
        encoding="utf-8",
    )
    live_log, skewed_log = tmp_path / "live.log", tmp_path / "skewed.log"
    command, clock = skewed_newsletter(["-v", "scheduler"], 45, app.settings.database_url)
    live = skewed = None
    try:
        live = _scheduler(
            [sys.executable, "-m", "newsletter", "-v", "scheduler"], env, tmp_path, live_log
        )
        _wait_for(lambda: _scheduler_holder(app) == f"{HOST}:{live.pid}", "the live scheduler")
        skewed = _scheduler(command, {**env, **clock}, tmp_path, skewed_log)
        tried = ("standby", "active:")
        _wait_for(lambda: any(w in skewed_log.read_text() for w in tried), "the skewed one")
        time.sleep(3.0)  # three more tries of the skewed one, each a lease ahead of the live one
        assert _scheduler_holder(app) == f"{HOST}:{live.pid}"
        assert skewed.poll() is None and live.poll() is None
    finally:
        for proc in (skewed, live):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert "active:" not in skewed_log.read_text()
    assert "lost the scheduler lease" not in live_log.read_text()
