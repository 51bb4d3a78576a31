"""arXiv's daily announcement: the new papers and cross-lists of any categories, as announced.

arXiv announces at 20:00 US Eastern time, Sunday to Thursday; its RSS listing feed
(`https://rss.arxiv.org/rss/astro-ph+cond-mat.supr-con`) holds the latest announcement of
those categories, archives taken whole, dated by the day it lists. Replacements are skipped:
they re-announce papers listed before. The feed has no past days: asking it for a day before
the one it holds is an error that names the `arxiv-api` source, which has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.papers.sources import FetchOptions, PaperRecord, Source
from newsletter.papers.sources.arxiv import (
    XML_TYPES,
    arxiv_codes,
    categories_to_fetch,
    read_arxiv_rss,
    unique_records,
)
from newsletter.papers.sources.common import no_listing
from newsletter.papers.sources.http import SourceClient

NAME = "arxiv"


def announcement_url(base_url: str, categories: Sequence[str]) -> str:
    """Return the listing feed of the categories: archives and categories joined by "+"."""
    codes = "+".join(arxiv_codes(categories))  # taxonomy codes: nothing to escape
    return f"{base_url.rstrip('/')}/rss/{codes}"


def fetch_announcement(
    day: date, categories: Sequence[str], *, base_url: str, client: SourceClient
) -> list[PaperRecord]:
    """Fetch the categories' announcement of the day; NoListing when the day has none (yet)."""
    url = announcement_url(base_url, categories)  # checks the categories before any request
    response = client.get(url, accept=XML_TYPES)
    try:
        announced, records = read_arxiv_rss(response.content, name=url)
    except InputError as exc:  # the network, not the user, sent a bad document
        raise SourceError(str(exc)) from exc
    _check_day(day, announced)
    if not records:
        raise no_listing(None, day)
    for record in records:
        record.listing_date = day  # a feed without dates holds the day asked for
    return unique_records(records)


def _check_day(day: date, announced: date | None) -> None:
    """Refuse a feed of another day: an earlier one is not out yet, a later one is gone."""
    if announced is None or announced == day:
        return
    if announced < day:
        raise NoListing(
            f"no arXiv announcement for {day} yet: the latest is of {announced} "
            "(arXiv announces at 20:00 US Eastern time, Sunday to Thursday)"
        )
    raise InputError(
        f"arXiv's announcement feed holds only its latest day, {announced}, not {day}: "
        "fetch past days with --source arxiv-api"
    )


def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
    """Fetch the day's announcement of the asked-for or configured categories."""
    base_url = options.url or options.settings.arxiv_rss_url
    return fetch_announcement(day, categories_to_fetch(options), base_url=base_url, client=client)


SOURCE = Source(
    name=NAME,
    label="arXiv's daily announcement: new papers and cross-lists of any categories",
    fetch=fetch_day,
    settings=("arxiv_rss_url", "scheduler_arxiv_categories"),
    takes_categories=True,
    arxiv_categories=True,
    check_categories=arxiv_codes,
)
