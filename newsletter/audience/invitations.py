"""Ask the pending subscribers an admin added to confirm: the sign-up form's double opt-in.

An invitation is a sign-up in the subscriber's consent history, holding their stored
choices, and a queued confirmation email whose link confirms that sign-up only, as the
form's does. The form's limit of one email per address per `mail_interval_minutes` holds,
and a suppressed address is never asked. The mail queue sends what is queued here, after
the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.audience.limits import Limits
from newsletter.audience.signup import (
    SIGNUP,
    confirmation_notice,
    preferences_of,
    prefs_to_dict,
    record_event,
    take_mail_limit,
)
from newsletter.audience.subscribers import get_subscriber
from newsletter.audience.suppressions import suppression_reason
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NotFound
from newsletter.core.models import QueuedMail, Subscriber, SubscriberStatus, utcnow

SOURCE = "invitation"
PAGE_SIZE = 500
SHOWN_PROBLEMS = 5  # an error line names this many addresses, then counts the rest


@dataclass
class Invitations:
    """What an invitation run queued, and whom it left out and why."""

    queued: list[int] = field(default_factory=list)  # mail queue rows, for the sender
    invited: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "invited": self.invited,
            "skipped": [{"email": email, "reason": reason} for email, reason in self.skipped],
        }


def invite(
    emails: Sequence[str], *, session: Session, settings: Settings, now: datetime | None = None
) -> Invitations:
    """Ask the named subscribers to confirm; raise InputError naming any who cannot be asked.

    All or none: on an error nothing is recorded, and the caller's transaction rolls back.
    """
    invitations, problems, seen = Invitations(), [], set()
    for email in emails:
        try:
            subscriber = get_subscriber(email, session=session)
        except NotFound as exc:
            problems.append(str(exc))
            continue
        if subscriber.id in seen:  # named twice, perhaps in other capitals: asked once
            continue
        seen.add(subscriber.id)
        reason = _invite(subscriber, invitations, session=session, settings=settings, now=now)
        if reason is not None:
            problems.append(f"{subscriber.email} {reason}")
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        raise InputError(
            "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        )
    return invitations


def invite_pending(
    *,
    session: Session,
    settings: Settings,
    among: Iterable[int] | None = None,
    now: datetime | None = None,
) -> Invitations:
    """Ask every pending subscriber (or those of the ids `among`) to confirm.

    Those who cannot be asked now (suppressed, or mailed minutes ago) are skipped and listed.
    """
    invitations = Invitations()
    for page in _pending_pages(session, None if among is None else sorted(set(among))):
        for subscriber in page:
            why = _invite(subscriber, invitations, session=session, settings=settings, now=now)
            if why is not None:
                invitations.skipped.append((subscriber.email, why))
        session.expunge_all()  # keep memory flat however many are pending
    return invitations


def _pending_pages(session: Session, ids: list[int] | None) -> Iterator[list[Subscriber]]:
    """Yield the pending subscribers by id, a page at a time."""
    pending = select(Subscriber).where(Subscriber.status == SubscriberStatus.PENDING)
    if ids is not None:
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = ids[start : start + PAGE_SIZE]
            yield list(
                session.scalars(pending.where(Subscriber.id.in_(chunk)).order_by(Subscriber.id))
            )
        return
    last_id = 0
    while page := list(
        session.scalars(
            pending.where(Subscriber.id > last_id).order_by(Subscriber.id).limit(PAGE_SIZE)
        )
    ):
        yield page
        last_id = page[-1].id


def _invite(
    subscriber: Subscriber,
    invitations: Invitations,
    *,
    session: Session,
    settings: Settings,
    now: datetime | None,
) -> str | None:
    """Record a sign-up and queue its confirmation email; or return why it cannot be."""
    now = now or utcnow()
    reason = _cannot_invite(subscriber, session=session, settings=settings, now=now)
    if reason is not None:
        return reason
    consent = {
        "source": SOURCE,
        "recorded_at": now.isoformat(),
        "added_as": subscriber.consent_source,
    }
    details = {"prefs": prefs_to_dict(preferences_of(subscriber)), "consent": consent}
    signup = record_event(subscriber, SIGNUP, details=details, source=SOURCE, now=now)
    session.flush()
    notice = confirmation_notice(subscriber, signup, now=now)
    queued = QueuedMail(
        kind=notice.kind,
        email=subscriber.email,
        subscriber_id=subscriber.id,
        payload={"signup": signup.id},
        created_at=now,
        next_attempt_at=now,
    )
    session.add(queued)
    session.flush()
    invitations.queued.append(queued.id)
    invitations.invited.append(subscriber.email)
    return None


def _cannot_invite(
    subscriber: Subscriber, *, session: Session, settings: Settings, now: datetime
) -> str | None:
    """Return why this subscriber may not be asked to confirm now, or None."""
    if subscriber.status == SubscriberStatus.CONFIRMED:
        return "is already confirmed: there is nothing to confirm"
    if subscriber.status != SubscriberStatus.PENDING:
        return f"is {subscriber.status.value}: only they can subscribe again, on the sign-up page"
    reason = suppression_reason(subscriber.email, session=session)
    if reason is not None:
        return f"is suppressed ({reason}): it is never mailed again"
    if not take_mail_limit(subscriber.email, session=session, settings=settings, now=now):
        minutes = Limits.from_settings(settings).mail_interval_minutes
        return (
            f"was sent a sign-up email less than {minutes} minutes ago "
            "(setting mail_interval_minutes): try again later"
        )
    return None
