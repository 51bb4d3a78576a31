"""Fetch a day's listing from a source, store it and match it to topics; on a schedule too."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from newsletter.core.app import App
from newsletter.core.errors import ConfigError, InputError, NewsletterError, NoListing
from newsletter.core.leases import acquire_lease
from newsletter.core.models import Lease, utcnow
from newsletter.core.wording import plural
from newsletter.matching.embeddings import (
    EmbeddingsUnavailable,
    Encoder,
    Precomputed,
    load_encoder,
    paper_text,
)
from newsletter.matching.matches import embed_papers, match_papers, topic_texts
from newsletter.papers.fetch_log import FAILED, NO_LISTING, STORED, Attempt, record_attempt
from newsletter.papers.ingest import capped_record, ingest_records
from newsletter.papers.sources import FetchOptions, PaperRecord
from newsletter.papers.sources.http import RetryPolicy, make_source_client
from newsletter.papers.sources.registry import SOURCES, ScheduledSource, get_source

log = logging.getLogger(__name__)

MARKER_KEEP = timedelta(days=7)  # how long a fetched day stays marked done
PageProgress = Callable[..., None]


@dataclass(frozen=True)
class StoreReport:
    """What storing one batch of records did."""

    papers: int
    new: int
    updated: int
    unchanged: int
    topic_matches: int
    listing_dates: list[date] = field(default_factory=list)
    paper_ids: list[int] = field(default_factory=list)
    embedded: int | None = None  # papers given a sentence vector; None: no sentence model


def fetch_records(
    app: App,
    source: str,
    day: date,
    *,
    categories: Sequence[str] = (),
    base_url: str | None = None,
    on_page: PageProgress | None = None,
) -> list[PaperRecord]:
    """Fetch the day's listing of one source; NoListing when the day has none."""
    found = get_source(source)
    if categories and not found.takes_categories:
        takers = ", ".join(s.name for s in SOURCES if s.takes_categories)
        raise InputError(f"{found.name} takes no --category (sources that do: {takers})")
    settings = app.settings
    options = FetchOptions(settings, tuple(categories), url=base_url, on_page=on_page)
    retry = RetryPolicy(tries=settings.http_retries, backoff=settings.http_backoff)
    with make_source_client(settings, retry=retry) as client:
        return found.fetch(day, options, client)


def store_records(
    app: App,
    records: list[PaperRecord],
    listing_date: date,
    *,
    source: str | None = None,
    now: datetime | None = None,
) -> StoreReport:
    """Ingest the records and match them to topics in one transaction.

    Their sentence vectors are computed first, outside the transaction: the model's CPU time
    never holds the write lock the web pages and the sender need. Records fetched from a
    source (`source` given) are recorded as its last fetch in the same transaction.
    """
    records = [capped_record(r) for r in records]  # the model reads what will be stored
    neighbours = app.settings.match_neighbours
    model = _encoder() if neighbours else None
    encoder: Encoder | Precomputed | None = model
    if model is not None:
        with app.reading() as session:  # the topics' words are embedded beforehand too
            texts = topic_texts(session=session)
        texts += [paper_text(r.title, r.abstract) for r in records]
        encoder = Precomputed(model, texts)
    with app.transaction() as session:
        stats = ingest_records(records, session=session, listing_date=listing_date)
        embedded = None
        if encoder is not None:
            embedded = embed_papers(session=session, paper_ids=stats.paper_ids, encoder=encoder)
        matched = match_papers(
            session=session,
            paper_ids=stats.paper_ids,
            threshold=app.settings.match_threshold,
            neighbours=neighbours,
            encoder=encoder,
        )
        if source is not None:
            stored = Attempt(
                source, listing_date, now or utcnow(), STORED, stats.total, stats.inserted
            )
            record_attempt(stored, session=session)
    return StoreReport(
        papers=stats.total,
        new=stats.inserted,
        updated=stats.updated,
        unchanged=stats.unchanged,
        topic_matches=matched.matches,
        listing_dates=stats.listing_dates,
        paper_ids=stats.paper_ids,
        embedded=embedded,
    )


def _encoder() -> Encoder | None:
    """Return the sentence model, or None where it cannot load (keywords alone then)."""
    try:
        return load_encoder()
    except EmbeddingsUnavailable:
        return None  # matching by keywords alone; StoreReport.embedded says so


def fetch_listing(
    app: App,
    source: str,
    day: date,
    *,
    categories: Sequence[str] = (),
    base_url: str | None = None,
    on_page: PageProgress | None = None,
    now: datetime | None = None,
    record_as: str | None = None,
) -> StoreReport:
    """Fetch, store and match one source's listing of the day, recorded as its last fetch.

    `record_as` is the name the fetch is recorded under (a `[[sources]]` table's), by
    default the source's own.
    """
    records = fetch_records(
        app, source, day, categories=categories, base_url=base_url, on_page=on_page
    )
    return store_records(app, records, day, source=record_as or source, now=now)


# -- on a schedule: each source's listing of a day once, failures retried with a backoff ------

# Longer than any fetch takes: the attempt of a process that died is retried after it.
FETCH_HOLD = timedelta(minutes=30)
MARKER_PREFIX = "fetch:"


@dataclass(frozen=True)
class FetchOutcome:
    """One source's scheduled fetch of one day."""

    source: str
    day: date
    status: str  # "stored", "no listing" or "failed"
    detail: str = ""
    retry_at: datetime | None = None


def check_cron(cron: str) -> None:
    """Raise ConfigError unless the fetch schedule is a valid cron line."""
    try:
        CronTrigger.from_crontab(cron, timezone=UTC)
    except ValueError as exc:
        raise ConfigError(f"setting scheduler_fetch_cron: {cron!r}: {exc}") from None


def last_fire_time(cron: str, now: datetime, window: timedelta) -> datetime | None:
    """Return the cron line's last firing time (UTC) within the window before now."""
    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    fire = trigger.get_next_fire_time(None, now - window)
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


def run_scheduled_fetch(
    app: App,
    now: datetime,
    *,
    sources: Sequence[ScheduledSource],
    cron: str,
    window: timedelta,
    backoff_seconds: float,
    holder: str,
) -> list[FetchOutcome]:
    """Fetch each source's listing of the day its cron line (else `cron`) last fired.

    Only a firing within the window before now counts. A row in `leases` per source and
    day records the attempts, so that whichever process runs this, a day is fetched once,
    and a failed fetch is retried with a doubling delay.
    """
    outcomes = []
    for scheduled in sources:
        fire = last_fire_time(scheduled.cron or cron, now, window)
        if fire is None:
            continue
        name = f"{MARKER_PREFIX}{scheduled.name}:{fire.date().isoformat()}"
        with app.transaction() as session:
            if not _claim(name, holder, now, session=session):
                continue
        outcomes.append(_attempt(app, name, scheduled, fire.date(), now, backoff_seconds))
    return outcomes


def _attempt(
    app: App,
    name: str,
    scheduled: ScheduledSource,
    day: date,
    now: datetime,
    backoff_seconds: float,
) -> FetchOutcome:
    """Fetch one source's day; whatever goes wrong is its outcome, never the other sources'."""
    source = scheduled.name
    try:
        report = fetch_listing(
            app,
            scheduled.source.name,
            day,
            categories=scheduled.categories,
            base_url=scheduled.url,
            now=now,
            record_as=source,
        )
    except NoListing as exc:
        log.info("fetch %s %s: %s", source, day, exc)
        outcome = FetchOutcome(source, day, NO_LISTING, str(exc))
    except Exception as exc:  # recorded as this source's failure and logged: the others go on
        outcome = _failed(app, name, source, day, now, exc, backoff_seconds)
    else:
        matches = plural(report.topic_matches, "topic match", "topic matches")
        detail = f"{plural(report.papers, 'paper')} ({report.new} new), {matches}"
        log.info("fetch %s %s: %s", source, day, detail)
        outcome = FetchOutcome(source, day, STORED, detail)
    with app.transaction() as session:
        _finish(name, now, outcome.retry_at, session=session)
        if outcome.status != STORED:  # a stored listing was recorded with its papers
            attempt = Attempt(source, day, now, outcome.status, error=outcome.detail)
            record_attempt(attempt, session=session)
    return outcome


def _failed(
    app: App,
    name: str,
    source: str,
    day: date,
    now: datetime,
    exc: Exception,
    backoff_seconds: float,
) -> FetchOutcome:
    with app.reading() as session:
        retry_at = _backoff(name, now, backoff_seconds, session=session)
    if isinstance(exc, NewsletterError):
        detail = str(exc)
        log.error(
            "fetch %s %s failed: %s; next try at %s UTC", source, day, exc, f"{retry_at:%H:%M}"
        )
    else:  # a fault of the source's code: the trace, for whoever fixes it
        detail = f"{type(exc).__name__}: {exc}"
        log.exception("fetch %s %s failed; next try at %s UTC", source, day, f"{retry_at:%H:%M}")
    return FetchOutcome(source, day, FAILED, detail, retry_at)


def _claim(name: str, holder: str, now: datetime, *, session: Session) -> bool:
    """Claim the next attempt, unless the day is done or its retry is not yet due."""
    seconds = FETCH_HOLD.total_seconds()
    return acquire_lease(name, holder, now, seconds, session=session, marker=True)


def _finish(name: str, now: datetime, retry_at: datetime | None, *, session: Session) -> None:
    """Record when the day may be fetched again: after the backoff, or (done) never."""
    session.execute(
        update(Lease)
        .where(Lease.name == name)
        .values(expires_at=retry_at or now + MARKER_KEEP)
        .execution_options(synchronize_session=False)
    )
    # Markers of days long gone only clutter the table.
    session.execute(
        delete(Lease)
        .where(Lease.name.like(f"{MARKER_PREFIX}%"), Lease.expires_at < now - MARKER_KEEP)
        .execution_options(synchronize_session=False)
    )


def _backoff(name: str, now: datetime, base: float, *, session: Session) -> datetime:
    """Wait as long as the attempts so far took (at least `base`): the delay doubles."""
    lease = session.get(Lease, name, populate_existing=True)
    first = lease.acquired_at if lease is not None else now
    return now + max(timedelta(seconds=base), now - first)
