"""`newsletter papers`: import files, fetch a day's listing, list papers, show one, sources."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import click

from newsletter.cli.common import echo_json, pass_app
from newsletter.cli.common import parse_date as _parse_date
from newsletter.core.app import App
from newsletter.core.errors import InputError
from newsletter.core.latex import readable
from newsletter.core.setting_fields import toml_value
from newsletter.core.wording import plural
from newsletter.papers import service
from newsletter.papers.fetch import fetch_records, store_records
from newsletter.papers.ingest import today_utc
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.arxiv import DEFAULT_CATEGORIES
from newsletter.papers.sources.files import FORMATS, read_paper_file
from newsletter.papers.sources.registry import (
    SOURCES,
    ScheduledSource,
    find_scheduled,
    scheduled_sources,
    source_names,
)

PROGRESS_MIN_FILES = 5  # fewer files parse in well under a second


@click.group()
def papers() -> None:
    """Import, fetch, list and show papers."""


@papers.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="File format; auto tells it from the content.",
)
@click.option(
    "--date",
    "day",
    metavar="YYYY-MM-DD",
    help="Listing date (default: the files' own, else today UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def import_(app: App, files: Sequence[str], fmt: str, day: str | None, as_json: bool) -> None:
    """Import paper files, then match them to topics.

    Every file is read and checked first: one bad file stops the import with
    nothing written. Importing the same listing again changes nothing.

    \b
    Examples:
      newsletter papers import seeds/hf-daily-papers-page.txt --date 2026-11-27
      newsletter papers import daily_papers.json arxiv.xml --json
    """
    listing_date = _parse_date(day)
    records = _read_files(files, fmt, listing_date)
    summary = _store(app, records, listing_date)
    _report(summary, as_json)


def _read_files(files: Sequence[str], fmt: str, listing_date: date | None) -> list[PaperRecord]:
    records: list[PaperRecord] = []
    if len(files) < PROGRESS_MIN_FILES:
        for path in files:
            records += read_paper_file(path, fmt=fmt, listing_date=listing_date)
        return records
    with click.progressbar(files, label="reading files", file=sys.stderr) as bar:
        for path in bar:
            records += read_paper_file(path, fmt=fmt, listing_date=listing_date)
    return records


def _sources_help() -> str:
    return "; ".join(f"{s.name}: {s.label}" for s in SOURCES)


@papers.command("fetch")
@click.option(
    "--source",
    metavar="NAME",
    help="Where from: a source, or the name of a [[sources]] table (default: the first "
    f"scheduled source). {_sources_help()}.",
)
@click.option("--date", "day", metavar="YYYY-MM-DD", help="Listing date (default: today UTC).")
@click.option(
    "--category",
    "categories",
    multiple=True,
    metavar="CAT",
    help="arXiv category or archive, or a bioRxiv/medRxiv subject (neuroscience), repeatable "
    f"(arXiv's default: scheduler_arxiv_categories, else {' '.join(DEFAULT_CATEGORIES)}; "
    "bioRxiv's: every subject).",
)
@click.option(
    "--url", "base_url", help="Address of the source, or of the feed (default: from settings)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def fetch(
    app: App,
    source: str | None,
    day: str | None,
    categories: Sequence[str],
    base_url: str | None,
    as_json: bool,
) -> None:
    """Fetch a day's listing from a source, store it and match it to topics.

    A day without a listing (weekends, holidays) prints one line and exits 1. arXiv's
    announcement feed (`arxiv`) holds only the latest day: for past days use `arxiv-api`.

    \b
    Examples:
      newsletter papers fetch --source hf --date 2026-11-27
      newsletter papers fetch --source arxiv --category astro-ph --category cond-mat.supr-con
      newsletter papers fetch --source arxiv-api --category math.NT --date 2026-11-20
      newsletter papers fetch --source biorxiv --category neuroscience --date 2026-11-20
      newsletter papers fetch --source feed --url https://www.nature.com/nature.rss
      newsletter papers fetch --source nature-neuroscience   # a [[sources]] table's name
    """
    listing_date = _parse_date(day) or today_utc()
    chosen = find_scheduled(app.settings, source) if source else _default_source(app)
    kind = chosen.source.name
    asked = tuple(categories) or chosen.categories
    with _PageProgress() as progress:
        records = fetch_records(
            app, kind, listing_date, categories=asked, base_url=base_url or chosen.url,
            on_page=progress,
        )  # fmt: skip
    summary = store_records(app, records, listing_date, source=chosen.name)
    _report(dataclasses.asdict(summary), as_json)


def _default_source(app: App) -> ScheduledSource:
    scheduled = scheduled_sources(app.settings)
    if not scheduled:
        raise InputError(f"give --source: one of {', '.join(source_names())}")
    return scheduled[0]


class _PageProgress:
    """A stderr progress bar for paged fetches, shown once the total is known."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        if self._bar is None and total and total > done:
            self._bar = click.progressbar(length=total, label="fetching", file=sys.stderr)
            self._bar.__enter__()
        if self._bar is not None:
            self._bar.update(done - self._done)
        self._done = done

    def __enter__(self) -> Callable[[int, int | None], None]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _store(app: App, records: list[PaperRecord], listing_date: date | None) -> dict[str, Any]:
    """Ingest the records and match them to topics in one transaction."""
    return dataclasses.asdict(store_records(app, records, listing_date or today_utc()))


def _report(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(summary)
        return
    dates = summary["listing_dates"]
    when = ", ".join(d.isoformat() for d in dates)
    if len(dates) > 3:
        when = f"{len(dates)} dates ({dates[0].isoformat()} to {dates[-1].isoformat()})"
    click.echo(
        f"imported {plural(summary['papers'], 'paper')} for {when}: {summary['new']} new, "
        f"{summary['updated']} updated, {summary['unchanged']} unchanged; "
        f"{plural(summary['topic_matches'], 'topic match', 'topic matches')}"
    )


@papers.command("list")
@click.option("--date", "day", metavar="YYYY-MM-DD", help="Listing date (default: the latest).")
@click.option("--topic", "topic_slug", metavar="SLUG", help="Only papers matched to this topic.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print papers as JSON (importable again).")
@pass_app
def list_(
    app: App, day: str | None, topic_slug: str | None, limit: int | None, as_json: bool
) -> None:
    """List the papers of a listing date with their topics.

    Most upvoted first where the source counts upvotes (Hugging Face), else in the order
    the source listed them. Each line: upvotes (where counted), arXiv id, title, [topic
    score], and readers' votes (+likes/-dislikes). Titles are shown as text
    ($\\Lambda$CDM as ΛCDM); --json gives them as stored.

    \b
    Examples:
      newsletter papers list
      newsletter papers list --date 2026-11-27 --topic llm-agents --limit 10
      newsletter papers list --json > papers.json
    """
    found = service.listing(app, _parse_date(day), topic_slug=topic_slug, limit=limit)
    if as_json:
        echo_json(found.papers)
        return
    if not found.papers:
        click.echo(f"no papers for {found.listing_date}" if found.listing_date else "no papers yet")
        return
    order = "most upvoted first" if found.upvoted else "in the order listed"
    click.echo(f"{plural(len(found.papers), 'paper')} listed on {found.listing_date}, {order}:")
    for row in found.papers:
        click.echo(_line(row, upvoted=found.upvoted))


def _line(row: dict[str, Any], *, upvoted: bool) -> str:
    votes = ("-" if row["upvotes"] is None else str(row["upvotes"])).rjust(4) + "  "
    ref = row["arxiv_id"] or f"#{row['id']}"
    topics = ", ".join(f"{t['slug']} {t['score']:.2f}" for t in row["topics"])
    line = (votes if upvoted else "") + f"{ref:<12} {readable(row['title'])}"
    line += f"  [{topics}]" if topics else ""
    if row["likes"] or row["dislikes"]:
        line += f"  readers +{row['likes']}/-{row['dislikes']}"
    return line


@papers.command("show")
@click.argument("ref", metavar="ID_OR_ARXIV_ID")
@click.option("--json", "as_json", is_flag=True, help="Print the paper as JSON.")
@pass_app
def show(app: App, ref: str, as_json: bool) -> None:
    """Show one paper by database id or arXiv id, with its topic matches and evidence.

    LaTeX in the title, authors and abstract is shown as text; --json gives them as stored.

    \b
    Examples:
      newsletter papers show 2606.13392
      newsletter papers show 17 --json
    """
    row = service.paper(app, ref)
    if as_json:
        echo_json(row)
        return
    click.echo(readable(row["title"]))
    for label, key in (
        ("arXiv", "arxiv_id"),
        ("listed", "listing_date"),
        ("upvotes", "upvotes"),
        ("abstract page", "url_abs"),
        ("pdf", "url_pdf"),
        ("code", "url_code"),
    ):
        if row[key] is not None:
            click.echo(f"  {label}: {row[key]}")
    if row["authors"]:
        click.echo(f"  authors: {', '.join(readable(a) for a in row['authors'])}")
    for topic in row["topics"]:
        click.echo(
            f"  topic {topic['slug']} ({topic['score']:.2f}): {'; '.join(topic['evidence'])}"
        )
    click.echo("")
    click.echo(textwrap.fill(readable(row["abstract"]), width=88))


@papers.command("sources")
@click.option("--json", "as_json", is_flag=True, help="Print the sources as JSON.")
@pass_app
def sources(app: App, as_json: bool) -> None:
    """List the sources: what each offers, the settings it reads, and its last fetch.

    The ones the scheduler fetches ([[sources]] tables, else scheduler_sources) come first,
    with what each asks for. Each shows its last fetch (when, which day, what came of it),
    the last that stored a listing (papers, new) and its last error. A source the
    configuration names wrongly is an error (exit 2).

    \b
    Examples:
      newsletter papers sources
      newsletter papers sources --json
    """
    rows = service.sources(app)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo("\n".join(_source_lines(row)))


def _source_lines(row: dict[str, Any]) -> list[str]:
    scheduled = " (scheduled)" if row["scheduled"] else ""
    kind = f" [{row['kind']}]" if row["kind"] != row["name"] else ""
    lines = [f"{row['name']}{kind}{scheduled}: {row['label']}"]
    for key, value in row["asks"].items():
        lines.append(f"  {key} = {toml_value(value)}")
    if row["offers"]:
        lines.append(f"  offers: {', '.join(row['offers'])}")
    for name, value in row["settings"].items():
        lines.append(f"  {name} = {toml_value(value)}")
    last, stored, error = row["last_fetch"], row["last_stored"], row["last_error"]
    if last is None:
        return [*lines, "  never fetched"]
    lines.append(f"  last fetch: {_when(last['at'])}, listing of {last['day']}: {last['status']}")
    if stored is not None:
        lines.append(
            f"  last stored: {_when(stored['at'])}, listing of {stored['day']}: "
            f"{stored['papers']} papers ({stored['new']} new)"
        )
    if error is not None:
        lines.append(f"  last error: {_when(error['at'])}: {error['error']}")
    return lines


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def register(group: click.Group) -> None:
    group.add_command(papers)
