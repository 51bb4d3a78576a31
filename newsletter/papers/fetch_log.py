"""Each source's last fetch, as `newsletter papers sources` shows it.

One row per source: its last attempt (when, which day, what came of it), the last one that
stored a listing (how many papers, how many new) and its last failure (when, the error's
line). The scheduler records every attempt; `papers fetch` records what it stores (its
failures are printed, and leave the database as it was).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import SETTINGS_BY_NAME, Settings
from newsletter.core.db import insert_or_ignore
from newsletter.core.models import SourceFetch
from newsletter.papers.sources.registry import SOURCES, ScheduledSource, scheduled_sources

STORED, NO_LISTING, FAILED = "stored", "no listing", "failed"
ERROR_MAX = 1000  # characters of an error kept: its one line, not a page a server sent


@dataclass(frozen=True)
class Attempt:
    """What one fetch of a source's day came to."""

    source: str
    day: date
    at: datetime
    status: str  # STORED, NO_LISTING or FAILED
    papers: int | None = None
    new_papers: int | None = None
    error: str = ""


def record_attempt(attempt: Attempt, *, session: Session) -> None:
    """Record the attempt as the source's last; a stored or failed one also as the last such."""
    # Two first fetches of a source at once both insert: the later one updates instead.
    first = {"attempted_at": attempt.at, "day": attempt.day, "status": attempt.status}
    session.execute(insert_or_ignore(session, SourceFetch).values(source=attempt.source, **first))
    row = session.get_one(SourceFetch, attempt.source, populate_existing=True)
    row.attempted_at, row.day, row.status = attempt.at, attempt.day, attempt.status
    if attempt.status == STORED:
        row.stored_at, row.stored_day = attempt.at, attempt.day
        row.papers, row.new_papers = attempt.papers, attempt.new_papers
    elif attempt.status == FAILED:
        row.failed_at, row.error = attempt.at, attempt.error[:ERROR_MAX]


def describe_sources(settings: Settings, *, session: Session) -> list[dict[str, Any]]:
    """Describe every source: scheduled ones first (with what each asks), each with its last fetch.

    Raises ConfigError when the configuration names a source wrongly.
    """
    rows = {row.source: row for row in session.scalars(select(SourceFetch))}
    scheduled = scheduled_sources(settings)
    names = {s.name for s in scheduled}
    unscheduled = [ScheduledSource(s, s.name) for s in SOURCES if s.name not in names]
    return [
        _describe(s, s.name in names, settings, rows.get(s.name))
        for s in [*scheduled, *unscheduled]
    ]


def _describe(
    scheduled: ScheduledSource, is_scheduled: bool, settings: Settings, row: SourceFetch | None
) -> dict[str, Any]:
    source = scheduled.source
    asks = {"categories": scheduled.categories, "url": scheduled.url, "cron": scheduled.cron}
    return {
        "name": scheduled.name,
        "kind": source.name,
        "label": source.label,
        "scheduled": is_scheduled,
        "asks": {key: value for key, value in asks.items() if value},
        "offers": source.offers(),
        "settings": {
            name: SETTINGS_BY_NAME[name].masked(getattr(settings, name))
            for name in source.settings
        },
        "last_fetch": _last_fetch(row),
        "last_stored": _last_stored(row),
        "last_error": _last_error(row),
    }


def _last_fetch(row: SourceFetch | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"at": row.attempted_at, "day": row.day, "status": row.status}


def _last_stored(row: SourceFetch | None) -> dict[str, Any] | None:
    if row is None or row.stored_at is None:
        return None
    return {
        "at": row.stored_at,
        "day": row.stored_day,
        "papers": row.papers,
        "new": row.new_papers,
    }


def _last_error(row: SourceFetch | None) -> dict[str, Any] | None:
    if row is None or row.failed_at is None:
        return None
    return {"at": row.failed_at, "error": row.error}
