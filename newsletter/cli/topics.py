"""`newsletter topics` commands."""

from __future__ import annotations

import click


@click.group()
def topics() -> None:
    """Manage topics."""


def register(group: click.Group) -> None:
    group.add_command(topics)
