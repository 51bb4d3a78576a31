"""Operational safety of `newsletter send`: one run per edition, --yes from cron, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from newsletter.core.leases import acquire_lease, lease_holder
from newsletter.core.models import Delivery, DeliveryStatus, Lease, utcnow
from newsletter.delivery import service as sending
from tests import factories as f
from tests.test_crash_safety import _lines, _send, _start_server, _wait_until_received

SIGTERM_SUBSCRIBERS = 3000
CONNECTIONS = 4


def _edition_with(app, subscribers: int) -> None:
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.bulk_subscribers(s, subscribers, [t])


def _statuses(app) -> Counter:
    with app.sessions() as s:
        rows = s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    return Counter({DeliveryStatus(status).value: n for status, n in rows})


def _outbox(settings) -> list[Path]:
    new = Path(settings.transport.removeprefix("maildir:")) / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def _hold_send_lease(app, holder: str) -> None:
    edition_id = sending.plan(app, f.DAY).edition_id
    with app.transaction() as s:
        assert acquire_lease(sending.send_lease_name(edition_id), holder, utcnow(), 600, session=s)


# -- one send per edition ----------------------------------------------------------------------


def test_a_second_send_of_the_same_edition_is_refused_with_one_line(app, settings, run):
    _edition_with(app, 3)
    _hold_send_lease(app, "mailhost:4242")  # a live run on another machine

    result = run("send", "--yes", "--date", f.DAY.isoformat())

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "already being sent" in result.output and "mailhost:4242" in result.output
    assert _outbox(settings) == []
    assert _statuses(app) == Counter({"pending": 3})


def test_the_lease_of_a_sender_killed_on_this_host_does_not_block_the_next_send(app, settings, run):
    _edition_with(app, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _hold_send_lease(app, f"{socket.gethostname()}:{dead.stdout.strip()}")

    result = run("send", "--yes", "--date", f.DAY.isoformat())

    assert result.exit_code == 0, result.output
    assert len(_outbox(settings)) == 3


def test_a_finished_send_releases_its_lease(app, run):
    _edition_with(app, 2)
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0


def test_workers_still_run_beside_a_send_in_progress(app, settings, run):
    _edition_with(app, 5)
    _hold_send_lease(app, "mailhost:4242")

    result = run("worker", "--once", "--concurrency", "1")

    assert result.exit_code == 0, result.output
    assert len(_outbox(settings)) == 5
    with app.sessions() as s:
        assert lease_holder("send:1", utcnow(), session=s) == "mailhost:4242"


# -- large sends need --yes off a terminal -----------------------------------------------------


def _confirm_above(tmp_path: Path, n: int) -> None:
    (tmp_path / "newsletter.toml").write_text(f"confirm_above = {n}\n", encoding="utf-8")


def test_a_large_send_without_a_terminal_needs_yes(app, settings, run, tmp_path):
    _edition_with(app, 3)
    _confirm_above(tmp_path, 2)

    result = run("send", "--date", f.DAY.isoformat())

    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "3 subscribers" in result.output and "--yes" in result.output
    assert _outbox(settings) == []
    assert _statuses(app) == Counter()  # not even planned


def test_yes_or_a_limit_within_the_threshold_lets_a_large_send_go(app, settings, run, tmp_path):
    _edition_with(app, 3)
    _confirm_above(tmp_path, 2)

    assert run("send", "--limit", "2", "--date", f.DAY.isoformat()).exit_code == 0
    assert len(_outbox(settings)) == 2
    assert run("send", "--yes", "--date", f.DAY.isoformat()).exit_code == 0
    assert len(_outbox(settings)) == 3


def test_a_large_send_from_a_terminal_asks_and_a_no_sends_nothing(app, settings, env, tmp_path):
    import pty

    _edition_with(app, 3)
    _confirm_above(tmp_path, 2)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", "--date", f.DAY.isoformat()],
            env={**os.environ, **env},
            cwd=tmp_path,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.write(leader, b"n\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert b"Send to 3 subscribers?" in out + err
    assert proc.returncode == 1
    assert _outbox(settings) == []


# -- SIGTERM mid-send --------------------------------------------------------------------------


def test_sigterm_mid_send_leaves_no_row_claimed_and_a_rerun_finishes(app, env, tmp_path):
    _edition_with(app, SIGTERM_SUBSCRIBERS)
    count_file = tmp_path / "received.txt"
    server, port = _start_server(count_file, delay=0.002)
    try:
        run_env = {
            **os.environ,
            **env,
            "NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}?connections={CONNECTIONS}",
        }
        sender = _send(run_env, tmp_path)
        _wait_until_received(sender, count_file, SIGTERM_SUBSCRIBERS // 3)
        sender.send_signal(signal.SIGTERM)
        out, err = sender.communicate(timeout=30)  # a bounded exit: it does not finish the run
        at_stop = len(_lines(count_file))
        assert 0 < at_stop < SIGTERM_SUBSCRIBERS, "the signal must land mid-run"
        statuses = _statuses(app)
        assert statuses["sending"] == 0, statuses
        assert statuses["sent"] == at_stop
        with app.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Lease)) == 0

        second = _send(run_env, tmp_path)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    received = Counter(line.split()[-1] for line in _lines(count_file))
    assert set(received) == {f"s{i}@example.com" for i in range(1, SIGTERM_SUBSCRIBERS + 1)}
    assert sum(n - 1 for n in received.values()) <= CONNECTIONS
    assert _statuses(app) == Counter({"sent": SIGTERM_SUBSCRIBERS})
