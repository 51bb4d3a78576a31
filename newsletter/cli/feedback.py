"""`newsletter feedback`: what readers said about the papers they received."""

from __future__ import annotations

import sys

import click

from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App
from newsletter.matching import service
from newsletter.matching.stored_profiles import ProfileCounts


@click.group()
def feedback() -> None:
    """Readers' "more like this" and "less like this" votes."""


@feedback.command("list")
@click.option("--email", metavar="ADDRESS", help="Only this reader's votes.")
@click.option("--json", "as_json", is_flag=True, help="Print the votes as JSON.")
@pass_app
def list_(app: App, email: str | None, as_json: bool) -> None:
    """List readers' votes, newest first.

    \b
    Examples:
      newsletter feedback list
      newsletter feedback list --email ada@example.org --json
    """
    votes = service.votes(app, email=email)
    if as_json:
        echo_json(votes)
        return
    if not votes:
        click.echo("no votes yet" if email is None else f"no votes from {email}")
        return
    for vote in votes:
        mark = "+" if vote["vote"] == "more" else "-"
        click.echo(f"{vote['at'][:16]}  {mark}  {vote['email']}  {vote['paper']}")


@feedback.command("profiles")
@click.option(
    "--rebuild", is_flag=True,
    help="Write the missing profiles and those of another model from the votes and own papers.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_app
def profiles(app: App, rebuild: bool, as_json: bool) -> None:
    """Show how readers' stored profiles stand, or rebuild the missing and outdated ones.

    A reader's profile (the meaning of what they liked, disliked and gave as their own) is
    written whenever they vote or set their own papers; after an upgrade, a restore or a new
    sentence model, --rebuild writes the ones missing or of another model.

    \b
    Examples:
      newsletter feedback profiles
      newsletter feedback profiles --rebuild --json
    """
    if rebuild:
        counts = _rebuild(app, bar=not as_json)
    else:
        counts = service.profile_counts(app)
    if as_json:
        echo_json(counts.to_dict())
        return
    click.echo(
        f"{counts.readers} readers with votes or own papers: {counts.current} profiles of "
        f"{counts.model}, {counts.missing} missing, {counts.other_model} of another model"
    )
    if rebuild:
        click.echo(f"rebuilt {counts.rebuilt}")
    elif counts.missing or counts.other_model:
        click.echo("`newsletter feedback profiles --rebuild` writes them", err=True)


def _rebuild(app: App, *, bar: bool) -> ProfileCounts:
    """Rebuild the stale profiles, drawing a progress bar on stderr unless printing JSON."""
    if not bar:
        return service.rebuild_profiles(app)
    progress = click.progressbar(length=0, label="rebuilding profiles", file=sys.stderr)

    def start(total: int) -> None:
        progress.length = total

    with progress:
        return service.rebuild_profiles(app, on_start=start, on_each=progress.update)


def register(group: click.Group) -> None:
    group.add_command(feedback)
