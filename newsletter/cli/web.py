"""`newsletter serve` and `newsletter subscribers purge-pending`."""

from __future__ import annotations

from datetime import timedelta

import click

from newsletter.audience import signup as service
from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App

DEFAULT_THREADS = 8


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Requests served at once.",
)
@click.option(
    "--debug", is_flag=True, help="Flask's development server and debugger: never in production."
)
@pass_app
def serve(app: App, host: str, port: int, threads: int, debug: bool) -> None:
    """Serve the subscribe, preferences, unsubscribe and archive pages.

    Runs waitress, a production WSGI server; put a TLS reverse proxy in front and
    set base_url to the public address (and web_proxy_count = 1 behind one proxy, on
    an address in web_trusted_proxies).

    \b
    Example:
      newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web import create_app

    app.ensure_schema()
    web = create_app(app.settings, app=app)
    # Sign-ups and their emails wait in the database; send what an earlier run left.
    web.extensions["newsletter_mail_queue"].start()
    click.echo(f"Serving {app.settings.base_url} on http://{host}:{port}", err=True)
    if debug:
        web.run(host=host, port=port, debug=True, use_reloader=False)
        return
    import waitress

    # waitress trusts one proxy address or all: the app reads X-Forwarded-* itself, from
    # the peers of web_trusted_proxies only, so waitress must leave the headers to it.
    waitress.serve(
        web,
        host=host,
        port=port,
        threads=threads,
        ident="newsletter",
        clear_untrusted_proxy_headers=False,
    )


@click.command("purge-pending")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Age of unconfirmed sign-ups to delete [default: setting pending_max_age_days, 7].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the count as JSON.")
@pass_app
def purge_pending(app: App, days: int | None, as_json: bool) -> None:
    """Delete sign-ups never confirmed within DAYS days, and stale rate-limit counters.

    \b
    Example (daily, from cron or a timer):
      newsletter subscribers purge-pending --older-than 7
    """
    if days is None:
        days = service.Limits.from_settings(app.settings).pending_max_age_days
    with app.transaction() as session:
        deleted = service.purge_pending(session=session, older_than=timedelta(days=days))
    if as_json:
        echo_json({"deleted": deleted, "older_than_days": days})
    else:
        click.echo(f"Deleted {deleted} unconfirmed subscriber(s) older than {days} day(s).")


def register(group: click.Group) -> None:
    """Add `serve`, and `purge-pending` under the subscribers group when it exists."""
    group.add_command(serve)
    subscribers = group.commands.get("subscribers")
    if isinstance(subscribers, click.Group):
        subscribers.add_command(purge_pending)
    else:
        group.add_command(purge_pending)
