"""The mail queue: sign-ups and transactional emails, handled after the request commits.

A web request only stores a QueuedMail row. A background thread of the web process (and
`newsletter web drain-mail`) claims each due row, decides in one short transaction what a
sign-up calls for, and sends the email with no transaction open, so a slow relay never
holds a database lock or keeps a page waiting. A failed send is retried with a growing
delay, and a row claimed by a process that died is taken again when its claim runs out.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from newsletter.audience import signup as service
from newsletter.content.headers import envelope_address
from newsletter.content.mime import envelope_sender
from newsletter.content.notices import Notice, build_notice
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NotFound, TransportError
from newsletter.core.models import QueuedMail, Subscriber, SubscriberStatus, utcnow
from newsletter.delivery.transports import Outcome, OutgoingMessage, send_one

log = logging.getLogger(__name__)

CLAIM_SECONDS = 300  # a claimed row waits this long before another process takes it
MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 60
POLL_SECONDS = 60


@dataclass(frozen=True)
class Claimed:
    """A queued row this process now handles."""

    id: int
    kind: str
    attempts: int


def claim_next(app: App, now: datetime | None = None) -> Claimed | None:
    """Claim the oldest due row, or return None when nothing is due."""
    now = now or utcnow()
    with app.transaction() as session:
        row = session.execute(
            select(QueuedMail.id, QueuedMail.kind, QueuedMail.attempts)
            .where(QueuedMail.done_at.is_(None), QueuedMail.next_attempt_at <= now)
            .order_by(QueuedMail.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        # Only the process whose update matched the old state owns the row.
        taken = session.execute(
            update(QueuedMail)
            .where(QueuedMail.id == row.id, QueuedMail.next_attempt_at <= now)
            .values(
                next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS),
                attempts=QueuedMail.attempts + 1,
            )
        ).rowcount
    return Claimed(row.id, row.kind, row.attempts + 1) if taken else None


def handle(app: App, claimed: Claimed) -> None:
    """Decide a sign-up if it is one, then send the email it calls for."""
    signup = claimed.kind == service.SIGNUP
    notice = _decide(app, claimed.id) if signup else _notice(app, claimed.id)
    if notice is None:
        _finish(app, claimed.id)
        return
    try:
        send_notice(app.settings, notice)
    except (TransportError, InputError, OSError) as exc:
        _retry(app, claimed, str(exc))
        return
    _finish(app, claimed.id)


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
        if queued.kind == "confirm" and confirmed:
            return None  # confirmed meanwhile: the link has nothing left to do
        name = subscriber.name if confirmed else ""
        signup_id = int(queued.payload.get("signup", 0))
        return Notice(
            queued.kind, subscriber.id, subscriber.email, name, subscriber.link_key, signup_id
        )


def _finish(app: App, queued_id: int) -> None:
    with app.transaction() as session:
        session.execute(
            update(QueuedMail).where(QueuedMail.id == queued_id).values(done_at=utcnow())
        )


def _retry(app: App, claimed: Claimed, error: str) -> None:
    now = utcnow()
    values: dict[str, object] = {"last_error": error[:1000]}
    if claimed.attempts >= MAX_ATTEMPTS:
        log.error("gave up on a queued %s email: %s", claimed.kind, error)
        values["done_at"] = now
    else:
        delay = RETRY_BASE_SECONDS * 2 ** (claimed.attempts - 1)
        log.warning("a queued %s email was not sent (retry in %ds): %s", claimed.kind, delay, error)
        values["next_attempt_at"] = now + timedelta(seconds=delay)
    with app.transaction() as session:
        session.execute(update(QueuedMail).where(QueuedMail.id == claimed.id).values(**values))


def drain(app: App) -> int:
    """Handle every due row; return how many were handled."""
    handled = 0
    while (claimed := claim_next(app)) is not None:
        try:
            handle(app, claimed)
        except NotFound:
            _finish(app, claimed.id)
        handled += 1
    return handled


class MailQueue:
    """The web process's sender: one thread, woken after each sign-up and every minute."""

    def __init__(self, app: App, poll_seconds: float = POLL_SECONDS) -> None:
        self.app = app
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once); it first sends whatever an earlier process left."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mail-queue", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Ask the thread to look for due rows now."""
        self._idle.clear()
        self._wake.set()
        self.start()

    def _run(self) -> None:
        self._wake.set()
        while True:
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            try:
                drain(self.app)
            except Exception:  # the thread must outlive a database hiccup
                log.exception("the mail queue could not be drained")
            if not self._wake.is_set():
                self._idle.set()
