"""Transactional emails to one person: the sign-up confirmation and the preferences link.

Built like the digests (content.mime and content.headers), so a name or address can never
add a header field or a line, whatever it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.content.mime import build_transactional, make_message_id
from newsletter.content.templating import make_jinja_env
from newsletter.core import identity, tokens
from newsletter.core.config import Settings
from newsletter.core.models import utcnow

KINDS = ("confirm", "manage")


@dataclass(frozen=True)
class Notice:
    """A transactional email to send: "confirm" or "manage"."""

    kind: str
    subscriber_id: int
    email: str
    name: str  # only ever a confirmed subscriber's: a sign-up's name is anyone's text
    link_key: str = "none"
    signup_id: int = 0  # the consent event a "confirm" email's link confirms


def build_notice(settings: Settings, notice: Notice, *, now: datetime | None = None) -> bytes:
    """Build the confirmation or "manage your preferences" email as CRLF bytes."""
    if notice.kind not in KINDS:
        raise ValueError(f"unknown notice kind: {notice.kind!r}")
    context = {
        "list_name": identity.list_name(settings),
        "name": notice.name,
        "email": notice.email,
        "confirm_url": tokens.confirm_url(
            settings, notice.subscriber_id, notice.link_key, notice.signup_id
        ),
        "manage_url": tokens.manage_url(settings, notice.subscriber_id, notice.link_key),
        "confirm_hours": settings.confirm_max_age_hours,
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
    }
    html = make_jinja_env(settings, "html")
    text = make_jinja_env(settings, "text")
    return build_transactional(
        settings=settings,
        to_name=notice.name,
        to_email=notice.email,
        subject=text.get_template(f"email/{notice.kind}.subject.txt").render(context),
        text=text.get_template(f"email/{notice.kind}.txt").render(context),
        html=html.get_template(f"email/{notice.kind}.html").render(context),
        message_id=make_message_id(settings),
        date=now or utcnow(),
    )
