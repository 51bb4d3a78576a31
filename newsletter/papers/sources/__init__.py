"""Paper sources. Each parser or fetcher returns plain PaperRecord values, never models."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass
class PaperRecord:
    """One paper as a source describes it, before it is stored."""

    title: str
    source: str
    abstract: str = ""
    arxiv_id: str | None = None  # without version suffix, e.g. "2606.00467"
    authors: list[str] = field(default_factory=list)
    url_abs: str | None = None
    url_pdf: str | None = None
    url_code: str | None = None
    published_on: date | None = None
    listing_date: date | None = None  # the day's listing the paper belongs to
    upvotes: int | None = None
    keywords: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    summary: str | None = None
    doi: str | None = None
    venue: str | None = None
