"""`newsletter subscribers` commands."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from newsletter.audience import subscribers as service
from newsletter.cli.common import check_output_folder, echo_json, pass_app
from newsletter.core.app import App
from newsletter.core.errors import InputError
from newsletter.core.models import Subscriber, SubscriberStatus

SHOWN_ERRORS = 20
# Below this size an import takes well under a second: a progress bar would only flicker.
PROGRESS_MIN_BYTES = 1 << 20
STATUSES = [s.value for s in SubscriberStatus]
LIST_ROW = "{:<40} {:<12} {:<20} {:>4} {:>3}  {}"
LIST_HEADER = LIST_ROW.format("EMAIL", "STATUS", "TIMEZONE", "HOUR", "MAX", "TOPICS")
# Lists of what readers write themselves, shown as they are entered: separated by ";".
RULE_LISTS = ("follow_authors", "muted_words", "personal_keywords")


@click.group()
def subscribers() -> None:
    """Manage subscribers: add, edit, import, export, list, show and remove them."""


def _echo_subscriber_line(sub: Subscriber) -> None:
    topics = ",".join(service.topic_slugs(sub)) or "-"
    click.echo(
        LIST_ROW.format(
            sub.email, sub.status.value, sub.timezone, sub.delivery_hour, sub.max_papers, topics
        )
    )


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name used in the greeting.")
@click.option("--topics", required=True, help="Comma-separated topic slugs, e.g. ml,nlp.")
@click.option("--confirmed", is_flag=True, help="Mark as confirmed (you vouch for consent).")
@click.option("--timezone", "tz", metavar="AREA/CITY", help="IANA time zone [default: setting].")
@click.option("--hour", type=int, metavar="0-23", help="Local delivery hour [default: setting].")
@click.option("--max-papers", type=int, metavar="N", help="Papers per digest, 1-50.")
@click.option("--json", "as_json", is_flag=True, help="Print the subscriber as JSON.")
@pass_app
def add(
    app: App,
    email: str,
    name: str,
    topics: str,
    confirmed: bool,
    tz: str | None,
    hour: int | None,
    max_papers: int | None,
    as_json: bool,
) -> None:
    """Add one subscriber. Without --confirmed they stay pending until they confirm.

    \b
    Example:
      newsletter subscribers add ada@example.org --name Ada --topics ml,nlp \\
          --confirmed --timezone Europe/London --hour 7
    """
    with app.transaction() as session:
        sub = service.add_subscriber(
            session=session,
            email=email,
            name=name,
            topics=topics,
            confirmed=confirmed,
            timezone=tz,
            hour=hour,
            max_papers=max_papers,
            defaults=service.Defaults.from_settings(app.settings),
        )
        data = service.subscriber_to_dict(sub)
    if as_json:
        echo_json(data)
    else:
        click.echo(f"added {data['email']} ({data['status']}; topics: {', '.join(data['topics'])})")


@subscribers.command("edit")
@click.argument("email")
@click.option("--name", help="Display name used in the greeting.")
@click.option("--topics", help="Comma-separated topic slugs: replaces the current ones.")
@click.option("--timezone", "tz", metavar="AREA/CITY", help="IANA time zone.")
@click.option("--hour", type=int, metavar="0-23", help="Local delivery hour.")
@click.option("--max-papers", type=int, metavar="N", help="Papers per digest, 1-50.")
@click.option(
    "--follow-authors",
    metavar="'A;B'",
    help="Authors whose papers always come first, ';'-separated ('' clears).",
)
@click.option("--mute", metavar="'W1;W2'", help="Words whose papers never come ('' clears).")
@click.option(
    "--keywords", metavar="'K1;K2'", help="Keywords that match like a private topic ('' clears)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the subscriber as JSON.")
@pass_app
def edit(
    app: App,
    email: str,
    name: str | None,
    topics: str | None,
    tz: str | None,
    hour: int | None,
    max_papers: int | None,
    follow_authors: str | None,
    mute: str | None,
    keywords: str | None,
    as_json: bool,
) -> None:
    """Change a subscriber's preferences; what is not given stays as it is.

    Authors match however a source spells them ("Doe, Jane", "J. Doe", "Jané Doe");
    muted words and keywords match whole words and their inflections, like topics.

    \b
    Examples:
      newsletter subscribers edit ada@example.org --follow-authors "Jane Doe;Yoshua Bengio"
      newsletter subscribers edit ada@example.org --mute "benchmark;survey" --keywords "LoRA"
      newsletter subscribers edit ada@example.org --topics ml,nlp --hour 7 --max-papers 5
    """
    with app.transaction() as session:
        sub = service.edit_subscriber(
            email,
            session=session,
            name=name,
            topics=topics,
            timezone=tz,
            hour=hour,
            max_papers=max_papers,
            follow_authors=follow_authors,
            muted_words=mute,
            personal_keywords=keywords,
        )
        data = service.subscriber_to_dict(sub)
    if as_json:
        echo_json(data)
        return
    click.echo(f"updated {data['email']}")
    for label, key in (
        ("topics", "topics"),
        ("follows", "follow_authors"),
        ("muted", "muted_words"),
        ("keywords", "personal_keywords"),
    ):
        if data[key]:
            click.echo(f"  {label}: {'; '.join(data[key])}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--status",
    type=click.Choice(["confirmed", "pending"]),
    default="confirmed",
    show_default=True,
    help="Status of new subscribers whose row has no status column.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_(app: App, file: str, status: str, as_json: bool) -> None:
    """Import subscribers from a UTF-8 CSV file (or - for stdin).

    The header line is required and names columns from: email, name, topics, timezone,
    hour, max_papers, status. email and topics are required; topics are slugs separated
    by ";" or by "," (a cell with commas is quoted: "ml,nlp"). Empty cells take the
    defaults for new subscribers and keep the current value for existing ones. Existing
    subscribers keep their status, so an unsubscribed address is never subscribed again
    by an import. Importing the same file twice changes nothing.
    The ' that `export` puts before a cell starting with = + - @, a tab or a CR is removed.

    Exit status: 0 when every row was imported, 1 when some rows were skipped (the good
    rows are saved; the bad ones are listed with their line numbers), 2 when the file
    itself is unusable (then nothing is saved).

    \b
    Example:
      printf 'email,name,topics\\nada@example.org,Ada,ml;nlp\\n' > people.csv
      newsletter subscribers import people.csv --status pending
    """
    source: str | IO[bytes] = sys.stdin.buffer if file == "-" else file
    size = 0 if file == "-" else _file_size(file)
    defaults = service.Defaults.from_settings(app.settings)
    with app.transaction() as session, _progress(size) as advance:
        report = service.import_csv(
            source, session=session, status=status, defaults=defaults, on_progress=advance
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        _echo_report(report)
    if report.skipped:
        click.get_current_context().exit(1)


def _file_size(file: str) -> int:
    try:
        return os.path.getsize(file)
    except OSError:
        return 0  # the service reports the unreadable file


@contextmanager
def _progress(size: int) -> Iterator[Callable[[int], None] | None]:
    """Yield a progress callback drawing a bar on stderr, or None for a small file."""
    if size < PROGRESS_MIN_BYTES:
        yield None
        return
    with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:
        yield bar.update


def _echo_report(report: service.ImportReport) -> None:
    click.echo(
        f"{report.source}: {report.new} new, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.skipped} skipped"
    )
    for line, reason in report.errors[:SHOWN_ERRORS]:
        click.echo(f"line {line}: {reason}", err=True)
    hidden = report.skipped - min(len(report.errors), SHOWN_ERRORS)
    if hidden:
        click.echo(f"... and {hidden} more skipped rows (--json lists them)", err=True)


@subscribers.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File [default: stdout]."
)
@pass_app
def export(app: App, fmt: str, output: str | None) -> None:
    """Write every subscriber as CSV (the format `import` reads) or JSON.

    The topics cell lists slugs separated by ";"; `import` reads ";" and "," alike.

    A CSV cell that starts with = + - @, a tab or a CR (after any ' of its own) gets a '
    in front, so that a spreadsheet shows it as text instead of running it as a formula;
    `import` removes that one quote.

    \b
    Example:
      newsletter subscribers export --output backup.csv
      newsletter subscribers import backup.csv
    """
    with app.transaction() as session:
        if output is None:
            service.export_subscribers(sys.stdout, session=session, fmt=fmt)
            return
        count = _export_to_file(Path(output), session=session, fmt=fmt)
    click.echo(f"exported {count} subscribers to {output}", err=True)


def _export_to_file(path: Path, **kwargs: object) -> int:
    """Export into a temporary file renamed over `path` at the end: no half-written files."""
    check_output_folder(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"--output: cannot write in {str(folder)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = service.export_subscribers(out, **kwargs)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count


@subscribers.command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only subscribers with this status.")
@click.option("--topic", metavar="SLUG", help="Only subscribers of this topic.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: App, status: str | None, topic: str | None, as_json: bool) -> None:
    """List subscribers by address.

    \b
    Example:
      newsletter subscribers list --status confirmed --topic ml
    """
    with app.transaction() as session:
        subs = service.list_subscribers(session=session, status=status, topic=topic)
        if as_json:
            echo_json([service.subscriber_to_dict(s) for s in subs])
            return
        if subs:
            click.echo(LIST_HEADER)
        for sub in subs:
            _echo_subscriber_line(sub)
    click.echo(f"{len(subs)} subscriber{'' if len(subs) == 1 else 's'}", err=True)


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show(app: App, email: str, as_json: bool) -> None:
    """Show one subscriber, their topics, preferences and consent record.

    \b
    Example:
      newsletter subscribers show ada@example.org --json
    """
    with app.transaction() as session:
        data = service.subscriber_to_dict(
            service.get_subscriber(email, session=session), consent=True
        )
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if isinstance(value, list):
            # As --follow-authors, --mute and --keywords take them: a name may hold a comma.
            value = ("; " if key in RULE_LISTS else ", ").join(value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        click.echo(f"{key + ':':<16} {'' if value is None else value}")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def remove(app: App, email: str, yes: bool) -> None:
    """Delete a subscriber, their topic choices and their delivery records for good.

    A later import may add the address again; to stop mail but remember that the person
    left, unsubscribe or suppress the address instead.

    \b
    Example:
      newsletter subscribers remove ada@example.org --yes
    """
    if not yes:
        # Ask outside any transaction: a pending prompt must not hold the write lock.
        with app.transaction() as session:
            address = service.get_subscriber(email, session=session).email
        click.confirm(f"Delete {address} and their topic choices?", abort=True, err=True)
    with app.transaction() as session:
        address = service.remove_subscriber(email, session=session).email
    click.echo(f"removed {address}")


def register(group: click.Group) -> None:
    group.add_command(subscribers)
