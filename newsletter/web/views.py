"""The routes: each parses the request, calls a service function and renders a template."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from newsletter.audience import signup as service
from newsletter.audience.limits import Limits, RateLimited, take_vote
from newsletter.audience.signup import ConsentRecord
from newsletter.core import identity, tokens
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NotFound, TransportError, quoted
from newsletter.core.models import ConsentEvent, Subscriber, SubscriberStatus
from newsletter.core.tokens import LinkClaim
from newsletter.delivery.mail_queue import MailQueue
from newsletter.matching import feedback
from newsletter.matching.seeds import MAX_SEEDS, clear_seeds, replace_seeds
from newsletter.papers import seeds as own_papers
from newsletter.papers.sources import registry
from newsletter.papers.sources.library import MAX_BYTES
from newsletter.web import archive, forms
from newsletter.web.security import csrf_exempt, upload_limit

log = logging.getLogger(__name__)
bp = Blueprint("web", __name__)
ONE_CLICK = ("List-Unsubscribe", "One-Click")
ARCHIVE_CACHE = "public, max-age=300"
# A sign-up that meets a locked or unreachable database is answered at once, and kept in
# the page: the visitor sends it again.
BUSY_RETRY_SECONDS = 30
BUSY_MESSAGE = (
    "We could not take your sign-up just now. Nothing was lost: your choices are below. "
    "Please press Subscribe again in a minute."
)
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


def _core() -> App:
    return current_app.extensions["newsletter"]


def _settings() -> Settings:
    return current_app.config["NEWSLETTER_SETTINGS"]


def _mail_queue() -> MailQueue:
    return current_app.extensions["newsletter_mail_queue"]


def _claim(purpose: str, token: str) -> LinkClaim:
    return tokens.read_token(_settings(), purpose, token)


def _confirm_claim(token: str) -> tuple[LinkClaim, int]:
    max_age = Limits.from_settings(_settings()).confirm_max_age_hours * 3600
    return tokens.read_confirm_token(_settings(), token, max_age)


def _token(purpose: str, subscriber: Subscriber) -> str:
    return tokens.make_token(_settings(), purpose, subscriber.id, subscriber.link_key)


@cache
def time_zones() -> tuple[str, ...]:
    """Return the IANA time zone names a reader may pick, sorted."""
    return tuple(sorted(z for z in available_timezones() if not z.startswith(("posix/", "right/"))))


# --- subscribe --------------------------------------------------------------------------


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
        consent_text=service.consent_text(_settings()),
    )
    return page, status


@bp.get("/")
def subscribe_form() -> Any:
    with _core().reading() as session:
        topics = service.active_topics(session=session)
    return _subscribe_page(topics, forms.subscribe_values(_settings()), {})


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
    settings = _settings()
    with _core().transaction() as session:
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
    _mail_queue().wake()
    return redirect(url_for(".check_inbox"), 303)


def _busy_signup_page() -> Any:
    """Return the form as it was sent, with a message, as 503 with Retry-After."""
    settings = _settings()
    with _core().reading() as session:  # readers do not wait for a writer's lock
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
    claim, signup_id = _confirm_claim(token)
    with _core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        signup = service.signup_to_confirm(subscriber, signup_id, session=session)
        if signup is None:
            return render_template("web/already_confirmed.html")
        return _confirm_form(token, subscriber, _signup_values(signup, session), session)


@bp.post("/confirm/<token>")
def confirm(token: str) -> Any:
    claim, signup_id = _confirm_claim(token)
    with _core().transaction() as session:
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
        manage_token = _token("manage", subscriber)
    return redirect(url_for(".manage_page", token=manage_token, done="confirmed"), 303)


# --- preferences ------------------------------------------------------------------------


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
        start_token=_token("start", subscriber) if banner == "confirmed" else None,
        manage_token=_token("manage", subscriber),
        unsubscribe_token=_token("unsubscribe", subscriber),
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
    value = request.args.get("left", "")
    return min(int(value), LEFT_OUT_SHOWN) if value.isascii() and value.isdigit() else 0


@bp.get("/manage/<token>")
def manage_page(token: str) -> Any:
    claim = _claim("manage", token)
    with _core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        return _manage_page(subscriber, session, banner=request.args.get("done"))


@bp.post("/manage/<token>")
def manage(token: str) -> Any:
    claim = _claim("manage", token)
    with _core().transaction() as session:
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
    claim = _claim("manage", token)
    upload = request.files.get("library")
    with _core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        if upload is None or not upload.filename:
            errors = {"library": "Choose a BibTeX, RIS or CSL-JSON file of your papers."}
            return _manage_page(subscriber, session, errors=errors, status=400)
        data = upload.stream.read(MAX_BYTES + 1)  # more is refused, and never read whole
        name = quoted(upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1], 60)
        try:
            # arXiv's look-up is outside the write transaction: it may take seconds.
            with own_papers.arxiv_lookup(_settings()) as lookup:
                choice = own_papers.seeds_from_library(
                    data, name, session=session, lookup=lookup,
                    meaning=_settings().match_neighbours,
                )  # fmt: skip
        except InputError as exc:
            errors = {"library": _sentence(str(exc))}
            return _manage_page(subscriber, session, errors=errors, status=400)
    with _core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        replace_seeds(subscriber.id, choice.seeds, session=session)
    left: dict[str, Any] = {"left": len(choice.left_out)} if choice.left_out else {}
    return redirect(url_for(".manage_page", token=token, done="papers", **left), 303)


@bp.post("/manage/<token>/papers/clear")
def clear_papers(token: str) -> Any:
    """Forget the reader's own papers."""
    claim = _claim("manage", token)
    with _core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        clear_seeds(subscriber.id, session=session)
    return redirect(url_for(".manage_page", token=token, done="papers-cleared"), 303)


@bp.post("/manage/<token>/export")
def export(token: str) -> Response:
    claim = _claim("manage", token)
    with _core().reading() as session:
        subscriber = service.check_link(claim, session=session)
        data = service.export_my_data(subscriber.id, session=session)
    body = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-newsletter-data.json"'
    return response


@bp.post("/manage/<token>/delete")
def delete(token: str) -> Any:
    claim = _claim("manage", token)
    with _core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        if request.form.get("confirm_delete") != "yes":
            errors = {"confirm_delete": "Tick the box to confirm that everything should go."}
            return _manage_page(subscriber, session, errors=errors, status=400)
        service.delete_my_data(subscriber.id, session=session)
    return render_template("web/deleted.html")


# --- unsubscribe ------------------------------------------------------------------------


def _resume_window() -> timedelta:
    return timedelta(hours=Limits.from_settings(_settings()).resubscribe_window_hours)


def _can_resume(subscriber: Subscriber | None) -> bool:
    return subscriber is not None and service.can_resume(subscriber, window=_resume_window())


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Any:
    # Never unsubscribes: link scanners and previews fetch every GET in an email.
    claim = _claim("unsubscribe", token)
    with _core().reading() as session:
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
    claim = _claim("unsubscribe", token)
    if request.form.get(ONE_CLICK[0]) != ONE_CLICK[1]:
        abort(400, "Expected the form field List-Unsubscribe=One-Click.")
    with _core().transaction() as session:
        # A link of a deleted subscription has no one left to unsubscribe: same answer.
        subscriber = _linked_or_none(claim, session)
        if subscriber is not None:
            service.unsubscribe(subscriber.id, session=session)
        can_resume = _can_resume(subscriber)
    return render_template("web/unsubscribed.html", token=token, can_resume=can_resume)


@bp.post("/resubscribe/<token>")
def resubscribe(token: str) -> Any:
    # The unsubscribe link can undo itself, nothing more: preferences need the manage link.
    claim = _claim("unsubscribe", token)
    with _core().transaction() as session:
        subscriber = service.check_link(claim, session=session)
        service.resubscribe(subscriber.id, session=session, window=_resume_window())
    return render_template("web/resumed.html")


# --- feedback on a paper ----------------------------------------------------------------


def _vote_target(token: str) -> tuple[Subscriber, Any]:
    """Return the reader and the paper a vote link names (NotFound when either is gone)."""
    claim, paper_id = tokens.read_paper_token(_settings(), token)
    with _core().reading() as session:
        return (
            service.check_link(claim, session=session),
            feedback.load_paper(paper_id, session=session),
        )


def not_counted() -> Any:
    """Return the page of a vote that does not count, the same whatever the reason."""
    # The link says nothing about its reader.
    message = "Votes count only from current subscribers, with the links of their digests."
    return _error_page(403, "Vote not counted", message)


def record_vote(subscriber: Subscriber, paper: Any, vote: int) -> bool:
    """Record a reader's vote under the rules of every vote: only from a confirmed reader
    (False otherwise), within the link's and the network's limits (else RateLimited), a later
    vote replacing an earlier one."""
    if subscriber.status != SubscriberStatus.CONFIRMED:
        return False
    with _core().transaction() as session:
        _take_vote(subscriber, paper, session)
        feedback.record_vote(subscriber.id, paper.id, vote, session=session)
    return True


@bp.get("/feedback/<token>/<any(more, less):direction>")
def feedback_page(token: str, direction: str) -> Any:
    # Never votes: mail filters fetch (GET or HEAD) every link in an email.
    _, paper = _vote_target(token)
    return render_template(
        "web/feedback.html", paper=paper, direction=direction, token=token, done=False
    )


@bp.post("/feedback/<token>/<any(more, less):direction>")
@csrf_exempt
def feedback_vote(token: str, direction: str) -> Any:
    # Like RFC 8058's one-click POST: the signed link is the authority, no form or cookie.
    subscriber, paper = _vote_target(token)
    if not record_vote(subscriber, paper, feedback.DIRECTIONS[direction]):
        return not_counted()
    return render_template(
        "web/feedback.html", paper=paper, direction=direction, token=token, done=True
    )


@bp.post("/feedback/<token>/undo")
@csrf_exempt
def feedback_undo(token: str) -> Any:
    subscriber, paper = _vote_target(token)
    if subscriber.status != SubscriberStatus.CONFIRMED:
        return not_counted()
    with _core().transaction() as session:
        _take_vote(subscriber, paper, session)
        feedback.undo_vote(subscriber.id, paper.id, session=session)
    return render_template("web/feedback_undone.html", paper=paper, token=token)


def _take_vote(subscriber: Subscriber, paper: Any, session: Any) -> None:
    """Count the POST against the link's and the network's limits, or raise RateLimited."""
    link = f"{subscriber.id}.{subscriber.link_key}.{paper.id}"
    take_vote(link, request.remote_addr or "", session=session, settings=_settings())


# --- archive ----------------------------------------------------------------------------


def _public(response: Any) -> Response:
    response = current_app.make_response(response)
    response.headers["Cache-Control"] = ARCHIVE_CACHE
    return response


@bp.get("/archive")
def archive_index() -> Response:
    with _core().reading() as session:
        editions = archive.list_editions(session=session)
        topics = service.active_topics(session=session)
    return _public(render_template("web/archive.html", editions=editions, topics=topics))


@bp.get("/archive/<day>")
def archive_edition(day: str) -> Response:
    try:
        listing_date = date.fromisoformat(day)
    except ValueError:
        abort(404)
    with _core().reading() as session:
        if not archive.edition_exists(listing_date, session=session):
            abort(404)
        sections = archive.edition_sections(listing_date, session=session)
        previous, following = archive.neighbours(listing_date, session=session)
    page = render_template(
        "web/edition.html",
        listing_date=listing_date,
        sections=sections,
        previous=previous,
        following=following,
    )
    return _public(page)


@bp.get("/archive.atom")
def archive_feed() -> Response:
    with _core().reading() as session:
        editions = archive.list_editions(session=session, limit=archive.FEED_ENTRIES)
    body = render_template(
        "web/archive.atom.xml", editions=editions, base=_settings().base_url.rstrip("/")
    )
    return _public(Response(body, mimetype="application/atom+xml"))


@bp.get("/topics/<slug>.atom")
def topic_feed(slug: str) -> Response:
    with _core().reading() as session:
        feed = archive.topic_feed(slug, session=session)
    if feed is None:
        abort(404)
    body = render_template(
        "web/topic.atom.xml", feed=feed, base=_settings().base_url.rstrip("/")
    )
    return _public(Response(body, mimetype="application/atom+xml"))


@bp.get("/healthz")
def health() -> Response:
    with _core().reading() as session:
        session.execute(text("SELECT 1"))
    return Response("ok\n", mimetype="text/plain")


# --- errors -----------------------------------------------------------------------------


def _error_page(status: int, title: str, message: str) -> Any:
    return render_template("web/error.html", status=status, title=title, message=message), status


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    messages = {
        404: "There is no page at this address.",
        405: "This page does not accept that kind of request.",
        413: "The form sent too much data.",
        500: "Something went wrong on our side. Please try again later.",
    }
    if code == 413 and request.endpoint == "web.upload_papers":
        messages[413] = f"The file is larger than {MAX_BYTES // 1024} KB: export fewer papers."
    default = messages.get(code, exc.description or "")
    message = default if code in messages and not _custom(exc) else exc.description or default
    return _error_page(code, exc.name, message)


def _custom(exc: HTTPException) -> bool:
    return type(exc).description != exc.description


def _input_error(exc: InputError) -> Any:
    if isinstance(exc, RateLimited):
        page, status = _error_page(429, "Too many requests", _sentence(str(exc)))
        return page, status, {"Retry-After": "3600"}
    if isinstance(exc, NotFound):
        return _error_page(404, "Link no longer valid", _sentence(str(exc)))
    message = str(exc)
    if message == tokens.INVALID_LINK:
        message = (
            "This link is invalid or has expired. Links must be opened exactly as they "
            "arrived in the email."
        )
    return _error_page(400, "Bad request", _sentence(message))


def _sentence(message: str) -> str:
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."


def _transport_error(exc: TransportError) -> Any:
    log.error("could not send a transactional email: %s", exc)
    message = "We could not send the email just now. Please try again in a few minutes."
    return _error_page(503, "Email unavailable", message)


def init_views(app: Flask) -> None:
    """Register the routes, the error pages and the shared template context."""
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(TransportError, _transport_error)

    @app.context_processor
    def _common() -> dict[str, Any]:
        settings = _settings()
        return {
            "list_name": identity.list_name(settings),
            "list_tagline": settings.list_tagline,
            "ranked_by_upvotes": registry.ranks_by_upvotes(settings),
            "postal_address": settings.postal_address,
            "time_zones": time_zones(),
            "max_interests": forms.MAX_INTERESTS_LENGTH,
        }
