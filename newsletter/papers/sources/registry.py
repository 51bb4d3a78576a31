"""The sources a day's listing can be fetched from: one list that everything else reads.

The CLI (`papers fetch --source`, `papers sources`), the scheduler (`scheduler_sources`),
`doctor` and the web pages' wording ("most upvoted") all ask this module; no other place
spells a source's name.

A source is one module that ends with a `Source` (see `newsletter.papers.sources`):

    def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
        base_url = options.url or options.settings.my_source_url
        return fetch_my_source(day, base_url=base_url, client=client)

    SOURCE = Source(name="my-source", label="My Source: what it lists", fetch=fetch_day,
                    settings=("my_source_url",))

and its line in `SOURCES` below. `fetch_day` returns the day's PaperRecords (with the
record's `source` set to the source's name) or raises NoListing when the day has none,
SourceError when the source answered badly, InputError for what the user asked wrongly
(checked before any request). It gets `client`, the shared polite HTTP client (retries,
spacing, the `source_max_bytes` cap), and `options`: the settings, the categories asked for
(empty: its configured ones), a `url` that replaces its setting's address, and `on_page`
for progress. The flags say what it offers: `takes_categories` (`--category` applies),
`counts_upvotes` (digests and pages rank by upvotes), `summaries` (TL;DRs),
`discussion_pages` (a page per paper where readers discuss it).
"""

from __future__ import annotations

from collections.abc import Iterable

from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, InputError, quoted
from newsletter.papers.sources import Source, arxiv, arxiv_announcements, biorxiv, feeds, hf

SOURCES: tuple[Source, ...] = (
    hf.SOURCE,
    arxiv_announcements.SOURCE,
    arxiv.API_SOURCE,
    biorxiv.BIORXIV_SOURCE,
    biorxiv.MEDRXIV_SOURCE,
    feeds.SOURCE,
)
_BY_NAME = {source.name: source for source in SOURCES}


def source_names() -> tuple[str, ...]:
    """Return the names of every source, in the registry's order."""
    return tuple(_BY_NAME)


def get_source(name: str) -> Source:
    """Return the source of that name, or raise InputError naming the known ones."""
    source = _BY_NAME.get(name.strip())
    if source is None:
        raise InputError(f"unknown source {quoted(name)}: known sources are {_known()}")
    return source


def check_source_names(names: Iterable[str], *, setting: str = "scheduler_sources") -> None:
    """Raise ConfigError on the first name of a setting that is no source."""
    for name in names:
        if name not in _BY_NAME:
            raise ConfigError(
                f"setting {setting}: unknown source {quoted(name)} (known: {_known()})"
            )


def configured_sources(settings: Settings) -> list[Source]:
    """Return the sources the scheduler fetches, checked (ConfigError on an unknown one)."""
    check_source_names(settings.scheduler_sources)
    return [_BY_NAME[name] for name in settings.scheduler_sources]


def ranks_by_upvotes(settings: Settings) -> bool:
    """Say whether a configured source counts upvotes, so pages speak of "most upvoted"."""
    return any(
        _BY_NAME[name].counts_upvotes for name in settings.scheduler_sources if name in _BY_NAME
    )


def has_discussion_pages(source_name: str) -> bool:
    """Say whether papers of that source (a paper's `source`) have a discussion page."""
    source = _BY_NAME.get(source_name)
    return source is not None and source.discussion_pages


def _known() -> str:
    return ", ".join(_BY_NAME)
