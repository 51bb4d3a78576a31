"""Votes on a paper: the "more like this" and "less like this" links of the digests.

`record_vote` holds the rules of every vote (the first round's presses count by them too).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from newsletter.audience import signup as service
from newsletter.audience.limits import take_vote
from newsletter.core import tokens
from newsletter.core.models import Subscriber, SubscriberStatus
from newsletter.matching import feedback
from newsletter.web.common import current_core, current_settings, error_page
from newsletter.web.security import csrf_exempt

bp = Blueprint("feedback", __name__)


def _vote_target(token: str) -> tuple[Subscriber, Any]:
    """Return the reader and the paper a vote link names (NotFound when either is gone)."""
    claim, paper_id = tokens.read_paper_token(current_settings(), token)
    with current_core().reading() as session:
        return (
            service.check_link(claim, session=session),
            feedback.load_paper(paper_id, session=session),
        )


def not_counted() -> Any:
    """Return the page of a vote that does not count, the same whatever the reason."""
    # The link says nothing about its reader.
    message = "Votes count only from current subscribers, with the links of their digests."
    return error_page(403, "Vote not counted", message)


def record_vote(subscriber: Subscriber, paper: Any, vote: int) -> bool:
    """Record a reader's vote under the rules of every vote: only from a confirmed reader
    (False otherwise), within the link's and the network's limits (else RateLimited), a later
    vote replacing an earlier one."""
    if subscriber.status != SubscriberStatus.CONFIRMED:
        return False
    with current_core().transaction() as session:
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
    with current_core().transaction() as session:
        _take_vote(subscriber, paper, session)
        feedback.undo_vote(subscriber.id, paper.id, session=session)
    return render_template("web/feedback_undone.html", paper=paper, token=token)


def _take_vote(subscriber: Subscriber, paper: Any, session: Any) -> None:
    """Count the POST against the link's and the network's limits, or raise RateLimited."""
    link = f"{subscriber.id}.{subscriber.link_key}.{paper.id}"
    take_vote(link, request.remote_addr or "", session=session, settings=current_settings())


