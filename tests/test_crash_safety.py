"""Kill -9 the sender mid-run, run it again: nobody is lost, few are doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests import factories as f

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 3000
CONNECTIONS = 4


def _start_server(count_file: Path, delay: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "smtp_server.py"),
            "--port",
            "0",
            "--count-file",
            str(count_file),
            "--delay",
            str(delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline().split()
    assert line[:1] == ["listening"], line
    return proc, int(line[2])


def _send(env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", "--yes", "--date", f.DAY.isoformat()],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children(pid: int) -> list[int]:
    """Return the processes `pid` started (Linux)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _wait_until_gone(pids: list[int]) -> None:
    """Wait (at most 30 s) until none of these processes runs: a builder exits with its
    sender, even one killed with SIGKILL."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [p for p in pids if _running(p)]
        if not running:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {running} outlived the sender")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an exited child not yet reaped by init is gone


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_until_received(sender: subprocess.Popen, count_file: Path, count: int) -> None:
    """Wait (at most two minutes) until the server has counted `count` messages."""
    deadline = time.monotonic() + 120
    while len(_lines(count_file)) < count and time.monotonic() < deadline:
        assert sender.poll() is None, sender.communicate()
        time.sleep(0.01)


def test_kill_9_mid_send_loses_nobody_and_doubles_at_most_the_in_flight(app, env, tmp_path):
    with app.transaction() as s:
        topics = [f.topic(s, f"t{i}") for i in range(5)]
        for i, t in enumerate(topics):
            f.paper(s, f"Paper about {t.slug}", topics={t: 1.5}, upvotes=i)
        f.bulk_subscribers(s, SUBSCRIBERS, topics)
    count_file = tmp_path / "received.txt"
    server, port = _start_server(count_file, delay=0.002)
    try:
        run_env = {
            **os.environ,
            **env,
            "NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}?connections={CONNECTIONS}",
        }
        sender = _send(run_env, tmp_path)
        _wait_until_received(sender, count_file, SUBSCRIBERS // 3)
        builders = _children(sender.pid)  # a run this large builds in a second process
        os.kill(sender.pid, signal.SIGKILL)
        sender.communicate(timeout=30)
        assert builders, "the builder process was not started"
        _wait_until_gone(builders)
        at_kill = len(_lines(count_file))
        assert 0 < at_kill < SUBSCRIBERS, "the kill must land mid-run"

        second = _send(run_env, tmp_path)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    received = Counter(line.split()[-1] for line in _lines(count_file))
    expected = {f"s{i}@example.com" for i in range(1, SUBSCRIBERS + 1)}
    assert set(received) == expected  # nobody lost
    doubled = sum(n - 1 for n in received.values())
    assert doubled <= CONNECTIONS, f"{doubled} duplicates"
    assert "owed 0" in out
