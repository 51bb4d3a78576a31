"""Administrative commands: init, health, config, demo, doctor."""

from __future__ import annotations

import click

from newsletter.cli.common import echo_json, parse_date, pass_app
from newsletter.content.templating import shorten
from newsletter.core import db
from newsletter.core.app import App
from newsletter.core.config import SETTINGS_BY_NAME, describe_settings
from newsletter.core.setting_fields import Setting, toml_value
from newsletter.core.settings_reference import settings_reference
from newsletter.core.source_tables import as_dicts, as_toml
from newsletter.core.wording import plural
from newsletter.demo import run_demo


@click.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database schema to the newest revision.

    \b
    Example:
      NEWSLETTER_DATABASE_URL=sqlite:///var/newsletter.db newsletter init
    """
    before, after = db.migrate(app.engine)
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
    current, head = db.schema_state(app.engine)  # unreachable: one line, exit 1
    if current != head:
        raise click.ClickException(f"schema at {current or 'nothing'}, expected {head}: run init")
    click.echo(f"ok: database reachable, schema at {head}")


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option(
    "--reference", is_flag=True, help="Print the reference of every setting (Markdown tables)."
)
@pass_app
def show_config(app: App, as_json: bool, reference: bool) -> None:
    """Print every setting with its value, its default and what it does; secrets masked.

    The text form is itself a newsletter.toml: each setting is preceded by a comment
    with its help, its default and the environment variable that overrides it.
    `--reference` prints the tables of docs/configuration.md instead.

    \b
    Example:
      NEWSLETTER_TRANSPORT=smtp://user:pw@mail.example.org:587 newsletter config
      newsletter config --json | jq .settings.transport.value
      newsletter config --json | jq '.sources[].name'      # the [[sources]] tables
      newsletter config --reference > docs/configuration-tables.md
    """
    if reference:
        click.echo(settings_reference(), nl=False)
        return
    described = describe_settings(app.settings)
    source = app.settings.config_file or None
    tables = app.settings.sources
    if as_json:
        echo_json({"config_file": source, "settings": described, "sources": as_dicts(tables)})
        return
    click.echo(f"# read from {source}, then the environment" if source else NO_CONFIG_FILE)
    for name, item in described.items():
        click.echo(f"\n# {item['help']}\n# {_origin(SETTINGS_BY_NAME[name], item['environment'])}")
        # The tables replace the list of names: both in one file are refused.
        replaced = tables and name == "scheduler_sources"
        unread = "# (the [[sources]] tables below replace it) " if replaced else ""
        click.echo(f"{unread}{name} = {toml_value(item['value'])}")
    if tables:
        click.echo("\n# the sources the scheduler fetches (docs/sources.md)")
        click.echo(as_toml(tables))


NO_CONFIG_FILE = "# no newsletter.toml: defaults, then the environment"


def _origin(setting: Setting, environment: str | None) -> str:
    """Return where a setting's value comes from when unset: its default and its variable."""
    default = f"default {setting.default_text()}"
    return f"{default}; environment {environment}" if environment else default


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
        click.echo(f"\n{email} ({plural(len(titles), 'paper')})")
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
    group.add_command(doctor)


@click.command()
@click.option(
    "--dns-server",
    metavar="HOST[:PORT]",
    help="Ask this DNS server instead of the system's resolvers.",
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds per network check.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@pass_app
def doctor(app: App, dns_server: str | None, timeout: float, as_json: bool) -> None:
    """Check the sending setup and say what to fix, one line per check.

    SPF of the envelope domain allows the relay; the DKIM record matches the configured
    key; a DMARC record exists and aligns with From; the bounce domain routes back;
    base_url answers the one-click POST over https; postal address, List-Id and secret
    key are set; the schema is current; the relay answers EHLO, offers STARTTLS and
    accepts the credentials. Changes nothing and sends nothing. Exits 1 when a check fails.

    \b
    Example:
      newsletter doctor
      newsletter doctor --dns-server 1.1.1.1 --json
    """
    from newsletter.delivery.doctor import FAIL, Resolver, run_checks

    try:
        resolver = Resolver(dns_server, timeout=timeout)
    except ValueError as exc:
        message = f"{dns_server!r} is not HOST or HOST:PORT"
        raise click.BadParameter(message, param_hint="--dns-server") from exc
    checks = run_checks(app, resolver, timeout=timeout)
    if as_json:
        echo_json([c.to_dict() for c in checks])
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            fix = f"  -> {c.fix}" if c.fix and c.status != "ok" else ""
            click.echo(f"{c.status:<4}  {c.name:<{width}}  {c.message}{fix}")
    if any(c.status == FAIL for c in checks):
        raise SystemExit(1)
