"""`newsletter worker` processes share editions; killed ones give their rows back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.core.models import Delivery, utcnow
from newsletter.delivery import service as sending
from newsletter.runners.worker import Worker, with_connections
from tests import factories as f
from tests.skewed_clock import skewed_newsletter
from tests.smtp_server import Fault, SmtpTestServer
from tests.test_crash_safety import _lines, _start_server

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 20_000
WORKERS = 3
HOST = socket.gethostname()
CONCURRENCY = 4


def test_with_connections_sets_the_pool_size_of_smtp_specs_only():
    assert with_connections("smtp://u:p@h:25?tls=none&connections=2", 8) == (
        "smtp://u:p@h:25?tls=none&connections=8"
    )
    assert with_connections("maildir:var/outbox", 8) == "maildir:var/outbox"


def test_worker_once_drains_every_planned_edition(app, settings):
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.paper(s, "An older one", day=f.DAY.replace(day=20), topics={t: 2.0})
        f.bulk_subscribers(s, 30, [t])
    sending.plan(app, f.DAY)
    sending.plan(app, f.DAY.replace(day=20))
    report = Worker(app, concurrency=2, poll=0.1).run(once=True)
    assert report.sent == 60 and report.failed == 0
    assert Worker(app, concurrency=2, poll=0.1).run(once=True).sent == 0


@pytest.mark.only_db("postgresql")
def test_three_workers_one_killed_deliver_everyone_once(pg_app, env, tmp_path):
    with pg_app.transaction() as s:
        topics = [f.topic(s, f"t{i}") for i in range(5)]
        for i, t in enumerate(topics):
            f.paper(s, f"Paper about {t.slug}", topics={t: 1.5}, upvotes=i)
        f.bulk_subscribers(s, SUBSCRIBERS, topics)
    assert sending.plan(pg_app, f.DAY).pending == SUBSCRIBERS

    count_file = tmp_path / "received.txt"
    server, port = _start_server(count_file, delay=0.0)
    run_env = {
        **os.environ,
        **env,
        "NEWSLETTER_DATABASE_URL": pg_app.settings.database_url,
        "NEWSLETTER_TRANSPORT": f"smtp://127.0.0.1:{port}",
    }
    command = [sys.executable, "-m", "newsletter", "worker", "--once",
               "--concurrency", str(CONCURRENCY), "--poll", "0.2"]  # fmt: skip
    workers = [
        subprocess.Popen(
            command,
            env=run_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 300
        while len(_lines(count_file)) < SUBSCRIBERS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
        for survivor in workers[1:]:
            out, err = survivor.communicate(timeout=600)
            assert survivor.returncode == 0, err
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

    received = Counter(line.split()[-1] for line in _lines(count_file))
    assert len(received) == SUBSCRIBERS  # every subscriber delivered
    doubled = sum(n - 1 for n in received.values())
    assert doubled <= CONCURRENCY, f"{doubled} duplicates"
    status = sending.edition_status(pg_app, f.DAY)
    assert (status["sent"], status["pending"], status["sending"]) == (SUBSCRIBERS, 0, 0)


# -- claims on a short lease, kept by a heartbeat -----------------------------------------------

SHORT_LEASE = 2.0  # seconds; the default is a minute
STALL = 20.0  # seconds the server sits on the first MAIL FROM it sees


def _elsewhere(tmp_path: Path, lease: float = SHORT_LEASE) -> None:
    """Configure processes started in tmp_path as senders of another machine."""
    (tmp_path / "newsletter.toml").write_text(
        f'host_name = "mailer-b"\nclaim_lease_seconds = {lease}\n', encoding="utf-8"
    )


def _start_worker(env: dict[str, str], cwd: Path, smtp_url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "worker", "--concurrency", "1", "--poll", "0.2",
         *extra],
        env={**os.environ, **env, "NEWSLETTER_TRANSPORT": smtp_url},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _claims(app) -> dict[str, tuple[str, str | None, object]]:  # noqa: ANN001
    """Each row's (status, claimant, lease end), by subscriber address."""
    with app.sessions() as s:
        return {
            d.subscriber.email: (d.status, d.claimed_by, d.lease_until)
            for d in s.scalars(select(Delivery))
        }


def _wait(predicate, what: str, timeout: float = 60.0) -> float:  # noqa: ANN001
    """Wait for predicate (at most `timeout` s); return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def _planned(app, readers: int) -> None:  # noqa: ANN001
    with app.transaction() as s:
        t = f.topic(s, "llm")
        f.paper(s, "A language model", topics={t: 2.0})
        f.bulk_subscribers(s, readers, [t])
    assert sending.plan(app, f.DAY).pending == readers


def test_rows_of_a_worker_killed_on_another_host_come_back_within_the_short_lease(
    app, env, tmp_path
):
    _planned(app, 6)
    _elsewhere(tmp_path)
    stall = Fault(stage="mail", delay=STALL, times=1)
    with SmtpTestServer(faults=[stall]) as srv:
        victim = _start_worker(env, tmp_path, srv.url)
        try:
            _wait(lambda: stall.hits == 1, "the worker on mailer-b to start sending")
            claims = _claims(app)
            assert {c[:2] for c in claims.values()} == {("sending", f"mailer-b:{victim.pid}")}
            assert all(
                c[2] < utcnow() + timedelta(seconds=SHORT_LEASE + 1) for c in claims.values()
            )
        finally:
            victim.kill()
            victim.communicate(timeout=30)

        app.settings = dataclasses.replace(app.settings, transport=srv.url)
        survivor = Worker(app, concurrency=1, poll=0.2)
        thread = threading.Thread(target=survivor.run)
        thread.start()
        try:
            took = _wait(lambda: len(srv.recipients()) == 6, "another worker to deliver the rows")
        finally:
            survivor.stop()
            thread.join(timeout=60)
    # Far sooner than the ten-minute lease claims had before (a generous bound on a busy box).
    assert took < 30
    assert Counter(srv.recipients()) == {f"s{i}@example.com": 1 for i in range(1, 7)}
    assert {c[:2] for c in _claims(app).values()} == {("sent", f"{HOST}:{os.getpid()}")}


def test_a_live_workers_heartbeat_keeps_its_claims_past_the_short_lease(app, env, tmp_path):
    _planned(app, 3)
    _elsewhere(tmp_path, lease=1.5)
    stall = Fault(stage="mail", delay=8.0, times=1)
    with SmtpTestServer(faults=[stall]) as srv:
        worker = _start_worker(env, tmp_path, srv.url, "--once")
        try:
            _wait(lambda: stall.hits == 1, "the worker to start sending")
            time.sleep(5.0)  # more than three leases into the stall
            claims = _claims(app)
            assert {c[:2] for c in claims.values()} == {("sending", f"mailer-b:{worker.pid}")}
            assert all(c[2] > utcnow() for c in claims.values())  # renewed, still held
            assert Worker(app, concurrency=1, poll=0.1).run(once=True).sent == 0
            out, err = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert worker.returncode == 0, err
    assert Counter(srv.recipients()) == {f"s{i}@example.com": 1 for i in range(1, 4)}


# -- leases on the database's clock; a worker that lost its claim sends none of it ---------------

SKEW = 90.0  # seconds a worker's host clock runs ahead


class _HookedServer(SmtpTestServer):
    """The test server, awaiting `hook(n)` at the n-th RCPT TO it sees (from 1)."""

    def __init__(self, hook, **kwargs) -> None:  # noqa: ANN001, ANN003
        super().__init__(**kwargs)
        self.hook = hook
        self.rcpts = 0

    async def fault(self, stage: str, sender: str | None, recipients: list[str]) -> str | None:
        if stage == "rcpt":
            with self.lock:
                self.rcpts += 1
                number = self.rcpts
            await self.hook(number)
        return await super().fault(stage, sender, recipients)

    def active_sessions(self) -> set[int]:
        with self.lock:
            return set(self._active)


def _lease(tmp_path: Path, seconds: float) -> None:
    (tmp_path / "newsletter.toml").write_text(
        f"claim_lease_seconds = {seconds}\n", encoding="utf-8"
    )


def _spawn(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(*procs: subprocess.Popen | None) -> None:
    """Stop each process that still runs (SIGTERM, then SIGKILL) and reap it."""
    for proc in procs:
        if proc is None:
            continue
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _uses_database(pid: int, database_url: str) -> bool:
    """Tell whether the process has the database open (SQLite: the file; else: a socket)."""
    target = database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite") else ""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return any(link == target if target else link.startswith("socket:") for link in links)


async def _until(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    """Wait in the relay's loop (its other sessions go on) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def _all_sent(app, readers: int):  # noqa: ANN001, ANN202
    return lambda: sending.edition_status(app, f.DAY)["sent"] == readers


def test_a_worker_whose_clock_runs_ahead_takes_no_live_claims(app, env, tmp_path):
    readers = 150
    _planned(app, readers)
    _lease(tmp_path, 3.0)
    gate = threading.Event()

    async def hold_the_sixth(number: int) -> None:
        while number == 6 and not gate.is_set():  # the live worker's batch stays in flight
            await asyncio.sleep(0.05)

    live = skewed = None
    with _HookedServer(hold_the_sixth, delay=0.01) as srv:
        try:
            live = _start_worker(env, tmp_path, srv.url, "--once")
            _wait(lambda: srv.rcpts >= 6, "the live worker to claim and start sending")
            assert {c[:2] for c in _claims(app).values()} >= {("sending", f"{HOST}:{live.pid}")}
            args = ["worker", "--concurrency", "1", "--poll", "0.2"]
            command, clock = skewed_newsletter(args, SKEW, app.settings.database_url)
            skewed = _spawn(command, {**env, **clock, "NEWSLETTER_TRANSPORT": srv.url}, tmp_path)
            _wait(lambda: _uses_database(skewed.pid, app.settings.database_url), "the skewed one")
            time.sleep(1.5)  # several polls of the skewed worker, the live claims running
            gate.set()
            _wait(_all_sent(app, readers), "every reader's digest")
            out, err = live.communicate(timeout=120)
            assert live.returncode == 0, err
            assert skewed.poll() is None, skewed.communicate()
        finally:
            gate.set()
            _finish(live, skewed)
    assert Counter(srv.recipients()) == {f"s{i}@example.com": 1 for i in range(1, readers + 1)}


def test_a_worker_stopped_past_its_lease_sends_none_of_the_rows_taken_meanwhile(
    app, env, tmp_path
):
    readers = 60
    _planned(app, readers)
    _lease(tmp_path, 2.0)
    stopped, pids, at_stop = threading.Event(), {}, set()

    async def stop_at_the_eleventh(number: int) -> None:
        if number == 11:  # it waits for this RCPT's reply, its batch claimed and half sent
            # Once what the relay took is recorded: a reply not yet committed when a sender
            # stops is the one message per connection that may go twice, not what is tested.
            await _until(lambda: sending.edition_status(app, f.DAY)["sent"] == len(srv.messages))
            os.kill(pids["first"], signal.SIGSTOP)
            at_stop.update(srv.active_sessions())
            stopped.set()

    first = second = None
    # The relay hangs up on a client silent for 2 s (as every relay does, later): the message
    # the stopped worker was in the middle of is not delivered by it.
    slow = Fault(stage="rcpt", delay=0.1)
    with _HookedServer(stop_at_the_eleventh, faults=[slow], timeout=2.0) as srv:
        try:
            first = _start_worker(env, tmp_path, srv.url, "--once")
            pids["first"] = first.pid
            _wait(stopped.is_set, "the first worker to be stopped mid-batch")
            second = _start_worker(env, tmp_path, srv.url)
            _wait(lambda: len(srv.recipients()) >= 20, "the second worker to take over")
            _wait(lambda: not at_stop & srv.active_sessions(), "the relay to drop the first")
            os.kill(first.pid, signal.SIGCONT)
            _wait(_all_sent(app, readers), "every reader's digest")
            out, err = first.communicate(timeout=120)
            assert first.returncode == 0, err
        finally:
            if first is not None and first.poll() is None:
                os.kill(first.pid, signal.SIGCONT)
            _finish(first, second)
    assert Counter(srv.recipients()) == {f"s{i}@example.com": 1 for i in range(1, readers + 1)}
    assert "taken by another sender" in err
