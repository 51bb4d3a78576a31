"""`newsletter bounces` and `newsletter suppressions`: returned mail and blocked addresses."""

from __future__ import annotations

import sys

import click

from newsletter.audience import service as audience
from newsletter.audience import suppressions
from newsletter.bounces import process as bounce_processing
from newsletter.bounces.classify import verp_address
from newsletter.bounces.mailboxes import ImapSource, Source, open_source
from newsletter.bounces.process import BounceRun, format_reasons
from newsletter.cli.common import echo_json, parse_date, pass_app
from newsletter.core.app import App
from newsletter.core.errors import InputError
from newsletter.core.wording import plural
from newsletter.delivery import status as edition_status


@click.group()
def bounces() -> None:
    """Read bounces and complaints; see bounce and complaint rates.

    \b
    Example:
      newsletter bounces process var/bounces-maildir
    """


@bounces.command("process")
@click.argument("source", required=False, metavar="[MAILDIR|MBOX|-]")
@click.option("--imap", "imap_url", metavar="URL",
              help="Read an IMAP folder over TLS: imaps://user@host/folder; the password "
                   "from NEWSLETTER_IMAP_PASSWORD (in the URL, ps shows it).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the outcome of each message as JSON.")
@pass_app
def process(app: App, source: str | None, imap_url: str | None, as_json: bool) -> None:
    """Act on returned mail: suppress hard bounces, count soft ones, unsubscribe complaints.

    Also unsubscribes readers who mailed the List-Unsubscribe address with their token.
    Reports are believed only with a signed return path (bounce_require_verp) or about a
    subscriber mailed within bounce_recent_days. Messages not understood or not believed
    stay where they are (stdin: saved under var/bounces/kept/) and are listed. Handled
    ones move to the Maildir's .processed folder, to MBOX.processed, or are flagged
    deleted on the IMAP server. A run reads at most bounce_max_messages messages, and the
    first 2 MB of each; the next run takes the rest, new mail before mail kept earlier.

    \b
    Examples:
      newsletter bounces process ~/Maildir/.bounces
      newsletter bounces process - < returned.eml      # as an MTA pipe command
      newsletter bounces process --imap imaps://bounces@mail.example.org/INBOX
    """
    if (source is None) == (imap_url is None):
        raise click.UsageError("give one of MAILDIR, MBOX, - or --imap URL")
    opened: Source = (
        ImapSource(imap_url, limit=app.settings.bounce_max_messages)
        if imap_url
        else open_source(source or "-", settings=app.settings, stdin=sys.stdin.buffer)
    )
    try:
        run = _process(app, opened)
    finally:
        opened.close()
    if as_json:
        echo_json(run.to_dict())
    else:
        _print_run(run)
    if run.left:
        click.echo(
            f"{run.left} more messages left for the next run (bounce_max_messages)", err=True
        )


def _process(app: App, source: Source) -> BounceRun:
    if len(source) < 50:
        return bounce_processing.process_bounces(app, source)
    with click.progressbar(length=len(source), label="Reading", file=sys.stderr) as bar:
        return bounce_processing.process_bounces(app, source, progress=bar.update)


def _print_run(run: BounceRun) -> None:
    data = run.to_dict()
    counts = ", ".join(
        f"{data[k]} {k.replace('_', ' ')}" for k in (*bounce_processing.ACTIONS, "kept")
    )
    click.echo(f"{run.source}: {plural(data['messages'], 'message')}: {counts}")
    for address in run.suppressed:
        click.echo(f"  suppressed {address}")
    for address in run.addresses(bounce_processing.MAIL_UNSUBSCRIBED):
        click.echo(f"  unsubscribed by mail {address}")
    for outcome in run.outcomes:
        if outcome.action == "blocked":
            click.echo(f"  blocked ({outcome.reason}) {outcome.email}: {outcome.detail}")
    for outcome in run.kept:
        click.echo(f"  kept {outcome.ref}: {outcome.detail}", err=True)


@bounces.command("health")
@click.option("--date", "day", metavar="D", help="Listing date YYYY-MM-DD (default: newest).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def health(app: App, day: str | None, as_json: bool) -> None:
    """Show an edition's bounce and complaint rates, warning above 0.1% / 2%.

    \b
    Example:
      newsletter bounces health --date 2026-11-27 --json
    """
    data = edition_status.bounce_health(app, parse_date(day))
    if as_json:
        echo_json(data)
        return
    click.echo(
        f"edition {data['edition_id']}: {data['attempted']} sent, "
        f"{plural(data['hard_bounces'], 'hard bounce')} ({data['hard_bounce_rate']:.2%}), "
        f"{data['soft_bounces']} soft, {data['blocked']} blocked, "
        f"{plural(data['complaints'], 'complaint')} "
        f"({data['complaint_rate']:.2%})"
    )
    if data["by_reason"]:
        click.echo("by reason: " + format_reasons(data["by_reason"]))
    for warning in data["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@bounces.command("verp")
@click.argument("delivery_id", type=int)
@pass_app
def verp(app: App, delivery_id: int) -> None:
    """Print the signed return path of one delivery (to test the bounce route).

    \b
    Example:
      newsletter bounces verp 42
    """
    if delivery_id < 0:
        raise InputError("a delivery id is a positive number")
    click.echo(verp_address(app.settings, delivery_id))


@click.group("suppressions")
def suppressions_group() -> None:
    """List, add and remove addresses that must never be mailed.

    \b
    Example:
      newsletter suppressions list --json
    """


@suppressions_group.command("list")
@click.option("--reason", metavar="TEXT", help="Only reasons starting with TEXT.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: App, reason: str | None, as_json: bool) -> None:
    """List suppressed addresses, newest first, with reason and time.

    \b
    Example:
      newsletter suppressions list --reason complaint
    """
    rows = audience.list_suppressions(app, reason=reason)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['email']}\t{row['created_at']}\t{row['reason']}")


@suppressions_group.command("add")
@click.argument("email")
@click.option("--reason", default=suppressions.OPERATOR_REASON, show_default=True,
              help="Why the address is suppressed.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def add(app: App, email: str, reason: str, as_json: bool) -> None:
    """Suppress an address: it is never planned nor sent to again.

    \b
    Example:
      newsletter suppressions add someone@example.org --reason "asked by phone"
    """
    data = audience.suppress(app, email, reason)
    if as_json:
        echo_json(data)
    elif data["created"]:
        click.echo(f"suppressed {data['email']} ({data['reason']})")
    else:
        click.echo(f"{data['email']} was already suppressed ({data['reason']})")


@suppressions_group.command("remove")
@click.argument("email")
@pass_app
def remove(app: App, email: str) -> None:
    """Take an address off the suppression list so it may be mailed again.

    A subscriber marked bounced or unsubscribed stays so until they subscribe again.

    \b
    Example:
      newsletter suppressions remove someone@example.org
    """
    row = audience.unsuppress(app, email)
    click.echo(f"removed {row['email']} (was: {row['reason']})")


def register(group: click.Group) -> None:
    """Add the bounces and suppressions commands to the CLI."""
    group.add_command(bounces)
    group.add_command(suppressions_group)
