"""Fetch a day's listing from a source, store it and match it to topics: one service call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from newsletter.app import App
from newsletter.errors import InputError
from newsletter.ingest import ingest_records
from newsletter.matching import match_papers
from newsletter.sources import PaperRecord
from newsletter.sources.arxiv import DEFAULT_CATEGORIES, fetch_arxiv
from newsletter.sources.hf import fetch_hf
from newsletter.sources.http import RetryPolicy, make_source_client

SOURCES = ("hf", "arxiv")
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
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    settings = app.settings
    retry = RetryPolicy(tries=settings.http_retries, backoff=settings.http_backoff)
    with make_source_client(settings, retry=retry) as client:
        if source == "hf":
            return fetch_hf(
                day, base_url=base_url or settings.hf_url, client=client, on_page=on_page
            )
        return fetch_arxiv(
            day,
            list(categories) or DEFAULT_CATEGORIES,
            base_url=base_url or settings.arxiv_api_url,
            client=client,
            spacing=settings.arxiv_request_interval,
            on_page=on_page,
        )


def store_records(app: App, records: list[PaperRecord], listing_date: date) -> StoreReport:
    """Ingest the records and match them to topics in one transaction."""
    with app.transaction() as session:
        stats = ingest_records(records, session=session, listing_date=listing_date)
        matched = match_papers(
            session=session, paper_ids=stats.paper_ids, threshold=app.settings.match_threshold
        )
    return StoreReport(
        papers=stats.total,
        new=stats.inserted,
        updated=stats.updated,
        unchanged=stats.unchanged,
        topic_matches=matched.matches,
        listing_dates=stats.listing_dates,
        paper_ids=stats.paper_ids,
    )


def fetch_listing(
    app: App,
    source: str,
    day: date,
    *,
    categories: Sequence[str] = (),
    base_url: str | None = None,
    on_page: PageProgress | None = None,
) -> StoreReport:
    """Fetch, store and match one source's listing of the day."""
    records = fetch_records(
        app, source, day, categories=categories, base_url=base_url, on_page=on_page
    )
    return store_records(app, records, day)
