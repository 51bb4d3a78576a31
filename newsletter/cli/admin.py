"""Administrative commands: init, config, demo."""

from __future__ import annotations

import click

from newsletter import db
from newsletter.app import App
from newsletter.cli.common import echo_json, pass_app


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


def register(group: click.Group) -> None:
    group.add_command(init)
    group.add_command(show_config)
