"""`newsletter send`, `plan`, `status` and `preview`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.bounces.process import format_reasons
from newsletter.cli.common import (
    check_output_folder,
    echo_json,
    parse_date,
    pass_app,
    write_output,
)
from newsletter.content.digest import DigestPaper
from newsletter.content.templating import one_line
from newsletter.core.app import App
from newsletter.core.errors import InputError, SendingHeld
from newsletter.delivery import mail_queue
from newsletter.delivery import service as sending
from newsletter.delivery import status as edition_status
from newsletter.delivery.recorder import SendSummary
from newsletter.editions.planning import PlanStats
from newsletter.matching.check import CHECK_DAYS, QUIET_DAYS
from newsletter.runners.send import SendRun

DATE_HELP = "Listing date YYYY-MM-DD (default: the newest listing)."


@click.command()
@click.option("--date", "day", metavar="D", help=DATE_HELP)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List each owed reader and their papers, in order; send and write nothing.",
)
@click.option("--to", "to", metavar="EMAIL", help="Send one test copy to this address only.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N messages in this run.")
@click.option("--yes", is_flag=True, help="Do not ask before a large send.")
@click.option(
    "--force",
    is_flag=True,
    help="Start the edition though the last one drew too many complaints; "
    "with --to: send even to a suppressed address.",
)
@click.option("--resume", is_flag=True, help="Lift the guard's pause of the edition and send.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary (or the --dry-run list) as JSON."
)
@pass_app
def send(
    app: App,
    day: str | None,
    dry_run: bool,
    to: str | None,
    limit: int | None,
    yes: bool,
    force: bool,
    resume: bool,
    as_json: bool,
) -> None:
    """Deliver an edition to every confirmed subscriber who is still owed it.

    Re-running sends only what is still owed: nothing is sent twice. The deliverability
    guard pauses an edition whose first answers show many dead addresses or policy blocks;
    --resume sends the rest once the list is checked.

    \b
    Examples:
      newsletter send --date 2026-11-27 --dry-run  # each reader and their papers, in order
      newsletter send --dry-run --json             # the same as JSON
      newsletter send --to me@example.org          # a test copy, state untouched
      newsletter send --yes                        # the newest listing, no prompt
      newsletter send --resume --date 2026-11-27   # after the guard paused it
    """
    listing_date = parse_date(day)
    if to:
        result = sending.send_test_copy(app, to, listing_date, force=force)
        click.echo(f"test copy sent to {to}: {result.reply}")
        return
    if dry_run:
        _print_dry_run(*sending.dry_run(app, listing_date), app.settings.empty_policy, as_json)
        return
    check = sending.check_before_send(app, listing_date, limit=limit, force=force, resume=resume)
    if not yes:
        _confirm_large_send(check)
    report = SendRun(
        app,
        listing_date,
        options=sending.options_from_settings(app, limit=limit),
        progress=_progress_printer(check.owed),
        force=force,
        resume=resume,
    ).deliver()
    if report is None:  # a signal came before the run began
        raise click.ClickException("stopped before anything was sent")
    s = report.summary
    if as_json:
        echo_json({"date": report.plan.listing_date, **_summary_dict(s)})
    else:
        click.echo(f"{report.plan.listing_date}: {s.line()}")
    if s.paused:
        day_text = report.plan.listing_date
        raise SendingHeld(
            f"the {day_text} edition is paused: {s.paused}; {s.owed} deliveries stay owed; "
            f"check the list, then `newsletter send --resume --date {day_text}` sends the rest"
        )


def _confirm_large_send(check: sending.SendCheck) -> None:
    """Ask on a terminal before a send above the threshold; elsewhere require --yes."""
    if not check.needs_confirmation:
        return
    count = check.to_send
    if not sys.stdin.isatty():  # a cron job must say --yes (or --limit) on purpose
        raise InputError(
            f"this run would send to {count} subscribers (more than confirm_above = "
            f"{check.confirm_above}) and stdin is not a terminal: add --yes or --limit"
        )
    click.confirm(f"Send to {count} subscribers?", abort=True)


def _summary_dict(s: SendSummary) -> dict[str, object]:
    return {
        "sent": s.sent,
        "failed": s.failed,
        "skipped": s.skipped,
        "owed": s.owed,
        "retried": s.retried,
        "seconds": round(s.elapsed, 3),
        "per_second": round(s.rate, 1),
        "paused": s.paused,
    }


def _progress_printer(total: int):
    """Return a progress callback drawing a bar with rate and ETA on a terminal."""
    if not sys.stderr.isatty() or total <= 0:
        return None
    import time

    started = time.perf_counter()

    def show(s: SendSummary) -> None:
        done = s.sent + s.failed + s.skipped
        elapsed = max(time.perf_counter() - started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0
        width = 30
        filled = int(width * min(done / total, 1))
        click.echo(
            f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} "
            f"{rate:,.0f} msg/s ETA {eta:,.0f}s ",
            nl=False,
            err=True,
        )

    return show


def _plan_dict(stats: PlanStats) -> dict[str, object]:
    return {
        "date": stats.listing_date,
        "edition": stats.edition_id,
        "newly_planned": stats.planned,
        "pending": stats.pending,
        "skipped": stats.skipped,
    }


def _print_plan(stats: PlanStats, as_json: bool, *, dry_run: bool = False) -> None:
    if as_json:
        echo_json(_plan_dict(stats))
        return
    verb = "would plan" if dry_run else "planned"
    click.echo(
        f"{stats.listing_date}: {verb} {stats.planned} new "
        f"{'delivery' if stats.planned == 1 else 'deliveries'}; "
        f"{stats.pending} owed, {stats.skipped} skipped (no matching paper)"
    )


def _print_dry_run(
    stats: PlanStats,
    digests: list[sending.PlannedDigest],
    empty_policy: str,
    as_json: bool,
) -> None:
    """Print the plan, then each owed reader's papers in the order their digest shows them."""
    empty = "note" if empty_policy == "note" else "nothing"
    if as_json:
        readers = [
            {
                "email": d.email,
                "gets": "digest" if d.papers else empty,
                "papers": [_paper_dict(p) for p in d.papers],
            }
            for d in digests
        ]
        echo_json({**_plan_dict(stats), "readers": readers})
        return
    _print_plan(stats, False, dry_run=True)
    for digest in digests:
        n = len(digest.papers)
        if not n:
            what = "the nothing-new note" if empty == "note" else "nothing (skipped)"
            click.echo(f"{digest.email}: {what}")
            continue
        click.echo(f"{digest.email}: {n} paper{'' if n == 1 else 's'}")
        for number, paper in enumerate(digest.papers, 1):
            click.echo(f"  {number}. {one_line(paper.title)} (id {paper.paper_id})")


def _paper_dict(paper: DigestPaper) -> dict[str, object]:
    return {"id": paper.paper_id, "title": paper.title, "url": paper.url_abs,
            "why": paper.reason or paper.why}  # fmt: skip


@click.command()
@click.option("--date", "day", metavar="D", help=DATE_HELP)
@click.option(
    "--force", is_flag=True, help="Plan though the last edition drew too many complaints."
)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def plan(app: App, day: str | None, force: bool, as_json: bool) -> None:
    """Plan an edition's deliveries without sending (for workers to drain).

    \b
    Example:
      newsletter plan --date 2026-11-27
    """
    _print_plan(sending.plan_unless_held(app, parse_date(day), force=force), as_json)


@click.command()
@click.option("--date", "day", metavar="D", help=DATE_HELP)
@pass_app
def resume(app: App, day: str | None) -> None:
    """Lift the deliverability guard's pause of an edition: workers send the rest.

    The guard then judges only the answers that come after now.

    \b
    Example:
      newsletter resume --date 2026-11-27 && newsletter worker --once
    """
    listing_date, reason = sending.resume_sending(app, parse_date(day))
    click.echo(f"{listing_date}: resumed (it was paused: {reason})")


@click.command()
@click.option("--date", "day", metavar="D", help=DATE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def status(app: App, day: str | None, as_json: bool) -> None:
    """Show an edition's deliveries per status.

    \b
    Example:
      newsletter status --date 2026-11-27 --json
    """
    queue = mail_queue.queue_status(app)
    for warning in _mail_queue_warnings(queue):  # before any edition: sign-ups come first
        click.echo(f"warning: {warning}", err=True)
    report = edition_status.status_report(app, parse_date(day), queue=queue)
    data = report.edition
    if not report.by_meaning:
        click.echo(f"warning: topics are matched {report.matching}", err=True)
    health = data.get("health") or {}
    for warning in health.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    for slug in report.quiet_topics:
        click.echo(
            f"warning: topic {slug!r} matched no paper in the last {QUIET_DAYS} days of "
            f"listings: see `newsletter topics check {slug}`",
            err=True,
        )
    for topic in report.disliked_topics:
        votes = topic["likes"] + topic["dislikes"]
        click.echo(
            f"warning: topic {topic['slug']!r}: {topic['dislikes']} of its readers' {votes} "
            f'votes in the last {CHECK_DAYS} days of listings say "less like this": see '
            f"`newsletter topics check {topic['slug']}`",
            err=True,
        )
    if as_json:
        echo_json(report.to_dict())
        return
    if not data["planned"]:
        click.echo(f"{data['date']}: not planned yet")
        return
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    click.echo(f"{data['date']}: {counts}")
    for line in _guard_lines(data["date"], data.get("guard") or {}):
        click.echo(line)
    if health:
        click.echo(_health_line(health))
    votes = data.get("votes")
    if votes and (votes["likes"] or votes["dislikes"]):
        click.echo(
            f"votes: {votes['likes']} more like this, {votes['dislikes']} less like this, "
            f"from {votes['readers']} readers"
        )


def _mail_queue_warnings(queue: dict) -> list[str]:
    """Say which sign-up emails wait for the relay or were given up, and what sends them."""
    lines = []
    command = "`newsletter subscribers send-mail`"
    if queue["waiting"]:
        lines.append(
            f"{queue['waiting']} sign-up email(s) wait to be sent again: {command} sends "
            "them now"
        )
    if queue["failed"]:
        lines.append(
            f"{queue['failed']} sign-up email(s) were given up unsent: {command} sends "
            "them again"
        )
    if lines and queue["last_error"]:
        lines.append(f"the last sign-up email error: {queue['last_error']}")
    return lines


def _guard_lines(day: str, state: dict) -> list[str]:
    """Describe the guard's pause and the answers it judges; nothing before any answer."""
    lines = []
    if state.get("paused"):
        lines.append(
            f"paused since {state['paused_at']:%Y-%m-%d %H:%M} UTC: {state['reason']}; "
            f"`newsletter send --resume --date {day}` or `newsletter resume --date {day}` "
            "lifts it"
        )
    if state.get("answers"):
        lines.append(
            f"guard: {state['answers']} answers, {state['address_failures']} address failures "
            f"({state['address_failure_rate']:.1%}), {state['blocks']} policy blocks "
            f"({state['block_rate']:.1%})" + (" since the resume" if state.get("resumed") else "")
        )
    return lines


def _health_line(health: dict) -> str:
    parts = []
    for key in ("hard_bounces", "soft_bounces", "blocked", "complaints"):
        if key in health:
            parts.append(f"{key.replace('_', ' ')} {health[key]}")
    for key in ("hard_bounce_rate", "complaint_rate"):
        if key in health:
            parts.append(f"{key.replace('_', ' ')} {health[key]:.2%}")
    line = "health: " + ", ".join(parts)
    if health.get("by_reason"):
        line += "\nby reason: " + format_reasons(health["by_reason"])
    return line


@click.command()
@click.argument("email")
@click.option("--date", "day", metavar="D", help=DATE_HELP)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write FILE.html (the HTML part) or FILE.eml (the whole message).",
)
@pass_app
def preview(app: App, email: str, day: str | None, output: Path | None) -> None:
    """Show the email one subscriber gets for an edition; nothing is sent.

    Without --output, prints its subject and text part. Its papers and their order are
    the ones the send gives this subscriber: chosen by the same selection. A weekly
    subscriber's is their week's digest up to the date, as the scheduler sends it.

    \b
    Examples:
      newsletter preview ada@example.org
      newsletter preview ada@example.org --output ada.html
      newsletter preview ada@example.org --date 2026-11-27 --output ada.eml
    """
    if output is not None:
        _check_preview_file(output)  # before the work, which a bad name would waste
    shown = sending.build_preview(app, email, parse_date(day))
    if shown.skipped:
        click.echo(
            f"warning: {email} gets nothing this day (empty_policy = skip): this is the note "
            "that empty_policy = note would send",
            err=True,
        )
    if output is None:
        click.echo(f"Subject: {shown.subject}\n\n{shown.text}", nl=False)
        return
    html = output.suffix.lower() == ".html"
    write_output(output, shown.html.encode() if html else shown.data)
    click.echo(f"wrote {output}")


def _check_preview_file(path: Path) -> None:
    if path.suffix.lower() not in (".html", ".eml"):
        raise InputError(f"--output: use a .html or .eml file name, not {path.name!r}")
    check_output_folder(path)


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Parallel SMTP connections of this worker.",
)
@click.option("--once", is_flag=True, help="Exit when nothing is owed instead of waiting.")
@click.option(
    "--poll", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Idle wait, seconds."
)
@pass_app
def worker(app: App, concurrency: int, once: bool, poll: float) -> None:
    """Send owed deliveries of every planned edition, alongside other workers.

    Start as many as the relay accepts, on one machine or many (with PostgreSQL): they
    share the rows and never send one twice. SIGTERM finishes the messages in flight,
    hands the rest back and exits.

    \b
    Examples:
      newsletter plan && newsletter worker --once
      newsletter worker --concurrency 8
    """
    from newsletter.runners.worker import Worker

    report = Worker(app, concurrency=concurrency, poll=poll).run(once=once)
    click.echo(f"worker stopped: sent {report.sent}, failed {report.failed} in {report.runs} runs")
    for day, reason in sorted(report.paused.items()):
        click.echo(
            f"the {day} edition is paused: {reason}; `newsletter resume --date {day}` lifts it",
            err=True,
        )


def register(group: click.Group) -> None:
    for command in (send, plan, resume, status, preview, worker):
        group.add_command(command)
