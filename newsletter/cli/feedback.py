"""`newsletter feedback`: what readers said about the papers they received."""

from __future__ import annotations

import click

from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App
from newsletter.matching import service


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


def register(group: click.Group) -> None:
    group.add_command(feedback)
