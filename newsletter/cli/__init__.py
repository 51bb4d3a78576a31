"""The `newsletter` command line: a thin layer over the service functions."""

from __future__ import annotations

import logging
import sys

import click

from newsletter.cli import (
    admin,
    bounces,
    feedback,
    papers,
    scheduler,
    sending,
    subscribers,
    topics,
    web,
)
from newsletter.cli.common import NewsletterGroup, pass_app  # noqa: F401 - re-exported


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Settings file (default: ./newsletter.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="daily-papers-newsletter")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, verbose: int) -> None:
    """Daily Papers Newsletter: new research papers by topic, by email.

    \b
    Start with the demo, then explore:
      newsletter demo
      newsletter papers list --date 2026-11-27
      newsletter subscribers list --json
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = NewsletterGroup.lazy_app(ctx, config_file)


for module in (admin, papers, topics, subscribers, sending, web, scheduler, bounces, feedback):
    module.register(cli)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="newsletter", standalone_mode=True))
