"""Who receives digests: the one rule the scheduler's groups and the planning both ask."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, func

from newsletter.core.models import Subscriber, SubscriberStatus, Suppression


def receives_digests() -> ColumnElement[bool]:
    """Select the subscribers who receive digests: confirmed, not paused, not suppressed."""
    return and_(
        Subscriber.status == SubscriberStatus.CONFIRMED,
        Subscriber.paused.is_(False),
        ~exists().where(func.lower(Suppression.email) == func.lower(Subscriber.email)),
    )
