"""The web's timing rules and rate limits, shared by every web process.

Counters live in the rate_limits table; their keys are keyed hashes, never the addresses or
IPs they count.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings, default
from newsletter.core.db import insert_or_ignore
from newsletter.core.errors import InputError
from newsletter.core.models import RateLimit, utcnow
from newsletter.core.tokens import keyed_digest

HOUR = timedelta(hours=1)


class RateLimited(InputError):
    """Too many requests from one address or network in a short time."""


@dataclass(frozen=True)
class Limits:
    """The web's timing rules, from the settings."""

    confirm_max_age_hours: int = default("confirm_max_age_hours")
    pending_max_age_days: int = default("pending_max_age_days")
    mail_interval_minutes: int = default("mail_interval_minutes")
    subscribe_per_ip_per_hour: int = default("subscribe_per_ip_per_hour")
    resubscribe_window_hours: int = default("resubscribe_window_hours")
    votes_per_link_per_hour: int = default("votes_per_link_per_hour")
    votes_per_ip_per_hour: int = default("votes_per_ip_per_hour")

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Read the limits from the settings; a value under 1 raises InputError naming it."""
        values = {name: getattr(settings, name) for name in cls.__dataclass_fields__}
        for name, value in values.items():
            if value < 1:
                raise InputError(f"setting {name}: must be at least 1, got {value!r}")
        return cls(**values)


RATE_PURPOSE = b"newsletter.rate"


def rate_key(settings: Settings, kind: str, value: str) -> str:
    """Return a rate-limit key that does not reveal the IP or address it counts."""
    digest = keyed_digest(settings.secret_key, RATE_PURPOSE, value.encode())
    return f"{kind}:{digest.hex()[:40]}"


def take_rate_limit(
    key: str, *, limit: int, window: timedelta, session: Session, now: datetime | None = None
) -> bool:
    """Count one event in a fixed window; return False when the window is already full."""
    now = now or utcnow()
    # Two web processes may count the same new key at once: neither may fail.
    new_row = {"key": key, "window_start": now, "count": 0}
    session.execute(insert_or_ignore(session, RateLimit).values(new_row))
    query = select(RateLimit).where(RateLimit.key == key).with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one()
    if row.window_start + window <= now:
        row.window_start, row.count = now, 0
    if row.count >= limit:
        return False
    row.count += 1
    session.flush()
    return True


def network_of(ip: str) -> str:
    """Return what a visitor's rate limit counts: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One IPv6 host commonly holds a whole /64: counting addresses would not limit it.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def take_vote(
    link: str, ip: str, *, session: Session, settings: Settings, now: datetime | None = None
) -> None:
    """Count one vote POST of a link and of the visitor's network, or raise RateLimited.

    A reader votes on a few papers a day: anything near the limits is a script.
    """
    limits = Limits.from_settings(settings)
    counted = (
        (rate_key(settings, "vote-ip", network_of(ip)), limits.votes_per_ip_per_hour),
        (rate_key(settings, "vote-link", link), limits.votes_per_link_per_hour),
    )
    for key, limit in counted:
        if not take_rate_limit(key, limit=limit, window=HOUR, session=session, now=now):
            raise RateLimited("too many votes from this link or network: try again in an hour")
