"""Named leases in the database: one holder at a time, with an expiry, renewed while held."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import case, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.core.errors import NewsletterError
from newsletter.core.models import Lease, utcnow

log = logging.getLogger(__name__)


class LeaseTaken(NewsletterError):
    """Another live process holds the lease."""


def acquire_lease(
    name: str, holder: str, now: datetime, seconds: float, *, session: Session
) -> bool:
    """Take the named lease when it is missing, expired or already ours; renew it if ours."""
    until = now + timedelta(seconds=seconds)
    taken = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.expires_at < now, Lease.holder == holder))
        .values(
            holder=holder,
            expires_at=until,
            acquired_at=case((Lease.holder == holder, Lease.acquired_at), else_=now),
        )
        .execution_options(synchronize_session=False)
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
    result = session.execute(
        delete(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def lease_holder(name: str, now: datetime, *, session: Session) -> str | None:
    """Return who holds the lease now, or None when it is free or expired."""
    lease = session.get(Lease, name, populate_existing=True)
    return lease.holder if lease is not None and lease.expires_at >= now else None


def holder_is_dead_here(holder: str) -> bool:
    """Tell whether a "host:pid" holder names a process of this host that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


def _take(sessions: sessionmaker[Session], name: str, holder: str, seconds: float) -> str | None:
    """Take the lease (from a dead local holder too); return the live holder that has it."""
    with sessions.begin() as session:
        if acquire_lease(name, holder, utcnow(), seconds, session=session):
            return None
        current = lease_holder(name, utcnow(), session=session)
        # A sender killed with -9 keeps its lease until it expires: free it at once.
        if current is not None and holder_is_dead_here(current):
            release_lease(name, current, session=session)
            if acquire_lease(name, holder, utcnow(), seconds, session=session):
                return None
        return current or "another process"


@contextmanager
def hold_lease(
    sessions: sessionmaker[Session], name: str, holder: str, seconds: float = 60.0
) -> Iterator[None]:
    """Hold the named lease for the block, renewing it in the background; LeaseTaken if held."""
    current = _take(sessions, name, holder, seconds)
    if current is not None:
        raise LeaseTaken(f"{name} is held by {current}")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(seconds / 3):
            try:
                with sessions.begin() as session:
                    acquire_lease(name, holder, utcnow(), seconds, session=session)
            except OperationalError as exc:  # a busy database: try again at the next beat
                log.warning("could not renew lease %s: %s", name, exc)

    renewer = threading.Thread(target=renew, name=f"lease-{name}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with sessions.begin() as session:
            release_lease(name, holder, session=session)
