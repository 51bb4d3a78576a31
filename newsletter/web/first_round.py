"""The first round of ratings: a page of a few recent papers a new reader rates, one press each.

Its link is signed for the reader ("start"), offered on the page that says their subscription
is confirmed. Each press is a POST with the page's CSRF token, counted as a vote link's press
is (`web.feedback.record_vote`), and answered with a redirect back to the page, the paper
marked: no script needed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from newsletter.audience import signup as service
from newsletter.core import tokens
from newsletter.core.models import Subscriber, SubscriberStatus, utcnow
from newsletter.matching import feedback, first_round
from newsletter.web import feedback as vote_links
from newsletter.web.common import current_core, current_settings, plain_number, read_claim

bp = Blueprint("start", __name__)
NOT_ON_PAGE = "This paper is not among yours to rate today. Please reload the page."


def _reader(token: str, session: Session) -> Subscriber:
    """Return the reader a first-round link was made for (InputError, NotFound if none)."""
    return service.check_link(read_claim("start", token), session=session)


def _picks(subscriber: Subscriber, session: Session) -> list[first_round.Pick]:
    start = first_round.starting_point(subscriber.id, session=session)
    settings = current_settings()
    return first_round.choose_first_round(
        start, session=session, day=utcnow().date(), threshold=settings.match_threshold,
        interest_cut=settings.ranking_interest_standing,
    )  # fmt: skip


@bp.get("/start/<token>")
def round_page(token: str) -> Any:
    # Never votes: a GET only shows the papers and the votes given.
    with current_core().reading() as session:
        subscriber = _reader(token, session)
        if subscriber.status != SubscriberStatus.CONFIRMED:
            return vote_links.not_counted()
        shown = first_round.load_round(_picks(subscriber, session), session=session)
        votes = feedback.votes_on(subscriber.id, [p.id for _, p in shown], session=session)
    manage = tokens.make_token(current_settings(), "manage", subscriber.id, subscriber.link_key)
    return render_template(
        "web/first_round.html", papers=shown, votes=votes, token=token, manage_token=manage
    )


@bp.post("/start/<token>")
def vote(token: str) -> Any:
    direction = request.form.get("vote", "")
    paper_id = plain_number(request.form.get("paper", ""))
    if direction not in feedback.DIRECTIONS or paper_id is None:
        abort(400, "Press one of the buttons of the page.")
    with current_core().reading() as session:
        subscriber = _reader(token, session)
        if subscriber.status != SubscriberStatus.CONFIRMED:
            return vote_links.not_counted()
        if paper_id not in {p.paper_id for p in _picks(subscriber, session)}:
            abort(400, NOT_ON_PAGE)
        paper = feedback.load_paper(paper_id, session=session)
    if not vote_links.record_vote(subscriber, paper, feedback.DIRECTIONS[direction]):
        return vote_links.not_counted()
    return redirect(url_for(".round_page", token=token, _anchor=f"paper-{paper.id}"), 303)
