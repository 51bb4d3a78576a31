"""The public web pages: subscribe, confirm, preferences, unsubscribe and the archive.

One blueprint per feature, as flaskr has: `signup`, `preferences`, `feedback`, `first_round`
and `archive`; `errors` answers every error, `common` holds what the pages share. Each route
parses the request, calls a service function and renders a template.

Serve it with a WSGI server (`newsletter serve` runs waitress), e.g.
`waitress-serve --call 'newsletter.web:create_app_from_env'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import jinja2
from flask import Flask, redirect, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from newsletter.content import templating
from newsletter.core.app import App
from newsletter.core.config import Settings, load_settings
from newsletter.core.latex import readable
from newsletter.delivery.mail_queue import MailQueue
from newsletter.web import archive, errors, feedback, first_round, preferences, security, signup
from newsletter.web.common import template_context
from newsletter.web.proxies import TrustedProxies

STATIC_MAX_AGE = 3600


class NewsletterFlask(Flask):
    """Flask, with error logs that never carry the tokens of a request's path."""

    def log_exception(self, exc_info: Any) -> None:
        path = security.redact(request.path)
        self.logger.error("Exception on %s [%s]", path, request.method, exc_info=exc_info)

    def handle_http_exception(self, e: HTTPException) -> Any:
        # Flask answers routing redirects (a doubled slash, a missing one) with a URL
        # built from the request's Host header: rebuild it from base_url instead.
        if isinstance(e, RequestRedirect):
            settings = self.config["NEWSLETTER_SETTINGS"]
            return redirect(security.same_site_url(settings.base_url, e.new_url), e.code)
        return super().handle_http_exception(e)


def create_app(settings: Settings, *, app: App | None = None) -> Flask:
    """Build the Flask app for one instance; `app` shares an existing App (tests, CLI).

    The app reads a proxy's X-Forwarded-* itself (see web.proxies), whatever WSGI server
    runs it: the server must not read them too.
    """
    if not settings.secret_key:
        raise ValueError("settings.secret_key is empty: links and forms cannot be signed")
    web = NewsletterFlask(__name__, static_folder="static", static_url_path="/static")
    web.config.update(
        NEWSLETTER_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SEND_FILE_MAX_AGE_DEFAULT=STATIC_MAX_AGE,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_PARTS=200,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    core = app or App(settings)
    web.extensions["newsletter"] = core
    web.extensions["newsletter_mail_queue"] = MailQueue(core)
    web.jinja_options = {
        "loader": templating.template_loader(settings),
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    web.jinja_env.filters.update(
        long_date=templating.long_date,
        authors_short=templating.authors_short,
        trim_abstract=templating.shorten,
        safe_url=templating.safe_url,
        atom_date=atom_date,
        readable=readable_text,
    )
    security.init_security(web)
    # One blueprint per feature, as flaskr has: each a module of its own.
    for blueprint in (signup.bp, preferences.bp, feedback.bp, first_round.bp, archive.bp):
        web.register_blueprint(blueprint)
    errors.init_errors(web)
    web.context_processor(template_context)
    # Behind a reverse proxy the client's address is in X-Forwarded-For; without one,
    # whatever a client writes there is dropped.
    web.wsgi_app = TrustedProxies(  # type: ignore[method-assign]  # as Flask documents
        web.wsgi_app,
        settings.web_proxy_count,
        settings.web_trusted_proxies if settings.web_proxy_count else (),
    )
    return web


def atom_date(value: datetime | None) -> str:
    """Format a timestamp for Atom (RFC 3339, UTC); None is the Unix epoch."""
    moment = value or datetime(1970, 1, 1, tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readable_text(value: str | Sequence[str] | None) -> str | list[str] | None:
    """Show a paper's text (or each of its authors) without LaTeX: papers keep it as given."""
    if value is None or isinstance(value, str):
        return value and readable(value)
    return [readable(item) for item in value]


def create_app_from_env() -> Flask:
    """Build the app from newsletter.toml and NEWSLETTER_* variables (for WSGI servers)."""
    settings = load_settings()
    core = App(settings)
    core.ensure_schema()
    web = create_app(settings, app=core)
    web.extensions["newsletter_mail_queue"].start()
    return web
