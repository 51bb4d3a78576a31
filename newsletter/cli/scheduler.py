"""`newsletter scheduler`: run the daily jobs in the foreground, once, or show the plan."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App
from newsletter.core.models import utcnow
from newsletter.core.runner import StopControl, stop_on_signals
from newsletter.editions import schedule
from newsletter.runners import tick as scheduling
from newsletter.runners.scheduler import Scheduler


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run whatever is due now, then exit (for cron).")
@click.option("--dry-run", is_flag=True, help="Print who gets what in the next 24 hours.")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="With --dry-run: plan from this ISO time (default: now), e.g. 2026-11-30T06:00Z.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report or plan as JSON.")
@pass_app
def scheduler(app: App, once: bool, dry_run: bool, at: str | None, as_json: bool) -> None:
    """Fetch every morning and deliver at each subscriber's own hour, never twice.

    Without options it runs in the foreground until SIGINT or SIGTERM. One scheduler is
    active at a time: a second one waits as a standby and takes over when the first dies.
    Missed deliveries are caught up on start (up to scheduler_staleness_hours late).

    \b
    Examples:
      newsletter -v scheduler                  # the service (see deploy/)
      newsletter scheduler --once              # from cron or a systemd timer
      newsletter scheduler --dry-run --json    # the next 24 hours, nothing written
    """
    if once and dry_run:
        raise click.UsageError("choose one of --once and --dry-run")
    if at is not None and not dry_run:
        raise click.UsageError("--at goes with --dry-run only")
    if dry_run:
        _print_plan(schedule.plan_next_24h(app, _parse_time(at) if at else utcnow()), as_json)
    elif once:
        _run_once(app, as_json)
    else:
        Scheduler(app).run()


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected an ISO time, got {value!r}", param_hint="--at"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _run_once(app: App, as_json: bool) -> None:
    control = StopControl()
    # A stop signal finishes the message in flight and hands the other rows back.
    with stop_on_signals(control.stop):
        report = scheduling.run_once(app, utcnow(), control=control)
    if report is None:
        holder = scheduling.active_holder(app)
        click.echo(f"another scheduler is active ({holder}): nothing to do")
        return
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(report.line())
    if not report.ok:
        raise click.exceptions.Exit(1)


def _print_plan(plan: list[schedule.Upcoming], as_json: bool) -> None:
    if as_json:
        echo_json([item.as_dict() for item in plan])
        return
    if not plan:
        click.echo("nothing is due in the next 24 hours")
        return
    for item in plan:
        edition = f"{item.kind} edition of {item.available or 'no listing yet'}"
        if item.available != item.listing_up_to:
            edition += f" (or of {item.listing_up_to} if it is fetched by then)"
        who = ", ".join(item.recipients[:3]) + (
            f" and {len(item.recipients) - 3} more" if len(item.recipients) > 3 else ""
        )
        click.echo(f"{item.at:%Y-%m-%d %H:%M} UTC ({item.local}): {edition} to {who}")


def register(group: click.Group) -> None:
    group.add_command(scheduler)
