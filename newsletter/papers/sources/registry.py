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
from dataclasses import dataclass

from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, InputError, quoted
from newsletter.core.source_tables import SourceTable
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


@dataclass(frozen=True)
class ScheduledSource:
    """A source the scheduler fetches: its kind, how this one is called, and what it asks."""

    source: Source
    name: str  # its fetches are recorded under this name (the kind's, unless a table names it)
    categories: tuple[str, ...] = ()  # empty: the kind's configured ones
    url: str | None = None  # None: the address its kind's setting gives
    cron: str | None = None  # None: scheduler_fetch_cron

    @classmethod
    def of(
        cls, kind: str, categories: Iterable[str] = (), url: str | None = None
    ) -> ScheduledSource:
        """Return the source of that kind under its own name, asking for those categories."""
        return cls(get_source(kind), kind, tuple(categories), url)


def scheduled_sources(settings: Settings) -> list[ScheduledSource]:
    """Return what the scheduler fetches: the `[[sources]]` tables, else `scheduler_sources`.

    Raises ConfigError, in one line naming the table or the setting, on an unknown kind,
    a category the kind does not know, or a feed without its address.
    """
    if settings.sources:
        return [_from_table(table) for table in settings.sources]
    check_source_names(settings.scheduler_sources)
    return [ScheduledSource(_BY_NAME[name], name) for name in settings.scheduler_sources]


def find_scheduled(settings: Settings, name: str) -> ScheduledSource:
    """Return the scheduled source of that name, else the source of that kind (InputError)."""
    for scheduled in scheduled_sources(settings):
        if scheduled.name == name.strip():
            return scheduled
    source = _BY_NAME.get(name.strip())
    if source is None:
        tables = [t.name for t in settings.sources if t.name not in _BY_NAME]
        named = f"; configured: {', '.join(tables)}" if tables else ""
        raise InputError(f"unknown source {quoted(name)}: known sources are {_known()}{named}")
    return ScheduledSource(source, source.name)


def _from_table(table: SourceTable) -> ScheduledSource:
    where = f"[[sources]] {table.name}"
    source = _BY_NAME.get(table.kind)
    if source is None:
        raise ConfigError(f"{where}: unknown kind {quoted(table.kind)} (known: {_known()})")
    if table.name != table.kind and table.name in _BY_NAME:
        raise ConfigError(f"{where}: the name is another source's kind; choose another name")
    if table.categories and not source.takes_categories:
        raise ConfigError(f"{where}: {source.name} takes no categories")
    if table.categories and source.check_categories is not None:
        try:
            source.check_categories(table.categories)
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if source.needs_url and not table.url:
        raise ConfigError(f"{where}: a {source.name} source needs url, its address")
    return ScheduledSource(source, table.name, table.categories, table.url, table.cron)


def ranks_by_upvotes(settings: Settings) -> bool:
    """Say whether a scheduled source counts upvotes, so pages speak of "most upvoted"."""
    try:
        return any(s.source.counts_upvotes for s in scheduled_sources(settings))
    except ConfigError:  # the wording of a page never fails it; doctor names the error
        return False


def has_discussion_pages(source_name: str) -> bool:
    """Say whether papers of that source (a paper's `source`) have a discussion page."""
    source = _BY_NAME.get(source_name)
    return source is not None and source.discussion_pages


def _known() -> str:
    return ", ".join(_BY_NAME)
