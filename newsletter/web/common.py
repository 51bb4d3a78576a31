"""What every page of the web app shares: the instance, its settings, link tokens, errors."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

from flask import current_app, render_template

from newsletter.audience.limits import Limits
from newsletter.core import identity, tokens
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import Subscriber
from newsletter.core.tokens import LinkClaim
from newsletter.delivery.mail_queue import MailQueue
from newsletter.papers.sources import registry
from newsletter.web import forms

ID_DIGITS = 18  # a row id's digits at most, as the link tokens write them


def current_core() -> App:
    """Return the instance the app serves (its database and settings)."""
    return current_app.extensions["newsletter"]


def current_settings() -> Settings:
    return current_app.config["NEWSLETTER_SETTINGS"]


def current_mail_queue() -> MailQueue:
    return current_app.extensions["newsletter_mail_queue"]


def read_claim(purpose: str, token: str) -> LinkClaim:
    """Return what a link token of that purpose says (InputError when it is not one)."""
    return tokens.read_token(current_settings(), purpose, token)


def read_confirm_claim(token: str) -> tuple[LinkClaim, int]:
    """Return the reader and the sign-up a confirmation link names, while it is valid."""
    max_age = Limits.from_settings(current_settings()).confirm_max_age_hours * 3600
    return tokens.read_confirm_token(current_settings(), token, max_age)


def plain_number(text: str, digits: int = ID_DIGITS) -> int | None:
    """Return the whole number a form or query field writes in ASCII digits, else None."""
    # The length is checked before int(): Python refuses strings of over 4,300 digits.
    if not (text.isascii() and text.isdigit() and len(text) <= digits):
        return None
    return int(text)


def link_token(purpose: str, subscriber: Subscriber) -> str:
    return tokens.make_token(current_settings(), purpose, subscriber.id, subscriber.link_key)


@cache
def time_zones() -> tuple[str, ...]:
    """Return the IANA time zone names a reader may pick, sorted."""
    return tuple(sorted(z for z in available_timezones() if not z.startswith(("posix/", "right/"))))


def error_page(status: int, title: str, message: str) -> Any:
    return render_template("web/error.html", status=status, title=title, message=message), status


def as_sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."


def template_context() -> dict[str, Any]:
    """Return what every template may use: the list's name, its wording, the form's limits."""
    settings = current_settings()
    return {
        "list_name": identity.list_name(settings),
        "list_tagline": settings.list_tagline,
        "ranked_by_upvotes": registry.ranks_by_upvotes(settings),
        "postal_address": settings.postal_address,
        "time_zones": time_zones(),
        "max_interests": forms.MAX_INTERESTS_LENGTH,
    }
