"""The scheduler as it runs: in a thread, from the CLI, and as two competing processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time as timer
from collections import Counter
from datetime import date, time, timedelta
from pathlib import Path

from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.leases import acquire_lease
from newsletter.core.models import Lease, Subscriber, Topic, utcnow
from newsletter.editions.schedule import ScheduleConfig
from newsletter.runners.scheduler import Scheduler
from newsletter.runners.tick import SCHEDULER_LEASE
from tests import factories as f
from tests.smtp_server import SmtpTestServer

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 60.0  # seconds any wait in these tests may take


def _wait_for(predicate, what: str, timeout: float = DEADLINE) -> None:  # noqa: ANN001
    end = timer.monotonic() + timeout
    while not predicate():
        assert timer.monotonic() < end, f"timed out waiting for {what}"
        timer.sleep(0.05)


def _due_world(app: App, readers: int, *, start: int = 0) -> None:
    """Listings of the last days and readers whose delivery hour (UTC) has just come."""
    now = utcnow()
    with app.transaction() as s:
        topic = s.scalar(select(Topic).where(Topic.slug == "llm")) or f.topic(s, "llm")
        if start == 0:
            for back in range(3):
                day = now.date() - timedelta(days=back)
                f.paper(s, f"Paper of {day}", day=day, topics={topic: 2.0}, upvotes=back)
        for i in range(start, start + readers):
            sub = f.subscriber(s, f"r{i}@example.org", [topic])
            sub.timezone, sub.delivery_hour = "UTC", now.hour


def _fast_config() -> ScheduleConfig:
    return ScheduleConfig(sources=(), tick_seconds=0.2, lease_seconds=1.5, listing_ready=time(0))


def test_the_scheduler_sends_what_is_due_and_stops_cleanly(app):
    _due_world(app, 3)
    with SmtpTestServer() as srv:
        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        scheduler = Scheduler(app, config=_fast_config(), holder="test:1")
        thread = threading.Thread(target=scheduler.run, daemon=True)
        thread.start()
        try:
            _wait_for(lambda: len(srv.messages) == 3, "three digests")
            with app.sessions() as s:
                assert s.get(Lease, SCHEDULER_LEASE).holder == "test:1"
            timer.sleep(0.5)  # a few more ticks: nothing more is due
            assert len(srv.messages) == 3
        finally:
            scheduler.stop()
            thread.join(timeout=DEADLINE)
    assert not thread.is_alive()
    with app.sessions() as s:
        assert s.get(Lease, SCHEDULER_LEASE) is None  # released on a clean stop


def test_a_standby_waits_while_the_lease_is_held_and_takes_over_when_it_expires(app):
    _due_world(app, 2)
    with app.transaction() as s:
        assert acquire_lease(SCHEDULER_LEASE, "elsewhere:1", utcnow(), 2.0, session=s)
    with SmtpTestServer() as srv:
        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        standby = Scheduler(app, config=_fast_config(), holder="test:2")
        thread = threading.Thread(target=standby.run, daemon=True)
        started = timer.monotonic()
        thread.start()
        try:
            timer.sleep(0.5)
            assert srv.messages == []  # the other holder is (still) active
            _wait_for(lambda: len(srv.messages) == 2, "the takeover")
            assert timer.monotonic() - started >= 1.5
        finally:
            standby.stop()
            thread.join(timeout=DEADLINE)


# -- the command line -------------------------------------------------------------------------


def test_once_sends_what_is_due_and_exits(app, run, tmp_path):
    _due_world(app, 2)
    # No source to fetch: on a weekday after 06:00 UTC the default fetch would be due too,
    # and fail here, where there is no internet.
    config = tmp_path / "no-fetch.toml"
    config.write_text("scheduler_sources = []\n", encoding="utf-8")
    run.env["NEWSLETTER_CONFIG"] = str(config)
    with SmtpTestServer() as srv:
        run.env["NEWSLETTER_TRANSPORT"] = srv.url
        first = run("scheduler", "--once", "--json")
        second = run("scheduler", "--once", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["sent"] == 2 and json.loads(second.output)["sent"] == 0
    assert sorted(srv.recipients()) == ["r0@example.org", "r1@example.org"]


def test_once_leaves_the_work_to_an_active_scheduler(app, run):
    _due_world(app, 1)
    with app.transaction() as s:
        acquire_lease(SCHEDULER_LEASE, "host:42", utcnow(), 60, session=s)
    result = run("scheduler", "--once")
    assert result.exit_code == 0
    assert "another scheduler is active (host:42)" in result.output


def test_dry_run_prints_the_next_day_and_writes_nothing(app, run):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        f.paper(s, "A paper", day=date(2026, 3, 23), topics={topic: 2.0})
        sub = f.subscriber(s, "tokyo@example.org", [topic])
        sub.timezone, sub.delivery_hour = "Asia/Tokyo", 12
    result = run("scheduler", "--dry-run", "--at", "2026-03-23T07:00Z", "--json")
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert item["at"].startswith("2026-03-24T03:00") and item["recipients"] == ["tokyo@example.org"]
    text = run("scheduler", "--dry-run", "--at", "2026-03-23T07:00Z")
    assert "2026-03-24 03:00 UTC (Tue 2026-03-24 12:00 JST)" in text.output
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0


def test_bad_options_are_usage_errors(run):
    assert run("scheduler", "--once", "--dry-run").exit_code == 2
    assert run("scheduler", "--at", "2026-03-23T07:00Z").exit_code == 2
    bad = run("scheduler", "--dry-run", "--at", "tomorrow")
    assert bad.exit_code == 2 and "--at" in bad.output


# -- two processes ----------------------------------------------------------------------------


def _start_smtp(count_file: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "smtp_server.py"), "--count-file", str(count_file)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline().split()
    assert line[:1] == ["listening"], line
    return proc, int(line[2])


def _start_scheduler(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "-v", "scheduler"],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _holder(app: App) -> str | None:
    with app.sessions() as s:
        lease = s.get(Lease, SCHEDULER_LEASE, populate_existing=True)
        return lease.holder if lease is not None else None


def test_two_schedulers_send_nothing_twice_and_the_standby_takes_over(app, env, tmp_path):
    _due_world(app, 20)
    config = tmp_path / "newsletter.toml"
    config.write_text(
        "scheduler_tick_seconds = 1\nscheduler_lease_seconds = 3\n"
        'scheduler_sources = []\nscheduler_listing_ready = "00:00"\n'
    )
    count_file = tmp_path / "received.txt"
    smtp, port = _start_smtp(count_file)
    procs: list[subprocess.Popen] = []
    try:
        run_env = {
            **os.environ,
            **env,
            "NEWSLETTER_CONFIG": str(config),
            "NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}",
        }
        procs = [_start_scheduler(run_env, tmp_path, tmp_path / f"s{i}.log") for i in range(2)]
        _wait_for(lambda: len(_lines(count_file)) >= 20, "the first 20 digests")
        # Kill the leader only once the other one waits as a standby: on a loaded machine
        # it may still be starting, and would then take a free lease, never a standby.
        logs = [tmp_path / f"s{i}.log" for i in range(2)]
        _wait_for(lambda: any("standby" in p.read_text() for p in logs if p.exists()),
                  "the second scheduler to wait as a standby")  # fmt: skip
        active_pid = int(_holder(app).rpartition(":")[2])
        [active] = [p for p in procs if p.pid == active_pid]
        [standby] = [p for p in procs if p.pid != active_pid]
        os.kill(active.pid, signal.SIGKILL)
        active.wait(timeout=DEADLINE)
        killed_at = timer.monotonic()
        _due_world(app, 5, start=20)  # readers who join after the kill
        _wait_for(lambda: len(_lines(count_file)) >= 25, "the standby to take over")
        assert timer.monotonic() - killed_at < 60
        assert _holder(app).endswith(f":{standby.pid}")
        timer.sleep(2.5)  # a few more ticks of the new leader: still nothing twice
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=DEADLINE) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=DEADLINE)
        smtp.send_signal(signal.SIGTERM)
        smtp.communicate(timeout=DEADLINE)
    received = Counter(line.split()[-1] for line in _lines(count_file))
    assert set(received) == {f"r{i}@example.org" for i in range(25)}
    assert max(received.values()) == 1, received.most_common(3)
    assert _holder(app) is None  # the survivor released the lease on SIGTERM
    log_text = (tmp_path / "s0.log").read_text() + (tmp_path / "s1.log").read_text()
    assert "standby" in log_text and "released the scheduler lease" in log_text
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 25
