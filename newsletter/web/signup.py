"""Signing up: the form, the page that says to check the inbox, and confirming a sign-up."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy.exc import OperationalError

from newsletter.audience import signup as service
from newsletter.audience.signup import ConsentRecord
from newsletter.core.models import ConsentEvent, Subscriber
from newsletter.web import forms
from newsletter.web.common import (
    current_core,
    current_mail_queue,
    current_settings,
    link_token,
    read_confirm_claim,
)

log = logging.getLogger(__name__)
bp = Blueprint("signup", __name__)
# A sign-up that meets a locked or unreachable database is answered at once, and kept in
# the page: the visitor sends it again.
BUSY_RETRY_SECONDS = 30
BUSY_MESSAGE = (
    "We could not take your sign-up just now. Nothing was lost: your choices are below. "
    "Please press Subscribe again in a minute."
)


def _subscribe_page(
    topics: Any,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    notice: str = "",
) -> Any:
    page = render_template(
        "web/subscribe.html",
        topics=topics,
        values=values,
        errors=errors,
        notice=notice,
        detect_timezone=not errors and not notice,
        consent_text=service.consent_text(current_settings()),
    )
    return page, status


@bp.get("/")
def subscribe_form() -> Any:
    with current_core().reading() as session:
        topics = service.active_topics(session=session)
    return _subscribe_page(topics, forms.subscribe_values(current_settings()), {})


@bp.post("/")
def subscribe_submit() -> Any:
    if forms.is_bot(request.form):
        return redirect(url_for(".check_inbox"), 303)
    try:
        return _queue_signup()
    except OperationalError as exc:  # a lock held too long, a database gone: never a 500
        log.error("a sign-up could not be stored: %s", str(exc).splitlines()[0])
        return _busy_signup_page()


def _queue_signup() -> Any:
    settings = current_settings()
    with current_core().transaction() as session:
        topics = service.active_topics(session=session)
        result = forms.parse_subscribe(request.form, {t.slug: t.id for t in topics}, settings)
        if not result.ok or result.prefs is None:
            return _subscribe_page(topics, result.values, result.errors, 400)
        consent = ConsentRecord(
            ip=request.remote_addr or "",
            user_agent=request.user_agent.string,
            text=service.consent_text(settings),
        )
        # Only queued here: the same work for every address, and no lock held while the
        # relay answers. The mail queue decides and sends after the commit.
        service.request_signup(
            result.email, result.prefs, consent, session=session, settings=settings
        )
    current_mail_queue().wake()
    return redirect(url_for(".check_inbox"), 303)


def _busy_signup_page() -> Any:
    """Return the form as it was sent, with a message, as 503 with Retry-After."""
    settings = current_settings()
    with current_core().reading() as session:  # readers do not wait for a writer's lock
        topics = service.active_topics(session=session)
    values = forms.parse_subscribe(request.form, {t.slug: t.id for t in topics}, settings).values
    page, status = _subscribe_page(topics, values, {}, 503, notice=BUSY_MESSAGE)
    return page, status, {"Retry-After": str(BUSY_RETRY_SECONDS)}


@bp.get("/subscribed")
def check_inbox() -> Any:
    return render_template("web/check_inbox.html")


def _confirm_form(
    token: str,
    subscriber: Subscriber,
    values: dict[str, Any],
    session: Any,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    rules = {f: getattr(subscriber, f) for f in forms.RULE_FIELDS if getattr(subscriber, f)}
    page = render_template(
        "web/confirm.html",
        token=token,
        email=subscriber.email,
        topics=service.active_topics(session=session),
        values=values,
        errors=errors or {},
        rules={forms.RULE_LABELS[f]: words for f, words in rules.items()},
    )
    return page, status


def _signup_values(signup: ConsentEvent, session: Any) -> dict[str, Any]:
    slugs = {t.id: t.slug for t in service.active_topics(session=session)}
    return forms.signup_values(service.signup_prefs(signup), slugs)


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Any:
    # Never confirms: mail filters fetch every link in an email, some running its scripts.
    # Only a person pressing the page's button sends the POST that confirms.
    claim, signup_id = read_confirm_claim(token)
    with current_core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        signup = service.signup_to_confirm(subscriber, signup_id, session=session)
        if signup is None:
            return render_template("web/already_confirmed.html")
        return _confirm_form(token, subscriber, _signup_values(signup, session), session)


@bp.post("/confirm/<token>")
def confirm(token: str) -> Any:
    claim, signup_id = read_confirm_claim(token)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        signup = service.signup_to_confirm(subscriber, signup_id, session=session)
        if signup is None:  # confirmed already: the link has nothing left to give
            return render_template("web/already_confirmed.html")
        slugs = {t.slug: t.id for t in service.active_topics(session=session)}
        result = forms.parse_confirm(request.form, slugs, _signup_values(signup, session))
        if not result.ok or result.prefs is None:
            return _confirm_form(token, subscriber, result.values, session, result.errors, 400)
        subscriber = service.confirm(
            subscriber.id, session=session, signup_id=signup_id, prefs=result.prefs
        )
        manage_token = link_token("manage", subscriber)
    return redirect(url_for("preferences.manage_page", token=manage_token, done="confirmed"), 303)


