"""`newsletter subscribers` commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from newsletter.audience import backup, csv_import, validation
from newsletter.audience import service as audience
from newsletter.cli import invitations as invited
from newsletter.cli.common import echo_json, export_to_file, pass_app
from newsletter.core.app import App
from newsletter.core.models import Frequency, SubscriberStatus
from newsletter.papers import seeds as own_papers
from newsletter.papers import service as papers
from newsletter.papers.sources.library import MAX_BYTES

SHOWN_ERRORS = 20
# Below this size an import takes well under a second: a progress bar would only flicker.
PROGRESS_MIN_BYTES = 1 << 20
STATUSES = [s.value for s in SubscriberStatus]
LIST_ROW = "{:<40} {:<12} {:<20} {:>4} {:>3}  {}"
LIST_HEADER = LIST_ROW.format("EMAIL", "STATUS", "TIMEZONE", "HOUR", "MAX", "TOPICS")
# Lists of what readers write themselves, shown as they are entered: separated by ";".
RULE_LISTS = ("follow_authors", "muted_words", "personal_keywords")


def _delivery_options(f: Callable[..., object]) -> Callable[..., object]:
    """Add the web form's frequency, weekly day and pause to a command."""
    f = click.option(
        "--pause/--resume",
        "paused",
        default=None,
        help="Stop digests but keep the preferences, or start them again.",
    )(f)
    f = click.option(
        "--weekly-day",
        metavar="DAY",
        help="Day of a weekly digest: Monday-Sunday, mon-sun or 0-6 (0 is Monday).",
    )(f)
    return click.option(
        "--frequency", metavar="daily|weekly", help="How often digests come [default: daily]."
    )(f)


def _seed_options(f: Callable[..., object]) -> Callable[..., object]:
    """Add a reader's own papers, by identifier or from a library file, to a command."""
    f = click.option(
        "--seed-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Their papers from a BibTeX, RIS or CSL-JSON file (a Zotero or Mendeley export).",
    )(f)
    return click.option(
        "--seed-papers",
        metavar="ID,ID",
        help="Their own papers: arXiv ids (any version) or DOIs. They count as liked, and "
        "never come in their digests. Replaces the ones before.",
    )(f)


def _own_papers(
    app: App, seed_papers: str | None, seed_file: str | None
) -> own_papers.SeedChoice | None:
    """Turn --seed-papers or --seed-file into seeds, before any write (look-ups take time)."""
    if seed_papers is not None and seed_file is not None:
        raise click.UsageError("give --seed-papers or --seed-file, not both")
    if seed_papers is None and seed_file is None:
        return None
    if seed_papers is not None:
        return papers.seeds_from_refs(app, seed_papers)
    path = Path(seed_file or "")
    with path.open("rb") as stream:
        data = stream.read(MAX_BYTES + 1)  # read_library refuses more, without reading it all
    choice = papers.seeds_from_library(app, data, path.name)
    for reason in choice.left_out:
        click.echo(f"left out: {reason}", err=True)
    return choice


@click.group()
def subscribers() -> None:
    """Manage subscribers: add, edit, invite, import, export, list, show and remove them."""


def _echo_subscriber_line(sub: dict[str, Any]) -> None:
    topics = ",".join(sub["topics"]) or "-"
    click.echo(
        LIST_ROW.format(
            sub["email"], sub["status"], sub["timezone"], sub["hour"], sub["max_papers"], topics
        )
    )


def _delivery(data: dict[str, Any]) -> str:
    """Say when a subscriber's digests come: "weekly on Friday at 7:00 Europe/Paris, paused"."""
    when = "daily"
    if data["frequency"] == Frequency.WEEKLY:
        when = f"weekly on {validation.WEEKDAYS[data['weekly_day']].capitalize()}"
    count = data["max_papers"]
    papers = f"at most {count} paper{'' if count == 1 else 's'}"
    paused = ", paused" if data["paused"] else ""
    return f"{when} at {data['hour']}:00 {data['timezone']}, {papers}{paused}"


INTERESTS_HELP = (
    "What they want in their own words (up to 1,000 characters), matched by meaning like a "
    "private topic."
)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name used in the greeting.")
@click.option("--topics", default="", help="Comma-separated topic slugs, e.g. ml,nlp.")
@click.option("--interests", default="", metavar="TEXT", help=INTERESTS_HELP)
@click.option("--confirmed", is_flag=True, help="Mark as confirmed (you vouch for consent).")
@click.option(
    "--send-confirmation",
    is_flag=True,
    help="Email them the sign-up form's confirmation link (double opt-in).",
)
@click.option("--timezone", "tz", metavar="AREA/CITY", help="IANA time zone [default: setting].")
@click.option("--hour", type=int, metavar="0-23", help="Local delivery hour [default: setting].")
@click.option("--max-papers", type=int, metavar="N", help="Papers per digest, 1-50.")
@_delivery_options
@_seed_options
@click.option("--json", "as_json", is_flag=True, help="Print the subscriber as JSON.")
@pass_app
def add(
    app: App,
    email: str,
    name: str,
    topics: str,
    interests: str,
    confirmed: bool,
    send_confirmation: bool,
    tz: str | None,
    hour: int | None,
    max_papers: int | None,
    frequency: str | None,
    weekly_day: str | None,
    paused: bool | None,
    seed_papers: str | None,
    seed_file: str | None,
    as_json: bool,
) -> None:
    """Add one subscriber. Without --confirmed they stay pending until they confirm.

    A subscriber needs --topics, --interests or both: papers that stand out in meaning
    against their interests come with their topics' papers, "close to your interests".

    With --send-confirmation they get the email a sign-up on the web gets; its link
    confirms them (see `invite`).

    \b
    Examples:
      newsletter subscribers add ada@example.org --name Ada --topics ml,nlp \\
          --confirmed --timezone Europe/London --hour 7
      newsletter subscribers add bo@example.org --topics ml --frequency weekly --weekly-day fri
      newsletter subscribers add cy@example.org --topics ml --send-confirmation
      newsletter subscribers add di@example.org --topics ml --confirmed \\
          --seed-papers 2306.06918v2,10.1371/journal.pcbi.1003531
      newsletter subscribers add di@example.org --confirmed \\
          --interests "spin liquids and frustration in quantum magnets"
    """
    if confirmed and send_confirmation:
        raise click.UsageError("--send-confirmation is for pending subscribers: drop --confirmed")
    seeds = _own_papers(app, seed_papers, seed_file)
    added = audience.add_subscriber(
        app,
        email,
        seeds=seeds.seeds if seeds is not None else None,
        send_confirmation=send_confirmation,
        name=name,
        topics=topics,
        interests=interests,
        confirmed=confirmed,
        timezone=tz,
        hour=hour,
        max_papers=max_papers,
        frequency=frequency,
        weekly_day=weekly_day,
        paused=paused,
    )
    data, asked = added.subscriber, added.invitations
    drained = invited.send_invitations(app, asked)
    if as_json:
        sent = {"invitation": invited.invitation_data(asked, drained)} if asked.queued else {}
        echo_json(data | sent)
    else:
        topics = ", ".join(data["topics"]) or "none"
        click.echo(f"added {data['email']} ({data['status']}; topics: {topics})")
        if data["interests"]:
            click.echo(f"  interests: {data['interests']}")
        if data["frequency"] != Frequency.DAILY or data["paused"]:
            click.echo(f"  delivery: {_delivery(data)}")
        if data["seed_papers"]:
            click.echo(f"  own papers: {len(data['seed_papers'])}")
        if asked.queued:
            invited.echo_invitations(asked, drained)
    invited.fail_if_unsent(drained)


@subscribers.command("edit")
@click.argument("email")
@click.option("--name", help="Display name used in the greeting.")
@click.option("--topics", help="Comma-separated topic slugs: replaces the current ones.")
@click.option("--timezone", "tz", metavar="AREA/CITY", help="IANA time zone.")
@click.option("--hour", type=int, metavar="0-23", help="Local delivery hour.")
@click.option("--max-papers", type=int, metavar="N", help="Papers per digest, 1-50.")
@_delivery_options
@click.option(
    "--follow-authors",
    metavar="'A;B'",
    help="Authors whose papers always come first, ';'-separated ('' clears).",
)
@click.option("--mute", metavar="'W1;W2'", help="Words whose papers never come ('' clears).")
@click.option(
    "--keywords", metavar="'K1;K2'", help="Keywords that match like a private topic ('' clears)."
)
@_seed_options
@click.option(
    "--clear-seeds", "clear_seeds_", is_flag=True, help="Forget the papers they gave as their own."
)
@click.option("--interests", metavar="TEXT", help=INTERESTS_HELP[:-1] + " ('' clears).")
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
    frequency: str | None,
    weekly_day: str | None,
    paused: bool | None,
    follow_authors: str | None,
    mute: str | None,
    keywords: str | None,
    seed_papers: str | None,
    seed_file: str | None,
    clear_seeds_: bool,
    interests: str | None,
    as_json: bool,
) -> None:
    """Change a subscriber's preferences; what is not given stays as it is.

    Authors match however a source spells them ("Doe, Jane", "J. Doe", "Jané Doe");
    muted words and keywords match whole words and their inflections, like topics.
    Their own papers (--seed-papers, --seed-file) count as papers they liked and are never
    sent to them; arXiv ids the store lacks are looked up on arXiv.

    \b
    Examples:
      newsletter subscribers edit ada@example.org --follow-authors "Jane Doe;Yoshua Bengio"
      newsletter subscribers edit ada@example.org --mute "benchmark;survey" --keywords "LoRA"
      newsletter subscribers edit ada@example.org --topics ml,nlp --hour 7 --max-papers 5
      newsletter subscribers edit ada@example.org --frequency weekly --weekly-day monday
      newsletter subscribers edit ada@example.org --pause
      newsletter subscribers edit ada@example.org --seed-papers 2306.06918,hep-th/9901001
      newsletter subscribers edit ada@example.org --seed-file "My Library.bib"
      newsletter subscribers edit ada@example.org --clear-seeds
      newsletter subscribers edit ada@example.org --interests "causal inference for epidemics"
      newsletter subscribers edit ada@example.org --interests ""
    """
    if clear_seeds_ and (seed_papers is not None or seed_file is not None):
        raise click.UsageError("--clear-seeds forgets their papers: drop --seed-papers/--seed-file")
    seeds = _own_papers(app, seed_papers, seed_file)
    data = audience.edit_subscriber(
        app,
        email,
        seeds=[] if clear_seeds_ else (seeds.seeds if seeds is not None else None),
        name=name,
        topics=topics,
        timezone=tz,
        hour=hour,
        max_papers=max_papers,
        frequency=frequency,
        weekly_day=weekly_day,
        paused=paused,
        follow_authors=follow_authors,
        muted_words=mute,
        personal_keywords=keywords,
        interests=interests,
    )
    if as_json:
        echo_json(data)
        return
    click.echo(f"updated {data['email']}")
    click.echo(f"  delivery: {_delivery(data)}")
    for label, key in (
        ("topics", "topics"),
        ("follows", "follow_authors"),
        ("muted", "muted_words"),
        ("keywords", "personal_keywords"),
    ):
        if data[key]:
            click.echo(f"  {label}: {'; '.join(data[key])}")
    if data["seed_papers"]:
        click.echo(f"  own papers: {len(data['seed_papers'])}")
    if data["interests"]:
        click.echo(f"  interests: {data['interests']}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    help="The file's format [default: json for a .json file, else csv].",
)
@click.option(
    "--status",
    type=click.Choice(["confirmed", "pending"]),
    default="confirmed",
    show_default=True,
    help="CSV: status of new subscribers whose row has no status column.",
)
@click.option(
    "--skip-missing-papers",
    is_flag=True,
    help="JSON: leave out votes on papers this instance does not hold, instead of stopping.",
)
@click.option(
    "--send-confirmation",
    is_flag=True,
    help="Email the file's pending subscribers the confirmation link (see `invite`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@pass_app
def import_(
    app: App,
    ctx: click.Context,
    file: str,
    fmt: str | None,
    status: str,
    skip_missing_papers: bool,
    send_confirmation: bool,
    as_json: bool,
) -> None:
    """Import subscribers from a UTF-8 CSV file, or a JSON file from `export` (- for stdin).

    CSV: the header line is required and names columns from: email, name, topics, timezone,
    hour, max_papers, status, interests. email and topics are required; topics are slugs
    separated by ";" or by "," (a cell with commas is quoted: "ml,nlp"); a row may leave
    topics empty when it gives interests. Empty cells take the
    defaults for new subscribers and keep the current value for existing ones. Existing
    subscribers keep their status, so an unsubscribed address is never subscribed again
    by an import. Importing the same file twice changes nothing.
    The ' that `export` puts before a cell starting with = + - @, a tab or a CR is removed.
    Exit status: 0 when every row was imported, 1 when some rows were skipped (the good
    rows are saved; the bad ones are listed with their line numbers), 2 when the file
    itself is unusable (then nothing is saved).

    JSON (`export --format json`): every subscriber is restored whole, with their status,
    choices, rules, consent history and votes; addresses already stored are left as they
    are. A bad row stops the import with one line naming it, exit 2, and nothing is saved.

    With --send-confirmation, the file's subscribers who are pending afterwards (of a JSON
    file, those it added) get the email a sign-up on the web gets (see `invite`); those
    who cannot be asked now are listed.

    \b
    Examples:
      printf 'email,name,topics\\nada@example.org,Ada,ml;nlp\\n' > people.csv
      newsletter subscribers import people.csv --status pending --send-confirmation
      newsletter subscribers import backup.json
    """
    fmt = fmt or ("json" if file.lower().endswith(".json") else "csv")
    if fmt == "json" and ctx.get_parameter_source("status") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--status is for CSV files: a JSON file gives each one's status")
    if fmt == "csv" and skip_missing_papers:
        raise click.UsageError("--skip-missing-papers is for JSON files: CSV holds no votes")
    source: str | IO[bytes] = sys.stdin.buffer if file == "-" else file
    size = 0 if file == "-" else _file_size(file)
    with _progress(size) as advance:
        imported = audience.import_subscribers(
            app, source, fmt=fmt, status=status, skip_missing_papers=skip_missing_papers,
            send_confirmation=send_confirmation, on_progress=advance,
        )  # fmt: skip
    report, asked = imported.report, imported.invitations
    drained = invited.send_invitations(app, asked)
    if as_json:
        sent = {"invitations": invited.invitation_data(asked, drained)}
        echo_json(report.to_dict() | (sent if send_confirmation else {}))
    else:
        _echo_report(report)
        if send_confirmation:
            invited.echo_invitations(asked, drained)
    invited.fail_if_unsent(drained)
    if getattr(report, "skipped", 0):
        ctx.exit(1)


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


def _echo_report(report: csv_import.ImportReport | backup.JsonImportReport) -> None:
    if isinstance(report, backup.JsonImportReport):
        left_out = report.votes_left_out
        votes = f", {left_out} vote(s) on missing papers left out" if left_out else ""
        click.echo(
            f"{report.source}: {report.new} new, {report.present} already stored "
            f"(left as they are){votes}"
        )
        return
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
    """Write every subscriber as JSON (everything they have) or CSV (a spreadsheet's share).

    JSON is the backup: `import` restores from it each subscriber's status, name, topics,
    delivery choices (frequency, weekly day, pause), followed authors, muted words,
    keywords and interests, consent record and history, votes on papers and timestamps.
    Links in emails sent earlier name this instance's ids: after a restore elsewhere they
    stop working.

    CSV holds only the columns `import` reads for a list of people (email, name, topics,
    timezone, hour, max_papers, status, interests): it drops the frequency, weekly day, pause,
    followed authors, muted words, keywords, consent records, votes and timestamps, so it
    is not a backup. The topics cell lists slugs separated by ";"; `import` reads ";" and
    "," alike. A CSV cell that starts with = + - @, a tab or a CR (after any ' of its own)
    gets a ' in front, so that a spreadsheet shows it as text instead of running it as a
    formula; `import` removes that one quote.

    \b
    Examples:
      newsletter subscribers export --format json --output backup.json
      newsletter subscribers import backup.json
      newsletter subscribers export --output people.csv
    """

    def write(out: IO[str]) -> int:
        return audience.export_subscribers(app, out, fmt=fmt)

    if output is None:
        write(sys.stdout)
        return
    count = export_to_file(Path(output), write)
    click.echo(f"exported {count} subscribers to {output}", err=True)


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
    subs = audience.list_subscribers(app, status=status, topic=topic)
    if as_json:
        echo_json(subs)
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
    data = audience.subscriber(app, email, consent=True)
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if key == "seed_papers":  # titles only: abstracts are for --json
            value = [paper["title"] for paper in value]
            key = "own papers"
        if isinstance(value, list):
            # As --follow-authors, --mute and --keywords take them: a name may hold a comma.
            value = ("; " if key in (*RULE_LISTS, "own papers") else ", ").join(value)
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
        address = audience.subscriber(app, email)["email"]
        click.confirm(f"Delete {address} and their topic choices?", abort=True, err=True)
    address = audience.remove_subscriber(app, email)
    click.echo(f"removed {address}")


subscribers.add_command(invited.invite)


def register(group: click.Group) -> None:
    group.add_command(subscribers)
