"""What is due when: each subscriber's edition at their local hour, caught up, never twice.

Every function takes `now` (the controllable clock). Subscribers fall into a few groups of
(time zone, hour, frequency, weekday); for each group the last delivery moment before `now`
names one edition, and the group's subscribers not yet planned into it are due. The
scheduler (`runners/tick.py`) only triggers this: fetch, plan what is due, send what is owed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlalchemy.orm import Session

from newsletter.audience.eligibility import receives_digests
from newsletter.core import deliveries
from newsletter.core.app import App
from newsletter.core.config import Settings, default
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionKind,
    Frequency,
    Paper,
    Subscriber,
)
from newsletter.editions.planning import get_or_create_edition, plan_edition
from newsletter.papers.sources.registry import ScheduledSource, scheduled_sources

log = logging.getLogger(__name__)

WEEK = 7
STALE_REASON = "not sent within {hours:g} h of its delivery time (due {due})"


@dataclass(frozen=True)
class ScheduleConfig:
    """The scheduler's settings (`scheduler_*`)."""

    fetch_cron: str = default("scheduler_fetch_cron")  # of sources without a line of their own
    sources: tuple[ScheduledSource, ...] = ()
    tick_seconds: float = default("scheduler_tick_seconds")
    staleness: timedelta = timedelta(hours=default("scheduler_staleness_hours"))
    lease_seconds: float = default("scheduler_lease_seconds")
    fetch_backoff_seconds: float = default("scheduler_fetch_backoff_seconds")
    # The UTC time of day by which a day's listing is expected (default: the fetch time).
    listing_ready: time = time(6, 0)

    @property
    def fetch_crons(self) -> tuple[str, ...]:
        """Return the distinct cron lines the sources are fetched on, the default's first."""
        lines = [self.fetch_cron, *(s.cron for s in self.sources if s.cron)]
        return tuple(dict.fromkeys(lines))

    @classmethod
    def from_settings(cls, settings: Settings) -> ScheduleConfig:
        """Read the scheduler settings; ConfigError names a source that does not exist."""
        cron = settings.scheduler_fetch_cron
        ready = settings.scheduler_listing_ready
        return cls(
            fetch_cron=cron,
            sources=tuple(scheduled_sources(settings)),
            tick_seconds=settings.scheduler_tick_seconds,
            staleness=timedelta(hours=settings.scheduler_staleness_hours),
            lease_seconds=settings.scheduler_lease_seconds,
            fetch_backoff_seconds=settings.scheduler_fetch_backoff_seconds,
            listing_ready=time.fromisoformat(ready) if ready else _cron_time(cron),
        )


def _cron_time(cron: str) -> time:
    """The hour and minute a simple cron line fires at; 06:00 when they are not plain numbers."""
    fields = cron.split()
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit():
        return time(int(fields[1]) % 24, int(fields[0]) % 60)
    return ScheduleConfig.listing_ready


# -- groups and slots -------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Group:
    """Subscribers who share a delivery moment: time zone, hour, frequency and weekday."""

    timezone: str
    hour: int
    frequency: Frequency
    weekly_day: int | None = None  # only for weekly

    @property
    def kind(self) -> EditionKind:
        return EditionKind.WEEKLY if self.frequency == Frequency.WEEKLY else EditionKind.DAILY

    def clause(self) -> ColumnElement[bool]:
        """Select this group's subscribers."""
        parts = [
            Subscriber.timezone == self.timezone,
            Subscriber.delivery_hour == self.hour,
            Subscriber.frequency == self.frequency,
        ]
        if self.weekly_day is not None:
            parts.append(Subscriber.weekly_day == self.weekly_day)
        return and_(*parts)


def delivery_groups(*, session: Session) -> list[Group]:
    """Return the distinct delivery moments of the eligible subscribers."""
    rows = session.execute(
        select(
            Subscriber.timezone,
            Subscriber.delivery_hour,
            Subscriber.frequency,
            Subscriber.weekly_day,
        )
        .where(receives_digests())
        .distinct()
    )
    groups = set()
    for tz, hour, frequency, weekday in rows:
        weekly = Frequency(frequency) == Frequency.WEEKLY
        groups.add(Group(tz or "", hour, Frequency(frequency), weekday if weekly else None))
    return sorted(groups)


def zone_of(name: str, default: str = "UTC") -> ZoneInfo:
    """Return the named time zone; the default one when unset or unknown."""
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r: delivering in %s", name, default)
        return ZoneInfo(default)


def local_moment(day: date, hour: int, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of `hour`:00 on a local day (a skipped hour falls an hour later)."""
    return datetime.combine(day, time(hour % 24), tzinfo=zone).astimezone(UTC)


def last_slot(group: Group, now: datetime, zone: ZoneInfo) -> datetime:
    """Return the group's most recent delivery moment at or before now."""
    day = now.astimezone(zone).date()
    step = 1
    if group.weekly_day is not None:
        day -= timedelta(days=(day.weekday() - group.weekly_day) % WEEK)
        step = WEEK
    at = local_moment(day, group.hour, zone)
    while at > now:
        day -= timedelta(days=step)
        at = local_moment(day, group.hour, zone)
    return at


def next_slots(group: Group, start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """Return the group's delivery moments in (start, end]."""
    slots = []
    at = last_slot(group, end, zone)
    step = WEEK if group.weekly_day is not None else 1
    while at > start:
        slots.append(at)
        at = last_slot(group, at - timedelta(seconds=1), zone)
        if len(slots) > 2 * step * 31:  # a safety net: at most one slot a day
            break
    return sorted(slots)


def listing_cutoff(slot: datetime, zone: ZoneInfo, ready: time) -> date:
    """Return the newest listing date a delivery at `slot` may carry.

    Not after the subscriber's local date, and not a listing that is only expected after the
    slot: a reader in Auckland at 08:00 gets the listing published the previous UTC evening.
    """
    local_day = slot.astimezone(zone).date()
    published_by = (slot.astimezone(UTC) - timedelta(hours=ready.hour, minutes=ready.minute)).date()
    return min(local_day, published_by)


def edition_date(listings: Sequence[date], cutoff: date, kind: EditionKind) -> date | None:
    """Return the newest listing date up to the cutoff (weekly: only within its week)."""
    found = next((d for d in reversed(listings) if d <= cutoff), None)
    if found is not None and kind == EditionKind.WEEKLY and found <= cutoff - timedelta(WEEK):
        return None
    return found


def listing_dates(*, session: Session) -> list[date]:
    """Return every listing date that has papers, oldest first."""
    return list(session.scalars(select(Paper.listing_date).distinct().order_by(Paper.listing_date)))


# -- what is due ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    """A group's delivery moment and the edition its unplanned subscribers are owed."""

    group: Group
    slot: datetime
    kind: EditionKind
    listing_date: date
    subscribers: int
    stale: bool


def _unplanned(group: Group, kind: EditionKind, day: date):  # noqa: ANN202 - a SQL clause
    planned = (
        select(Delivery.id)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Delivery.subscriber_id == Subscriber.id,
            Edition.kind == kind,
            Edition.listing_date == day,
        )
    )
    return and_(receives_digests(), group.clause(), ~planned.exists())


def due_now(
    now: datetime, *, session: Session, config: ScheduleConfig, default_tz: str = "UTC"
) -> list[Due]:
    """Return every group with subscribers owed the edition of their last delivery moment."""
    listings = listing_dates(session=session)
    if not listings:
        return []
    due = []
    for group in delivery_groups(session=session):
        zone = zone_of(group.timezone, default_tz)
        slot = last_slot(group, now, zone)
        day = edition_date(listings, listing_cutoff(slot, zone, config.listing_ready), group.kind)
        if day is None:
            continue
        count = session.scalar(
            select(func.count()).select_from(Subscriber).where(_unplanned(group, group.kind, day))
        )
        if count:
            stale = now - slot > config.staleness
            due.append(Due(group, slot, group.kind, day, count, stale))
    return due


@dataclass
class PlanOutcome:
    planned: int = 0
    stale: int = 0
    edition_ids: list[int] = field(default_factory=list)


def plan_due(
    due: Iterable[Due],
    now: datetime,
    *,
    session: Session,
    empty_policy: str,
    min_likes: int = default("ranking_discovery_min_likes"),
) -> PlanOutcome:
    """Plan the due groups into their editions; record stale ones as skipped (`min_likes`:
    the likes from which discoveries join, as `plan_edition` takes it)."""
    by_edition: dict[tuple[EditionKind, date], list[Due]] = defaultdict(list)
    for item in due:
        by_edition[(item.kind, item.listing_date)].append(item)
    outcome = PlanOutcome()
    for (kind, day), items in sorted(by_edition.items()):
        edition = get_or_create_edition(day, session=session, kind=kind)
        outcome.edition_ids.append(edition.id)
        fresh = [d.group.clause() for d in items if not d.stale]
        if fresh:
            # Weekly editions span several listings: the preparer, not the plan, decides
            # whether a subscriber's week had anything for them.
            policy = "note" if kind == EditionKind.WEEKLY else empty_policy
            stats = plan_edition(
                edition, session=session, empty_policy=policy, now=now, only=or_(*fresh),
                min_likes=min_likes,
            )
            outcome.planned += stats.planned
        for item in (d for d in items if d.stale):
            outcome.stale += _skip_stale(edition, item, now, session=session)
    return outcome


def _skip_stale(edition: Edition, item: Due, now: datetime, *, session: Session) -> int:
    """Record the group's unplanned subscribers as skipped for a digest now too late to send."""
    hours = (now - item.slot).total_seconds() / 3600
    reason = STALE_REASON.format(
        hours=round(hours, 1), due=item.slot.strftime("%Y-%m-%d %H:%M UTC")
    )[:200]
    source = select(
        literal(edition.id),
        Subscriber.id,
        literal(DeliveryStatus.SKIPPED.value),
        literal(0),
        literal(reason),
        literal(now, type_=Delivery.created_at.type),
    ).where(_unplanned(item.group, item.kind, item.listing_date))
    count = deliveries.insert_planned(session, source)
    log.warning(
        "skipped the %s edition of %s for %d subscribers (%s %02d:00): %s",
        item.kind,
        item.listing_date,
        count,
        item.group.timezone or "UTC",
        item.group.hour,
        reason,
    )
    return count


# -- sending what is owed ---------------------------------------------------------------------


# -- the next day's plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Upcoming:
    """One group's next delivery: when, which edition, to whom."""

    at: datetime
    local: str
    timezone: str
    frequency: str
    kind: str
    listing_up_to: date
    available: date | None
    recipients: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_next_24h(
    app: App, now: datetime, *, config: ScheduleConfig | None = None
) -> list[Upcoming]:
    """Return who gets which edition when, from now (catch-up included) to 24 hours ahead."""
    config = config or ScheduleConfig.from_settings(app.settings)
    default_tz = app.settings.default_timezone
    out = []
    with app.reading() as session:
        listings = listing_dates(session=session)
        for group in delivery_groups(session=session):
            zone = zone_of(group.timezone, default_tz)
            current = last_slot(group, now, zone)
            slots = next_slots(group, now, now + timedelta(hours=24), zone)
            if now - current <= config.staleness:
                slots.insert(0, current)
            for slot in slots:
                item = _upcoming(group, zone, slot, now, listings, config, session=session)
                if item is not None:
                    out.append(item)
    return sorted(out, key=lambda u: (u.at, u.timezone, u.frequency))


def _upcoming(
    group: Group,
    zone: ZoneInfo,
    slot: datetime,
    now: datetime,
    listings: list[date],
    config: ScheduleConfig,
    *,
    session: Session,
) -> Upcoming | None:
    cutoff = listing_cutoff(slot, zone, config.listing_ready)
    available = edition_date(listings, cutoff, group.kind)
    if slot <= now:
        if available is None:
            return None
        who = _unplanned(group, group.kind, available)
    elif available == cutoff:  # the newest listing it may carry is in: only who lacks it
        who = _unplanned(group, group.kind, available)
    else:  # a newer listing may be fetched by then
        who = and_(receives_digests(), group.clause())
    emails = tuple(session.scalars(select(Subscriber.email).where(who).order_by(Subscriber.email)))
    if not emails:
        return None
    return Upcoming(
        at=max(slot, now),
        local=slot.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
        timezone=zone.key,
        frequency=str(group.frequency),
        kind=str(group.kind),
        listing_up_to=cutoff,
        available=available,
        recipients=emails,
    )
