"""The error pages: HTTP errors, bad input and an unreachable relay, one line each."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from newsletter.audience.limits import RateLimited
from newsletter.core import tokens
from newsletter.core.errors import InputError, NotFound, TransportError
from newsletter.papers.sources.library import MAX_BYTES
from newsletter.web.common import as_sentence, error_page

log = logging.getLogger(__name__)


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    messages = {
        404: "There is no page at this address.",
        405: "This page does not accept that kind of request.",
        413: "The form sent too much data.",
        500: "Something went wrong on our side. Please try again later.",
    }
    if code == 413 and request.endpoint == "preferences.upload_papers":
        messages[413] = f"The file is larger than {MAX_BYTES // 1024} KB: export fewer papers."
    default = messages.get(code, exc.description or "")
    message = default if code in messages and not _custom(exc) else exc.description or default
    return error_page(code, exc.name, message)


def _custom(exc: HTTPException) -> bool:
    return type(exc).description != exc.description


def _input_error(exc: InputError) -> Any:
    if isinstance(exc, RateLimited):
        page, status = error_page(429, "Too many requests", as_sentence(str(exc)))
        return page, status, {"Retry-After": "3600"}
    if isinstance(exc, NotFound):
        return error_page(404, "Link no longer valid", as_sentence(str(exc)))
    message = str(exc)
    if message == tokens.INVALID_LINK:
        message = (
            "This link is invalid or has expired. Links must be opened exactly as they "
            "arrived in the email."
        )
    return error_page(400, "Bad request", as_sentence(message))


def _transport_error(exc: TransportError) -> Any:
    log.error("could not send a transactional email: %s", exc)
    message = "We could not send the email just now. Please try again in a few minutes."
    return error_page(503, "Email unavailable", message)



def init_errors(app: Flask) -> None:
    """Answer every error with the error page."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(TransportError, _transport_error)
