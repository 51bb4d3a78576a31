"""Operational safety of `newsletter send`: one run per edition, --yes from cron, SIGTERM,
and a database that is locked or full."""

from __future__ import annotations

import email
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from newsletter.core.leases import acquire_lease, lease_holder
from newsletter.core.models import Base, Delivery, DeliveryStatus, Lease, utcnow
from newsletter.delivery import service as sending
from tests import factories as f
from tests.factories import dump_database
from tests.test_crash_safety import _lines, _send, _start_server, _wait_until_received

SIGTERM_SUBSCRIBERS = 3000
CONNECTIONS = 4
FULL_SUBSCRIBERS = 1000
FULL_DATABASE = Path(__file__).with_name("full_database.py")
PG_BLOCK = 8192


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


# -- a database that refuses: one line, nothing lost -------------------------------------------


@contextmanager
def _locked_database(app, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:  # noqa: ANN001
    """Hold the whole database under another connection's lock; a wait for it ends in 1 s."""
    url = make_url(app.settings.database_url)
    if url.get_backend_name() == "sqlite":
        # The command reads newsletter.toml in its working folder: 30 s by default.
        Path("newsletter.toml").write_text("sqlite_busy_timeout = 1\n", encoding="utf-8")
        holder = sqlite3.connect(url.database, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            holder.close()
        return
    with app.engine.begin() as conn:  # as a DBA may set it; by default a lock is awaited
        conn.exec_driver_sql(f"ALTER DATABASE {url.database} SET lock_timeout = '1s'")
    tables = ", ".join(["alembic_version", *(t.name for t in Base.metadata.sorted_tables)])
    with app.engine.connect() as conn, conn.begin():  # as a migration run elsewhere would
        conn.exec_driver_sql(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        yield


def test_a_send_that_meets_a_locked_database_says_so_in_one_line_and_changes_nothing(
    app, settings, run, monkeypatch
):
    _edition_with(app, 3)
    before = dump_database(app.engine)

    with _locked_database(app, monkeypatch):
        result = run("send", "--yes", "--date", f.DAY.isoformat())

    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1, result.output
    assert "the database is locked by another process" in result.stderr
    assert dump_database(app.engine) == before and _outbox(settings) == []
    assert run("send", "--yes", "--date", f.DAY.isoformat()).exit_code == 0
    assert len(_outbox(settings)) == 3


def _recipients(settings) -> list[str]:  # noqa: ANN001
    """Return the Delivered-To address of every message in the outbox."""
    found = []
    for path in _outbox(settings):
        with path.open("rb") as fh:
            found.append(email.message_from_binary_file(fh)["Delivered-To"])
    return found


@contextmanager
def _little_room(app, spare: int) -> Iterator[list[str]]:  # noqa: ANN001
    """Let the deliveries grow by `spare` pages only; yield the command that then sends.

    SQLite: every connection of the command caps the file's size (see full_database.py).
    PostgreSQL: the deliveries table moves into a tablespace on a small tmpfs, filled but for
    `spare` blocks. On leaving, the room comes back.
    """
    url = make_url(app.settings.database_url)
    if url.get_backend_name() == "sqlite":
        yield [sys.executable, str(FULL_DATABASE), str(spare)]
        return
    space = Path(tempfile.mkdtemp(prefix="newsletter-room-"))  # the server reaches /tmp
    mount = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(space)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        space.rmdir()
        pytest.skip("a full disk under PostgreSQL needs root, to mount a small tmpfs")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")  # no tablespace in a transaction
    name = f"room_{url.database}"
    try:
        shutil.chown(space, "postgres")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE TABLESPACE {name} LOCATION '{space}'")
            conn.exec_driver_sql(f"ALTER TABLE deliveries SET TABLESPACE {name}")
        free = os.statvfs(space)
        (space / "filler").write_bytes(bytes(free.f_bavail * free.f_frsize - spare * PG_BLOCK))
        try:
            yield [sys.executable, "-m", "newsletter"]
        finally:
            (space / "filler").unlink()
            with admin.connect() as conn:
                conn.exec_driver_sql("ALTER TABLE deliveries SET TABLESPACE pg_default")
                conn.exec_driver_sql(f"DROP TABLESPACE {name}")
    finally:
        admin.dispose()
        subprocess.run(["umount", str(space)], check=True)
        space.rmdir()


# Room for a few claims and answers, not for all: SQLite pages; PostgreSQL blocks, of which the
# free space map of the growing table takes three. With none, the space left in the table's
# pages is all there is (none on SQLite: its first claim fails).
MID_SEND_ROOM = {"sqlite": 3, "postgresql": 6}


@pytest.mark.parametrize("mid_send", [False, True], ids=["no-room-left", "some-room-left"])
def test_a_database_that_fills_up_stops_the_send_with_one_line_and_loses_nobody(
    app, settings, env, tmp_path, mid_send
):
    _edition_with(app, FULL_SUBSCRIBERS)
    sending.plan(app, f.DAY)  # planned while there was room: the send claims and records
    (tmp_path / "newsletter.toml").write_text("send_batch_size = 10\n", encoding="utf-8")
    run_env = {**os.environ, **env}
    send = ["send", "--yes", "--date", f.DAY.isoformat()]
    room = MID_SEND_ROOM[app.engine.dialect.name] if mid_send else 0

    with _little_room(app, room) as command:
        full = subprocess.run([*command, *send], env=run_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    assert full.returncode == 1, full.stderr
    assert full.stderr.count("\n") == 1, full.stderr
    assert full.stderr.startswith("Error: the database or its disk is full"), full.stderr
    statuses = _statuses(app)
    assert statuses["sent"] < FULL_SUBSCRIBERS and (statuses["sent"] > 0 or not mid_send)
    # Delivered but not recorded: at most the message in hand when the answer could not be.
    assert len(_outbox(settings)) - statuses["sent"] in (0, 1)
    assert f"{FULL_SUBSCRIBERS - statuses['sent']} deliveries are still owed" in full.stderr
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 0

    again = subprocess.run([sys.executable, "-m", "newsletter", *send], env=run_env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip

    assert again.returncode == 0, again.stderr
    received = Counter(_recipients(settings))
    assert set(received) == {f"s{i}@example.com" for i in range(1, FULL_SUBSCRIBERS + 1)}
    assert sum(n - 1 for n in received.values()) <= 1  # one connection: at most the one in hand
    assert _statuses(app) == Counter({"sent": FULL_SUBSCRIBERS})
