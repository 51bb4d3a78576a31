"""Named leases in the database, process identity, and the heartbeat that keeps claims alive.

A lease has one holder at a time and an expiry; its holder renews it while it works. A holder
is named "host:pid", so a process can tell whether a holder on its own host still runs. Leases
are taken, renewed and judged on the database's clock (`db_now`), so a holder whose own clock
runs ahead cannot take a lease from a live one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import case, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.core.db import database_error, db_now, execute_dml
from newsletter.core.errors import NewsletterError
from newsletter.core.models import Lease
from newsletter.core.runner import Runner

log = logging.getLogger(__name__)

PROC = Path("/proc")
# Process states in /proc/PID/stat of a process that has exited: zombie, dead.
_EXITED_STATES = frozenset("ZX")


class LeaseTaken(NewsletterError):
    """Another live process holds the lease."""


# -- who we are, and whether a holder still runs ----------------------------------------------


def default_worker_id(host: str = "") -> str:
    """Name this process "host:pid" (host: the given name, else the machine's host name)."""
    return f"{host or socket.gethostname()}:{os.getpid()}"


def host_of(holder: str) -> str:
    """Return the host part of a "host:pid" holder name."""
    return holder.rpartition(":")[0]


def pid_alive(pid: int) -> bool:
    """Tell whether a process of this host runs; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    return _proc_state(pid) not in _EXITED_STATES


def _proc_state(pid: int) -> str:
    """Return the state letter of /proc/PID/stat, or "" where /proc does not say."""
    try:
        stat = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # The command name sits in parentheses and may itself hold ") ": the state follows the last.
    return stat.rpartition(")")[2].strip()[:1]


def holder_is_dead_here(holder: str, here: str | None = None) -> bool:
    """Tell whether a "host:pid" holder names a process of host `here` that no longer runs.

    `here` defaults to the machine's host name; holders of other hosts are never judged dead.
    """
    host, _, pid = holder.rpartition(":")
    if host != (here or socket.gethostname()) or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


# -- one lease: take, renew, release ----------------------------------------------------------


def acquire_lease(
    name: str,
    holder: str,
    now: datetime,
    seconds: float,
    *,
    session: Session,
    marker: bool = False,
) -> bool:
    """Take the named lease when it is missing or expired; renew it if ours.

    A marker (a "done until then" record) is taken only once it has expired, even by its
    holder, and keeps the time it was first taken, from which a retry's backoff grows.
    """
    until = now + timedelta(seconds=seconds)
    takeable = (
        Lease.expires_at <= now if marker else or_(Lease.expires_at < now, Lease.holder == holder)
    )
    first_taken = (
        Lease.acquired_at
        if marker
        else case((Lease.holder == holder, Lease.acquired_at), else_=now)
    )
    taken = execute_dml(
        session,
        update(Lease)
        .where(Lease.name == name, takeable)
        .values(holder=holder, expires_at=until, acquired_at=first_taken)
        .execution_options(synchronize_session=False),
    ).rowcount
    return bool(taken) or _insert_lease(name, holder, now, until, session=session)


def _insert_lease(
    name: str, holder: str, now: datetime, until: datetime, *, session: Session
) -> bool:
    if session.get(Lease, name) is not None:
        return False
    try:
        with session.begin_nested():  # a racing insert loses here, not the whole transaction
            session.execute(
                insert(Lease).values(name=name, holder=holder, expires_at=until, acquired_at=now)
            )
    except IntegrityError:
        return False
    return True


def release_lease(name: str, holder: str, *, session: Session) -> bool:
    """Give the lease up if we hold it."""
    result = execute_dml(
        session,
        delete(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .execution_options(synchronize_session=False),
    )
    return bool(result.rowcount)


def lease_holder(name: str, now: datetime | None = None, *, session: Session) -> str | None:
    """Return who holds the lease at `now` (default: the database's now), or None when free."""
    now = now or db_now(session)
    lease = session.get(Lease, name, populate_existing=True)
    return lease.holder if lease is not None and lease.expires_at >= now else None


def take_lease(
    sessions: sessionmaker[Session], name: str, holder: str, seconds: float
) -> str | None:
    """Take or renew the lease (from a dead holder of our host too); return who else has it.

    None means we hold it now, for `seconds` more.
    """
    with sessions.begin() as session:
        now = db_now(session)
        if acquire_lease(name, holder, now, seconds, session=session):
            return None
        current = lease_holder(name, now, session=session)
        # A process killed with -9 keeps its lease until it expires: free it at once.
        if current is not None and holder_is_dead_here(current, host_of(holder)):
            release_lease(name, current, session=session)
            if acquire_lease(name, holder, now, seconds, session=session):
                return None
        return current or "another process"


def give_up_lease(sessions: sessionmaker[Session], name: str, holder: str) -> bool:
    """Release the lease in a transaction of its own; True if we held it."""
    with sessions.begin() as session:
        return release_lease(name, holder, session=session)


class Heartbeat(Runner):
    """Calls `beat` every `interval` seconds on a thread of its own until stopped.

    A beat that meets a busy database is logged and tried again at the next one: the lease it
    renews outlives a few missed beats.
    """

    def __init__(self, name: str, interval: float, beat: Callable[[], object]) -> None:
        super().__init__(poll=interval)
        self._beat = beat
        self._thread = threading.Thread(target=self.run, name=f"heartbeat-{name}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, *_: object) -> None:
        """Stop beating; returns once no beat is running."""
        super().stop()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def run(self) -> None:
        self.snooze(self.poll_seconds)  # what it renews was just taken: the first beat waits
        super().run()

    def work(self) -> bool:
        try:
            self._beat()
        except OperationalError as exc:
            log.warning("%s: missed a beat: %s", self._thread.name, database_error(exc))
        return False


@contextmanager
def hold_lease(
    sessions: sessionmaker[Session], name: str, holder: str, seconds: float = 60.0
) -> Iterator[None]:
    """Hold the named lease for the block, renewing it in the background; LeaseTaken if held."""
    current = take_lease(sessions, name, holder, seconds)
    if current is not None:
        raise LeaseTaken(f"{name} is held by {current}")
    try:
        renew = partial(take_lease, sessions, name, holder, seconds)
        with Heartbeat(f"lease-{name}", seconds / 3, renew):
            yield
    finally:
        try:
            give_up_lease(sessions, name, holder)
        except OperationalError as exc:  # it runs out on its own; a dead holder here frees it
            log.warning("could not release the %s lease: %s", name, database_error(exc))
