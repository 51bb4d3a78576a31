"""`newsletter subscribers invite`, and the confirmation emails of `add` and `import`."""

from __future__ import annotations

import sys
from typing import Any

import click

from newsletter.audience import invitations
from newsletter.audience import service as audience
from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App
from newsletter.core.errors import TransportError
from newsletter.delivery import mail_queue

SHOWN_SKIPPED = 20
# Fewer confirmation emails than this go out in a moment, even through a remote relay.
PROGRESS_MIN_EMAILS = 20


@click.command("invite")
@click.argument("emails", nargs=-1, metavar="[EMAIL]...")
@click.option("--all-pending", is_flag=True, help="Every pending subscriber who may be asked now.")
@click.option("--json", "as_json", is_flag=True, help="Print who was asked and who not as JSON.")
@pass_app
def invite(app: App, emails: tuple[str, ...], all_pending: bool, as_json: bool) -> None:
    """Send pending subscribers the sign-up confirmation email (double opt-in), or resend it.

    The email and its link are those of a sign-up on the web: the link confirms this
    request only, and an address gets at most one such email per mail_interval_minutes.
    Suppressed addresses are never asked. Named addresses are all asked or, when one
    cannot be (unknown, confirmed, suppressed, asked minutes ago), none; --all-pending
    asks everyone it may and lists the others. An email the relay refuses waits (exit 1)
    for the web process or for this to send it again:

    \b
      newsletter subscribers send-mail

    \b
    Examples:
      newsletter subscribers invite ada@example.org bo@example.org
      newsletter subscribers invite --all-pending --json
    """
    if bool(emails) == all_pending:
        raise click.UsageError("give the addresses to invite, or --all-pending (not both)")
    asked = audience.invite(app, None if all_pending else emails)
    drained = send_invitations(app, asked)
    if as_json:
        echo_json(invitation_data(asked, drained))
    elif not asked.invited and not asked.skipped:
        click.echo("no pending subscribers to invite")
    else:
        echo_invitations(asked, drained)
    fail_if_unsent(drained)


def send_invitations(app: App, asked: invitations.Invitations) -> mail_queue.Drained:
    """Send the queued confirmation emails, drawing a progress bar on stderr for many."""
    if not asked.queued:
        return mail_queue.Drained()
    if len(asked.queued) < PROGRESS_MIN_EMAILS:
        return mail_queue.send_queued(app, asked.queued)
    bar = click.progressbar(
        length=len(asked.queued), label="sending confirmations", file=sys.stderr
    )
    with bar:
        return mail_queue.send_queued(app, asked.queued, on_each=bar.update)


def invitation_data(asked: invitations.Invitations, drained: mail_queue.Drained) -> dict[str, Any]:
    """Return who was asked, who not and why, and what was sent, for --json."""
    unsent = drained.retrying + drained.failed
    return asked.to_dict() | {
        "sent": drained.sent,
        "unsent": unsent,
        "last_error": drained.last_error,
    }


def echo_invitations(asked: invitations.Invitations, drained: mail_queue.Drained) -> None:
    """Say what was sent on stdout, and who was not asked and why on stderr."""
    if len(asked.invited) == 1 and drained.sent == 1 and not asked.skipped:
        click.echo(f"sent a confirmation email to {asked.invited[0]}")
    else:
        unsent = drained.retrying + drained.failed
        sent = f"{drained.sent} of {len(asked.invited)}" if unsent else str(drained.sent)
        skipped = f"; {len(asked.skipped)} not invited" if asked.skipped else ""
        plural = "" if drained.sent == 1 and not unsent else "s"
        click.echo(f"sent {sent} confirmation email{plural}{skipped}")
    for email, reason in asked.skipped[:SHOWN_SKIPPED]:
        click.echo(f"not invited: {email} {reason}", err=True)
    hidden = len(asked.skipped) - SHOWN_SKIPPED
    if hidden > 0:
        click.echo(f"... and {hidden} more not invited (--json lists them)", err=True)


def fail_if_unsent(drained: mail_queue.Drained) -> None:
    """Raise TransportError (exit 1) when the relay refused some of the emails."""
    unsent = drained.retrying + drained.failed
    if unsent:
        raise TransportError(
            f"{unsent} confirmation email(s) not sent: {drained.last_error}; "
            "`newsletter subscribers send-mail` sends them again"
        )
