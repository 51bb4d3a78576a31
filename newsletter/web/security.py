"""CSRF tokens, security headers and log redaction for the web pages.

CSRF uses a signed double-submit cookie: the browser holds a random value in an HttpOnly
cookie, each form carries that value signed with the secret key (and a time stamp), and a
POST passes only when both are present and agree. Another site can neither read the cookie
nor sign a value for it.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, abort, current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from newsletter.core.tokens import form_signer

CSRF_FIELD = "csrf_token"
CSRF_MAX_AGE = 24 * 3600
COOKIE = "nl_csrf"
# The __Host- prefix makes browsers refuse the cookie unless Secure, Path=/ and host-only.
SECURE_COOKIE = "__Host-nl_csrf"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Pages carry tokens in their URLs: never let them leak to another site.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"
_TOKEN_PATH = re.compile(r"/(confirm|manage|unsubscribe|resubscribe|feedback|start)/[^\s/?\"]+")
CSRF_EXEMPT = "csrf_exempt"
UPLOAD_LIMIT = "upload_limit"


def same_site_url(base_url: str, url: str) -> str:
    """Return `url`'s path and query under base_url, whatever host it named."""
    target, base = urlsplit(url), urlsplit(base_url)
    path = base.path.rstrip("/") + target.path
    return urlunsplit((base.scheme, base.netloc, path, target.query, ""))


def redact(text: str) -> str:
    """Replace the tokens in any link paths within the text by "…"."""
    return _TOKEN_PATH.sub(r"/\1/…", text)


class RedactTokens(logging.Filter):
    """A log filter that removes link tokens from messages (access and error logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        return True


def install_log_redaction(*loggers: logging.Logger | str) -> None:
    """Add the redaction filter to the loggers that may see request paths."""
    for logger in loggers:
        target = logging.getLogger(logger) if isinstance(logger, str) else logger
        if not any(isinstance(f, RedactTokens) for f in target.filters):
            target.addFilter(RedactTokens())


def csrf_exempt(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view whose POST needs no CSRF token (the RFC 8058 one-click unsubscribe)."""
    setattr(view, CSRF_EXEMPT, True)
    return view


def upload_limit(max_bytes: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let a view's requests be this large instead of MAX_CONTENT_LENGTH (a file upload)."""

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, UPLOAD_LIMIT, max_bytes)
        return view

    return mark


def apply_upload_limit() -> None:
    """Raise this request's size limit to its view's upload limit, before anything reads it."""
    view = current_app.view_functions.get(request.endpoint or "")
    limit = getattr(view, UPLOAD_LIMIT, None)
    if limit is not None:
        request.max_content_length = limit


def _secure(app: Flask) -> bool:
    return app.config["NEWSLETTER_SETTINGS"].base_url.startswith("https://")


def _cookie_name(app: Flask) -> str:
    return SECURE_COOKIE if _secure(app) else COOKIE


def _signer(app: Flask) -> TimestampSigner:
    return form_signer(app.config["NEWSLETTER_SETTINGS"], "csrf")


def csrf_token() -> str:
    """Return a token for the current visitor's forms, setting their cookie if needed."""
    value = g.get("csrf_value")
    if value is None:
        cookie = request.cookies.get(_cookie_name(current_app), "")
        value = cookie if _COOKIE_VALUE.fullmatch(cookie) else secrets.token_urlsafe(32)
        g.csrf_value = value
        g.csrf_new = value != cookie
    return _signer(current_app).sign(value).decode("ascii")


def check_csrf() -> None:
    """Refuse a POST whose form token does not match the visitor's cookie."""
    if request.method != "POST":
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, CSRF_EXEMPT, False):
        return
    cookie = request.cookies.get(_cookie_name(current_app), "")
    token = request.form.get(CSRF_FIELD, "")
    try:
        signed = _signer(current_app).unsign(token, max_age=CSRF_MAX_AGE).decode()
    except SignatureExpired:
        abort(400, "This form has expired. Please reload the page and try again.")
    except BadSignature:
        signed = None
    if not cookie or not signed or not secrets.compare_digest(signed, cookie):
        abort(
            400,
            "This form could not be verified. Please reload the page and try again "
            "(cookies must be enabled for this site).",
        )


def add_headers(response: Response) -> Response:
    """Add the security headers, the CSRF cookie and a default no-store cache policy."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if _secure(current_app):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    response.headers.setdefault("Cache-Control", "no-store")
    if g.get("csrf_new"):
        response.set_cookie(
            _cookie_name(current_app),
            g.csrf_value,
            max_age=CSRF_MAX_AGE,
            httponly=True,
            secure=_secure(current_app),
            samesite="Lax",
            path="/",
        )
    return response


def init_security(app: Flask) -> None:
    """Wire CSRF checks, headers and log redaction into the app."""
    app.before_request(apply_upload_limit)  # first: the CSRF check reads the form
    app.before_request(check_csrf)
    app.after_request(add_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
    install_log_redaction(app.logger, "werkzeug", "waitress")
