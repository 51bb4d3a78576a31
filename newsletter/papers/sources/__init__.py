"""Paper sources. Each parser or fetcher returns plain PaperRecord values, never models.

`Source` and `FetchOptions` are what a fetching source offers the registry
(`sources/registry.py` says how to add one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations only: the sources import this module
    from newsletter.core.config import Settings
    from newsletter.papers.sources.http import SourceClient


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
    url_journal: str | None = None  # the journal version's page, beside the preprint's


@dataclass(frozen=True)
class FetchOptions:
    """What one fetch asks of a source beyond the day."""

    settings: Settings
    categories: tuple[str, ...] = ()  # as asked for; empty: the source's configured ones
    url: str | None = None  # the source's address instead of the one its setting gives
    on_page: Callable[..., None] | None = None  # progress: (papers so far, total if known)


FetchDay = Callable[[date, FetchOptions, "SourceClient"], list[PaperRecord]]


@dataclass(frozen=True)
class Source:
    """A source the scheduler and `papers fetch` can fetch a day's listing from."""

    name: str  # as written in settings and on the command line: "hf", "arxiv"
    label: str  # as people call it: "Hugging Face Daily Papers"
    fetch: FetchDay  # the day's records; NoListing when the day has none
    settings: tuple[str, ...] = ()  # the settings it reads
    takes_categories: bool = False  # `--category` applies
    arxiv_categories: bool = False  # its categories are arXiv's: scheduler_arxiv_categories
    counts_upvotes: bool = False  # its papers carry readers' upvotes: digests rank by them
    summaries: bool = False  # it gives one-line TL;DRs
    discussion_pages: bool = False  # its papers have a page where readers discuss them
    # Raises InputError on a category it does not know, before any request.
    check_categories: Callable[[Sequence[str]], object] | None = None
    needs_url: bool = False  # a `[[sources]]` table of this kind must give its url

    def offers(self) -> list[str]:
        """Name what the source gives besides titles and abstracts."""
        flags = {
            "categories": self.takes_categories,
            "upvotes": self.counts_upvotes,
            "TL;DRs": self.summaries,
            "discussion pages": self.discussion_pages,
        }
        return [name for name, offered in flags.items() if offered]
