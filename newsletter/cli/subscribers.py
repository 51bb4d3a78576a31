"""`newsletter subscribers` commands."""

from __future__ import annotations

import click


@click.group()
def subscribers() -> None:
    """Manage subscribers."""


def register(group: click.Group) -> None:
    group.add_command(subscribers)
