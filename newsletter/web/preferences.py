"""A reader's own pages: preferences, their papers, their data, unsubscribing and undoing it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from newsletter.audience import signup as service
from newsletter.audience.limits import Limits
from newsletter.core.errors import InputError, NotFound, quoted
from newsletter.core.models import Subscriber
from newsletter.core.tokens import LinkClaim
from newsletter.matching.seeds import MAX_SEEDS, clear_seeds, replace_seeds
from newsletter.papers import seeds as own_papers
from newsletter.papers.sources.library import MAX_BYTES
from newsletter.web import forms
from newsletter.web.common import (
    as_sentence,
    current_core,
    current_settings,
    link_token,
    plain_number,
    read_claim,
)
from newsletter.web.security import csrf_exempt, upload_limit

bp = Blueprint("preferences", __name__)
ONE_CLICK = ("List-Unsubscribe", "One-Click")
BANNERS = {
    "saved": "Your preferences are saved.",
    "resumed": "Welcome back: your subscription is active again.",
    "confirmed": "Your subscription is confirmed. Your first digest arrives at the time you chose.",
    "papers": "Your papers are saved: your next digests bring papers like them, never them.",
    "papers-cleared": "Your papers are forgotten.",
}
# An upload's request: the file and the form around it. Larger ones are refused unread (413).
UPLOAD_REQUEST_MAX = 2 * MAX_BYTES
LEFT_OUT_SHOWN = 999


def _manage_page(
    subscriber: Subscriber,
    session: Any,
    *,
    banner: str | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    page = render_template(
        "web/manage.html",
        subscriber=subscriber,
        topics=service.active_topics(session=session),
        values=values or forms.subscriber_values(subscriber),
        errors=errors or {},
        banner=BANNERS.get(banner or ""),
        # Just confirmed: the first round of ratings is offered once, here.
        start_token=link_token("start", subscriber) if banner == "confirmed" else None,
        manage_token=link_token("manage", subscriber),
        unsubscribe_token=link_token("unsubscribe", subscriber),
        can_resume=_can_resume(subscriber),
        weekdays=forms.WEEKDAYS,
        seeds=subscriber.seeds,
        max_seeds=MAX_SEEDS,
        max_upload_kb=MAX_BYTES // 1024,
        left_out=_left_out(),
    )
    return page, status


def _left_out() -> int:
    """Return how many entries of the last upload were left out (shown with its banner)."""
    return min(plain_number(request.args.get("left", "")) or 0, LEFT_OUT_SHOWN)


@bp.get("/manage/<token>")
def manage_page(token: str) -> Any:
    claim = read_claim("manage", token)
    with current_core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        return _manage_page(subscriber, session, banner=request.args.get("done"))


@bp.post("/manage/<token>")
def manage(token: str) -> Any:
    claim = read_claim("manage", token)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        slugs = {t.slug: t.id for t in service.active_topics(session=session)}
        result = forms.parse_preferences(request.form, slugs)
        if not result.ok or result.prefs is None:
            values = {**forms.subscriber_values(subscriber), **result.values}
            return _manage_page(
                subscriber, session, values=values, errors=result.errors, status=400
            )
        service.update_preferences(subscriber.id, result.prefs, session=session)
    return redirect(url_for(".manage_page", token=token, done="saved"), 303)


@bp.post("/manage/<token>/papers")
@upload_limit(UPLOAD_REQUEST_MAX)
def upload_papers(token: str) -> Any:
    """Make the papers of an uploaded library file the reader's own."""
    claim = read_claim("manage", token)
    upload = request.files.get("library")
    with current_core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        if upload is None or not upload.filename:
            errors = {"library": "Choose a BibTeX, RIS or CSL-JSON file of your papers."}
            return _manage_page(subscriber, session, errors=errors, status=400)
        data = upload.stream.read(MAX_BYTES + 1)  # more is refused, and never read whole
        name = quoted(upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1], 60)
        try:
            # arXiv's look-up is outside the write transaction: it may take seconds.
            with own_papers.arxiv_lookup(current_settings()) as lookup:
                choice = own_papers.seeds_from_library(
                    data, name, session=session, lookup=lookup,
                    meaning=current_settings().match_neighbours,
                )  # fmt: skip
        except InputError as exc:
            errors = {"library": as_sentence(str(exc))}
            return _manage_page(subscriber, session, errors=errors, status=400)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        replace_seeds(subscriber.id, choice.seeds, session=session)
    left: dict[str, Any] = {"left": len(choice.left_out)} if choice.left_out else {}
    return redirect(url_for(".manage_page", token=token, done="papers", **left), 303)


@bp.post("/manage/<token>/papers/clear")
def clear_papers(token: str) -> Any:
    """Forget the reader's own papers."""
    claim = read_claim("manage", token)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        clear_seeds(subscriber.id, session=session)
    return redirect(url_for(".manage_page", token=token, done="papers-cleared"), 303)


@bp.post("/manage/<token>/export")
def export(token: str) -> Response:
    claim = read_claim("manage", token)
    with current_core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        data = service.export_my_data(subscriber.id, session=session)
    body = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-newsletter-data.json"'
    return response


@bp.post("/manage/<token>/delete")
def delete(token: str) -> Any:
    claim = read_claim("manage", token)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        if request.form.get("confirm_delete") != "yes":
            errors = {"confirm_delete": "Tick the box to confirm that everything should go."}
            return _manage_page(subscriber, session, errors=errors, status=400)
        service.delete_my_data(subscriber.id, session=session)
    return render_template("web/deleted.html")


def _resume_window() -> timedelta:
    return timedelta(hours=Limits.from_settings(current_settings()).resubscribe_window_hours)


def _can_resume(subscriber: Subscriber | None) -> bool:
    return subscriber is not None and service.can_resume(subscriber, window=_resume_window())


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Any:
    # Never unsubscribes: link scanners and previews fetch every GET in an email.
    claim = read_claim("unsubscribe", token)
    with current_core().reading() as session:
        subscriber = _linked_or_none(claim, session)
    return render_template(
        "web/unsubscribe.html",
        subscriber=subscriber,
        token=token,
        can_resume=_can_resume(subscriber),
    )


def _linked_or_none(claim: LinkClaim, session: Any) -> Subscriber | None:
    try:
        return service.check_link(claim, session=session)
    except NotFound:
        return None


@bp.post("/unsubscribe/<token>")
@csrf_exempt
def unsubscribe(token: str) -> Any:
    # RFC 8058: a POST from the mail client, without cookies or a CSRF token; the signed
    # token is the authority. Answer 200 with the page, never a redirect.
    claim = read_claim("unsubscribe", token)
    if request.form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        abort(400, "Expected the form field List-Unsubscribe=One-Click.")
    with current_core().transaction() as session:
        # A link of a deleted subscription has no one left to unsubscribe: same answer.
        subscriber = _linked_or_none(claim, session)
        if subscriber is not None:
            service.unsubscribe(subscriber.id, session=session)
        can_resume = _can_resume(subscriber)
    return render_template("web/unsubscribed.html", token=token, can_resume=can_resume)


@bp.post("/resubscribe/<token>")
def resubscribe(token: str) -> Any:
    # The unsubscribe link can undo itself, nothing more: preferences need the manage link.
    claim = read_claim("unsubscribe", token)
    with current_core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        service.resubscribe(subscriber.id, session=session, window=_resume_window())
    return render_template("web/resumed.html")


