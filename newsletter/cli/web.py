"""`newsletter serve`, and `purge-pending` and `send-mail` under `newsletter subscribers`."""

from __future__ import annotations

import click

from newsletter.audience import service as audience
from newsletter.cli.common import echo_json, pass_app
from newsletter.core.app import App
from newsletter.core.errors import TransportError
from newsletter.core.wording import plural
from newsletter.delivery import mail_queue

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
    deleted, days = audience.purge_pending(app, days)
    if as_json:
        echo_json({"deleted": deleted, "older_than_days": days})
    else:
        click.echo(
            f"Deleted {plural(deleted, 'unconfirmed subscriber')} older than {plural(days, 'day')}."
        )


@click.command("send-mail")
@click.option("--json", "as_json", is_flag=True, help="Print what was sent as JSON.")
@pass_app
def send_mail(app: App, as_json: bool) -> None:
    """Send the sign-up emails that wait for a retry now, and again those given up.

    The web process retries a confirmation or preferences email while the relay is down
    (see `newsletter status`); once its link would have expired it gives up. After an
    outage, this tries every such email once more. Exit 1 when one could still not be
    sent.

    \b
    Examples:
      newsletter status                          # warns about waiting or given-up emails
      newsletter subscribers send-mail
      newsletter subscribers send-mail --json
    """
    drained = mail_queue.send_waiting(app)
    left = mail_queue.queue_status(app)
    if as_json:
        echo_json({"sent": drained.sent, "not_needed": drained.unsent,
                   "waiting": left["waiting"], "failed": left["failed"],
                   "last_error": drained.last_error})  # fmt: skip
    else:
        click.echo(
            f"sent {plural(drained.sent, 'email')}, {drained.unsent} no longer needed; "
            f"{left['waiting']} waiting, {left['failed']} given up"
        )
    if drained.retrying or drained.failed:
        raise TransportError(
            f"{plural(drained.retrying + drained.failed, 'email')} not sent: {drained.last_error}"
        )


def register(group: click.Group) -> None:
    """Add `serve`; `purge-pending` and `send-mail` under the subscribers group if it exists."""
    group.add_command(serve)
    subscribers = group.commands.get("subscribers")
    target = subscribers if isinstance(subscribers, click.Group) else group
    target.add_command(purge_pending)
    target.add_command(send_mail)
