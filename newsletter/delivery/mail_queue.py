"""The mail queue: sign-ups and transactional emails, handled after the request commits.

A web request only stores a QueuedMail row. A background thread of the web process (and
`newsletter subscribers send-mail`) claims each due row as senders claim deliveries: its
"host:pid" and a lease on the database's clock, renewed while it works, so the row of a
process of this host that is gone comes back at once and one elsewhere when its lease ends.
It decides in one short transaction what a sign-up calls for, and sends the email with no
transaction open, so a slow relay never holds a database lock or keeps a page waiting. A
failed send is retried on the delivery settings' growing delay (`retry_base_seconds`, at
most `retry_max_seconds`) for as long as its link could still be used: at least
`max_attempts` tries, and until `confirm_max_age_hours` after the sign-up. Then it is given
up; `newsletter status` shows what waits and what was given up, and
`newsletter subscribers send-mail` sends them (again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update

from newsletter.audience import signup as service
from newsletter.content.headers import envelope_address
from newsletter.content.mime import envelope_sender
from newsletter.content.notices import Notice, build_notice
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.db import db_now, execute_dml
from newsletter.core.errors import InputError, NotFound, TransportError
from newsletter.core.leases import Heartbeat, default_worker_id, holder_is_dead_here, host_of
from newsletter.core.models import QueuedMail, Subscriber, SubscriberStatus
from newsletter.core.runner import Runner
from newsletter.delivery.recorder import capped_backoff
from newsletter.delivery.transports import Outcome, OutgoingMessage, send_one

log = logging.getLogger(__name__)

POLL_SECONDS = 60  # the longest the thread sleeps; it wakes earlier for a retry due sooner
ERROR_MAX = 1000  # characters of the last error kept on a row


@dataclass(frozen=True)
class Claimed:
    """A queued row this process now handles."""

    id: int
    kind: str
    attempts: int
    worker: str


@dataclass
class Drained:
    """What one pass over the queue did."""

    sent: int = 0
    unsent: int = 0  # nothing to send: confirmed meanwhile, suppressed, mailed just before
    retrying: int = 0
    failed: int = 0
    last_error: str | None = None

    @property
    def handled(self) -> int:
        return self.sent + self.unsent + self.retrying + self.failed


# -- claiming ---------------------------------------------------------------------------------


def _owed(now: datetime) -> ColumnElement[bool]:
    """Select the rows to handle at `now` (the database's): due, and not under a live claim."""
    # A new row is due at once, whatever the clock of the web host that stored it says.
    due = or_(QueuedMail.attempts == 0, QueuedMail.next_attempt_at <= now)
    free = or_(QueuedMail.claimed_by.is_(None), QueuedMail.lease_until < now)
    return and_(QueuedMail.done_at.is_(None), due, free)


def claim_next(app: App, worker: str, *, skip: frozenset[int] = frozenset()) -> Claimed | None:
    """Claim the oldest due row (not one of `skip`), or return None when nothing is due."""
    lease = timedelta(seconds=app.settings.claim_lease_seconds)
    with app.transaction() as session:
        now = db_now(session)
        query = select(QueuedMail.id, QueuedMail.kind, QueuedMail.attempts).where(_owed(now))
        if skip:
            query = query.where(QueuedMail.id.not_in(sorted(skip)))
        row = session.execute(query.order_by(QueuedMail.id).limit(1)).first()
        if row is None:
            return None
        return _take(session, row, worker, now, lease)


def claim_row(app: App, worker: str, queued_id: int) -> Claimed | None:
    """Claim this row if it is still owed, or return None (handled or held elsewhere)."""
    lease = timedelta(seconds=app.settings.claim_lease_seconds)
    with app.transaction() as session:
        now = db_now(session)
        query = select(QueuedMail.id, QueuedMail.kind, QueuedMail.attempts)
        row = session.execute(query.where(QueuedMail.id == queued_id, _owed(now))).first()
        return None if row is None else _take(session, row, worker, now, lease)


def _take(session: Any, row: Any, worker: str, now: datetime, lease: timedelta) -> Claimed | None:
    # Only the process whose update matched the old state owns the row.
    taken = session.execute(
        update(QueuedMail)
        .where(QueuedMail.id == row.id, _owed(now))
        .values(claimed_by=worker, lease_until=now + lease, attempts=QueuedMail.attempts + 1)
    ).rowcount
    return Claimed(row.id, row.kind, row.attempts + 1, worker) if taken else None


def renew_claims(app: App, worker: str) -> None:
    """Extend the lease of the rows this process is handling."""
    lease = timedelta(seconds=app.settings.claim_lease_seconds)
    with app.transaction() as session:
        session.execute(
            update(QueuedMail)
            .where(QueuedMail.claimed_by == worker, QueuedMail.done_at.is_(None))
            .values(lease_until=db_now(session) + lease)
        )


def release_dead_claims(app: App, here: str) -> int:
    """Hand back rows claimed by processes of host `here` that no longer run."""
    with app.reading() as session:
        holders = session.scalars(
            select(QueuedMail.claimed_by)
            .where(QueuedMail.done_at.is_(None), QueuedMail.claimed_by.is_not(None))
            .distinct()
        ).all()
    dead = sorted(h for h in holders if h and holder_is_dead_here(h, here))
    if not dead:
        return 0
    with app.transaction() as session:
        return execute_dml(
            session,
            update(QueuedMail)
            .where(QueuedMail.claimed_by.in_(dead), QueuedMail.done_at.is_(None))
            .values(claimed_by=None, lease_until=None),
        ).rowcount


# -- handling one row -------------------------------------------------------------------------


def handle(app: App, claimed: Claimed, drained: Drained) -> None:
    """Decide a sign-up if it is one, then send the email it calls for."""
    signup = claimed.kind == service.SIGNUP
    notice = _decide(app, claimed.id) if signup else _notice(app, claimed.id)
    if notice is None:
        _finish(app, claimed)
        drained.unsent += 1
        return
    try:
        send_notice(app.settings, notice)
    except (TransportError, InputError, OSError) as exc:
        drained.last_error = str(exc)[:ERROR_MAX]
        if _retry(app, claimed, drained.last_error):
            drained.retrying += 1
        else:
            drained.failed += 1
        return
    _finish(app, claimed)
    drained.sent += 1


def send_notice(settings: Settings, notice: Notice) -> None:
    """Send one transactional email through the configured transport, or raise."""
    data = build_notice(settings, notice)
    recipient = envelope_address(notice.email)
    message = OutgoingMessage(0, envelope_sender(settings), recipient, data, crlf_only=True)
    result = send_one(settings.transport, message)
    if result.outcome != Outcome.SENT:
        raise TransportError(f"the {notice.kind} email was not accepted: {result.reply}")


def _decide(app: App, queued_id: int) -> Notice | None:
    """Apply a queued sign-up; keep the email it calls for on the row for retries."""
    with app.transaction() as session:
        queued = session.get(QueuedMail, queued_id)
        if queued is None or queued.done_at is not None:
            return None
        prefs = service.prefs_from_dict(queued.payload.get("prefs", {}))
        record = queued.payload.get("consent", {})
        consent = service.ConsentRecord(
            ip=record.get("ip", ""),
            user_agent=record.get("user_agent", ""),
            form_version=record.get("form_version", service.FORM_VERSION),
            text=record.get("text", ""),
        )
        notice = service.subscribe(
            queued.email, prefs, consent, session=session, settings=app.settings
        )
        # Decided once: a retry sends the email and never records the sign-up again; it
        # keeps the sign-up that the email's link confirms.
        queued.payload = {"signup": notice.signup_id} if notice and notice.signup_id else {}
        if notice is not None:
            queued.kind, queued.subscriber_id = notice.kind, notice.subscriber_id
        return notice


def _notice(app: App, queued_id: int) -> Notice | None:
    """Rebuild a decided row's email from the subscriber as they are now."""
    with app.reading() as session:
        queued = session.get(QueuedMail, queued_id)
        if queued is None or queued.subscriber_id is None:
            return None
        subscriber = session.get(Subscriber, queued.subscriber_id)
        if subscriber is None:
            return None
        confirmed = subscriber.status == SubscriberStatus.CONFIRMED
        signup_id = int(queued.payload.get("signup", 0))
        if queued.kind == "confirm" and not _still_to_confirm(subscriber, signup_id, session):
            return None  # confirmed or closed meanwhile: the link has nothing left to do
        name = subscriber.name if confirmed else ""
        return Notice(
            queued.kind, subscriber.id, subscriber.email, name, subscriber.link_key, signup_id
        )


def _still_to_confirm(subscriber: Subscriber, signup_id: int, session: Any) -> bool:
    """Tell whether the sign-up a confirmation was sent for can still be confirmed.

    A confirmed reader whose address was suppressed can: they signed up to rejoin.
    """
    try:
        return service.signup_to_confirm(subscriber, signup_id or None, session=session) is not None
    except InputError:
        return False


def _held(claimed: Claimed) -> ColumnElement[bool]:
    """Select the claimed row while this process still holds it: only the claimant records."""
    return and_(QueuedMail.id == claimed.id, QueuedMail.claimed_by == claimed.worker)


def _finish(app: App, claimed: Claimed) -> None:
    with app.transaction() as session:
        session.execute(
            update(QueuedMail)
            .where(_held(claimed))
            .values(done_at=db_now(session), lease_until=None)
        )


def _retry(app: App, claimed: Claimed, error: str) -> bool:
    """Schedule the next try, or give the email up once it could no longer be used.

    Return True when it will be tried again.
    """
    s = app.settings
    delay = timedelta(seconds=capped_backoff(claimed.attempts, s.retry_base_seconds,
                                             s.retry_max_seconds))  # fmt: skip
    with app.transaction() as session:
        now = db_now(session)
        created = session.scalar(select(QueuedMail.created_at).where(QueuedMail.id == claimed.id))
        usable_until = (created or now) + timedelta(hours=s.confirm_max_age_hours)
        again = claimed.attempts < s.max_attempts or now + delay <= usable_until
        values: dict[str, object] = {"last_error": error, "claimed_by": None, "lease_until": None}
        if again:
            values["next_attempt_at"] = now + delay
        else:
            values["done_at"] = values["failed_at"] = now
        session.execute(update(QueuedMail).where(_held(claimed)).values(**values))
    if again:
        log.warning(
            "a queued %s email was not sent (retry in %.0fs): %s",
            claimed.kind, delay.total_seconds(), error,
        )  # fmt: skip
    else:
        log.error("gave up on a queued %s email after %d tries: %s",
                  claimed.kind, claimed.attempts, error)  # fmt: skip
    return again


def drain(app: App) -> int:
    """Handle every due row once (a row that fails waits for its retry); return how many."""
    return drain_report(app).handled


def drain_report(app: App) -> Drained:
    """Handle every due row once (a row that fails waits for its retry); say what happened."""
    worker = default_worker_id(app.settings.host_name)
    release_dead_claims(app, host_of(worker))
    drained, tried = Drained(), set[int]()
    claimed = claim_next(app, worker)
    if claimed is None:
        return drained
    beat = partial(renew_claims, app, worker)
    with Heartbeat(f"mail-{worker}", app.settings.claim_lease_seconds / 3, beat):
        while claimed is not None:
            tried.add(claimed.id)
            _handle_claimed(app, claimed, drained)
            claimed = claim_next(app, worker, skip=frozenset(tried))
    return drained


def send_queued(
    app: App, queued_ids: Sequence[int], *, on_each: Callable[[int], None] | None = None
) -> Drained:
    """Send these queued emails now, each as the web's sender would; say what happened.

    A row another process already holds or handled is left to it. `on_each` receives 1
    after each row.
    """
    worker = default_worker_id(app.settings.host_name)
    drained = Drained()
    beat = partial(renew_claims, app, worker)
    with Heartbeat(f"mail-{worker}", app.settings.claim_lease_seconds / 3, beat):
        for queued_id in queued_ids:
            claimed = claim_row(app, worker, queued_id)
            if claimed is not None:
                _handle_claimed(app, claimed, drained)
            if on_each is not None:
                on_each(1)
    return drained


def _handle_claimed(app: App, claimed: Claimed, drained: Drained) -> None:
    try:
        handle(app, claimed, drained)
    except NotFound:
        _finish(app, claimed)
        drained.unsent += 1


def seconds_to_next_due(app: App) -> float | None:
    """Return how long until a waiting row falls due (or a claim on one runs out), if any."""
    due_at = case(
        (QueuedMail.claimed_by.is_not(None), QueuedMail.lease_until),
        else_=QueuedMail.next_attempt_at,
    )
    with app.reading() as session:
        due = session.scalar(select(func.min(due_at)).where(QueuedMail.done_at.is_(None)))
        return None if due is None else (due - db_now(session)).total_seconds()


# -- what the admin sees and does -------------------------------------------------------------


def queue_status(app: App) -> dict[str, object]:
    """Count the emails waiting for a retry and those given up; the newest of their errors."""
    waiting = and_(QueuedMail.done_at.is_(None), QueuedMail.last_error.is_not(None))
    failed = QueuedMail.failed_at.is_not(None)
    with app.reading() as session:
        counts = session.execute(
            select(
                func.count().filter(waiting),
                func.count().filter(failed),
            ).select_from(QueuedMail)
        ).one()
        last_error = session.scalar(
            select(QueuedMail.last_error)
            .where(or_(waiting, failed))
            .order_by(QueuedMail.id.desc())
            .limit(1)
        )
    return {"waiting": counts[0], "failed": counts[1], "last_error": last_error}


def send_waiting(app: App) -> Drained:
    """Send every waiting email now, and again those given up (each tried anew)."""
    with app.transaction() as session:
        now = db_now(session)
        session.execute(
            update(QueuedMail)
            .where(QueuedMail.failed_at.is_not(None))
            .values(failed_at=None, done_at=None, attempts=0, next_attempt_at=now)
        )
        session.execute(
            update(QueuedMail)
            .where(QueuedMail.done_at.is_(None), QueuedMail.next_attempt_at > now)
            .values(next_attempt_at=now)
        )
    return drain_report(app)


class MailQueue(Runner):
    """The web process's sender: a runner on its own thread, woken after each sign-up and when
    a retry is due; it first sends whatever an earlier process left."""

    def __init__(self, app: App, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__(poll=poll_seconds)
        self.app = app
        self._wake = threading.Event()
        self._wake.set()  # the first round looks at once
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self.run, name="mail-queue", daemon=True)
                self._thread.start()
                # Whoever closes the app stops its sender first: no thread outlives its database.
                self.app.on_close(self.shut)

    def shut(self, timeout: float = 10.0) -> None:
        """Stop the thread and wait for the email in flight (at most `timeout` seconds)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask the thread to look for due rows now."""
        self._wake.set()
        self.start()

    def work(self) -> bool:
        self._wake.clear()
        try:
            drain(self.app)
        except Exception:  # the web's sender must outlive a database hiccup: next round
            log.exception("the mail queue could not be drained")
        return False  # every round sleeps until a wake or the next due row

    def snooze(self, seconds: float) -> None:
        """Sleep until woken, stopped, or the next row falls due (at most `seconds`)."""
        self._wake.wait(self._sleep(seconds))

    def interrupt(self) -> None:
        self._wake.set()  # a stop wakes the sleep; the email in flight finishes

    def _sleep(self, longest: float) -> float:
        """Return how long to wait for the next due row, at most `longest`."""
        try:
            due = seconds_to_next_due(self.app)
        except Exception:  # the database is busy or away: look again at the next poll
            return longest
        return longest if due is None else min(max(due, 0.05), longest)
