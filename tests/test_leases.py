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
