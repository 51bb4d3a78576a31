"""The public pages: the archive of editions, its Atom feeds, and the health check."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template
from sqlalchemy import text

from newsletter.audience import signup as service
from newsletter.editions import archive
from newsletter.web.common import current_core, current_settings

bp = Blueprint("archive", __name__)
ARCHIVE_CACHE = "public, max-age=300"


def _public(response: Any) -> Response:
    response = current_app.make_response(response)
    response.headers["Cache-Control"] = ARCHIVE_CACHE
    return response


@bp.get("/archive")
def archive_index() -> Response:
    with current_core().reading() as session:
        editions = archive.list_editions(session=session)
        topics = service.active_topics(session=session)
    return _public(render_template("web/archive.html", editions=editions, topics=topics))


@bp.get("/archive/<day>")
def archive_edition(day: str) -> Response:
    try:
        listing_date = date.fromisoformat(day)
    except ValueError:
        abort(404)
    with current_core().reading() as session:
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
    with current_core().reading() as session:
        editions = archive.list_editions(session=session, limit=archive.FEED_ENTRIES)
    body = render_template(
        "web/archive.atom.xml", editions=editions, base=current_settings().base_url.rstrip("/")
    )
    return _public(Response(body, mimetype="application/atom+xml"))


@bp.get("/topics/<slug>.atom")
def topic_feed(slug: str) -> Response:
    with current_core().reading() as session:
        feed = archive.topic_feed(slug, session=session)
    if feed is None:
        abort(404)
    body = render_template(
        "web/topic.atom.xml", feed=feed, base=current_settings().base_url.rstrip("/")
    )
    return _public(Response(body, mimetype="application/atom+xml"))


@bp.get("/healthz")
def health() -> Response:
    with current_core().reading() as session:
        session.execute(text("SELECT 1"))
    return Response("ok\n", mimetype="text/plain")


