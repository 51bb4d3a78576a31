"""Several `newsletter worker` processes share one edition on PostgreSQL; one is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter.delivery import service as sending
from newsletter.runners.worker import Worker, with_connections
from tests import factories as f
from tests.test_crash_safety import _lines, _start_server

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBERS = 20_000
WORKERS = 3
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
