"""Hugging Face Daily Papers: the JSON API (`/api/daily_papers`) and its parser."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.papers.sources import FetchOptions, PaperRecord, Source
from newsletter.papers.sources.common import (
    arxiv_id_of,
    arxiv_urls,
    bounded_int,
    clean_text,
    load_json_array,
    no_listing,
    parse_day,
)
from newsletter.papers.sources.http import SourceClient

NAME = "hf"
PAGE_SIZE = 100
MAX_PAGES = 20  # a day has well under 2,000 papers; stop a server that pages forever
JSON_TYPES = ("application/json",)


def parse_hf_json(data: bytes, *, name: str, listing_date: date | None = None) -> list[PaperRecord]:
    """Parse a daily_papers response; listing_date, when given, overrides the items' own."""
    items = load_json_array(data, name)
    if not items:
        raise no_listing(name, listing_date)
    return [_record(item, f"{name}: item {n}", listing_date) for n, item in enumerate(items, 1)]


def _record(item: Any, where: str, listing_date: date | None) -> PaperRecord:
    paper = item.get("paper") if isinstance(item, dict) else None
    if not isinstance(paper, dict):
        raise InputError(f"{where}: no 'paper' object (not an HF daily papers listing)")
    title = clean_text(paper.get("title") or item.get("title"))
    arxiv_id = arxiv_id_of(_str(paper.get("id")))
    if not title or not arxiv_id:
        raise InputError(f"{where}: the paper has no {'title' if not title else 'arXiv id'}")
    url_abs, url_pdf = arxiv_urls(arxiv_id)
    return PaperRecord(
        title=title,
        source=NAME,
        abstract=clean_text(paper.get("summary") or item.get("summary")),
        arxiv_id=arxiv_id,
        authors=[clean_text(a.get("name")) for a in _dicts(paper.get("authors"))],
        url_abs=url_abs,
        url_pdf=url_pdf,
        url_code=_str(paper.get("githubRepo")).strip() or None,
        published_on=parse_day(paper.get("publishedAt")),
        listing_date=listing_date
        or parse_day(paper.get("submittedOnDailyAt"))
        or parse_day(item.get("publishedAt")),
        upvotes=bounded_int(paper.get("upvotes")),  # a count out of range is left out
        keywords=[clean_text(k) for k in paper.get("ai_keywords") or [] if isinstance(k, str)],
        summary=clean_text(paper.get("ai_summary")) or None,
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, dict) and v.get("name")]


def fetch_hf(
    day: date,
    *,
    base_url: str,
    client: SourceClient,
    page_size: int = PAGE_SIZE,
    on_page: Callable[[int], None] | None = None,
) -> list[PaperRecord]:
    """Fetch the day's listing, page by page while full pages come back."""
    url = base_url.rstrip("/") + "/api/daily_papers"
    records: list[PaperRecord] = []
    for page in range(MAX_PAGES):
        params = {"date": day.isoformat(), "limit": page_size, "p": page}
        response = client.get(url, params=params, accept=JSON_TYPES)
        try:
            batch = parse_hf_json(response.content, name=f"{url} page {page}", listing_date=day)
        except InputError as exc:  # the network, not the user, sent a bad document
            raise SourceError(str(exc)) from exc
        except NoListing:  # an empty page: the listing ended, or there is none
            batch = []
        records.extend(batch)
        if on_page:
            on_page(len(records))
        if len(batch) < page_size:
            break
    if not records:
        raise no_listing(None, day)
    return _unique(records)


def _unique(records: list[PaperRecord]) -> list[PaperRecord]:
    """Drop repeats that shift between pages while the listing changes."""
    seen: set[str | None] = set()
    out = []
    for record in records:
        if record.arxiv_id not in seen:
            seen.add(record.arxiv_id)
            out.append(record)
    return out


def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
    """Fetch the day's Hugging Face listing from the `hf_url` address (or the one given)."""
    base_url = options.url or options.settings.hf_url
    return fetch_hf(day, base_url=base_url, client=client, on_page=options.on_page)


SOURCE = Source(
    name=NAME,
    label="Hugging Face Daily Papers (machine learning, ranked by readers' upvotes)",
    fetch=fetch_day,
    settings=("hf_url",),
    counts_upvotes=True,
    summaries=True,
    discussion_pages=True,
)
