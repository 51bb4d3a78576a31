"""`newsletter papers` commands."""

from __future__ import annotations

import click


@click.group()
def papers() -> None:
    """Manage papers."""


def register(group: click.Group) -> None:
    group.add_command(papers)
