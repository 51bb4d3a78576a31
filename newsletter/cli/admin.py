"""Administrative commands: init, config, demo."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from newsletter.cli.common import echo_json, parse_date, pass_app
from newsletter.content.rendering import shorten
from newsletter.core import db
from newsletter.core.app import App
from newsletter.demo import run_demo


@click.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database schema to the newest revision.

    \b
    Example:
      NEWSLETTER_DATABASE_URL=sqlite:///var/newsletter.db newsletter init
    """
    before = db.current_revision(app.engine)
    db.upgrade(app.engine)
    after = db.current_revision(app.engine)
    if before == after:
        click.echo(f"database is up to date (revision {after})")
    else:
        click.echo(f"database migrated from {before or 'empty'} to {after}")


@click.command()
@pass_app
def health(app: App) -> None:
    """Check that the database answers and its schema is current (for health checks).

    Exits 0 when healthy, 1 with one line saying what is wrong otherwise.

    \b
    Example:
      newsletter health && echo healthy
    """
    try:
        current = db.current_revision(app.engine)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database unreachable: {type(exc).__name__}") from exc
    head = db.head_revision(app.engine)
    if current != head:
        raise click.ClickException(f"schema at {current or 'nothing'}, expected {head}: run init")
    click.echo(f"ok: database reachable, schema at {head}")


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show_config(app: App, as_json: bool) -> None:
    """Print the effective settings, with secrets masked.

    \b
    Example:
      NEWSLETTER_TRANSPORT=smtp://user:pw@mail.example.org:587 newsletter config
    """
    settings = app.settings.masked()
    if as_json:
        echo_json(settings)
        return
    width = max(len(k) for k in settings)
    for key, value in settings.items():
        click.echo(f"{key:<{width}}  {value}")


@click.command()
@click.option(
    "--date", "day", metavar="D", help="Listing date for the seed papers (default: today)."
)
@pass_app
def demo(app: App, day: str | None) -> None:
    """Run a whole day of the product on the embedded defaults, offline.

    Creates the database, imports the 50 seed papers and the demo topics, adds four
    demo subscribers, matches, and writes their digests into the Maildir outbox.
    Running it again sends nothing twice.

    \b
    Example:
      newsletter demo
      NEWSLETTER_TRANSPORT=smtp://127.0.0.1:1025 newsletter demo   # into Mailpit
    """
    report = run_demo(app, day=parse_date(day), echo=click.echo)
    summary = report.send.summary if report.send else None
    for email, titles in report.digests.items():
        click.echo(f"\n{email} ({len(titles)} papers)")
        for title in titles:
            click.echo(f"  - {shorten(title, 90)}")
    click.echo("")
    if summary is not None:
        click.echo(f"send: {summary.line()}")
    click.echo(f"outbox: {report.outbox}")
    if report.example_file:
        click.echo(f"open one: {report.example_file}")
    click.echo("see one as a web page: newsletter preview ada@example.org --output ada.html")


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(health)
    group.add_command(show_config)
    group.add_command(demo)
