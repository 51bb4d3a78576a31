"""Readers' signals: "more like this" and "less like this" votes on the papers they received.

A vote is one row per reader and paper: voting again replaces it, undo removes it; either way
the reader's stored profile is written afresh in the same transaction (`stored_profiles`).
Votes are personal data: they go with the reader's export and with their deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.core.db import execute_dml
from newsletter.core.errors import NotFound
from newsletter.core.models import Delivery, FeedbackVote, Paper, Subscriber, utcnow
from newsletter.matching.stored_profiles import update_profile

MORE, LESS = 1, -1
DIRECTIONS = {"more": MORE, "less": LESS}


@dataclass(frozen=True)
class PaperVotes:
    """How readers voted on one paper."""

    paper_id: int
    likes: int
    dislikes: int


class ListedVote(TypedDict):
    """One vote as `feedback list` shows it."""

    email: str
    paper: str
    arxiv_id: str | None
    vote: str  # "more" or "less"
    at: str  # ISO 8601


def load_paper(paper_id: int, *, session: Session) -> Paper:
    """Return the paper a vote link names, or raise NotFound."""
    paper = session.get(Paper, paper_id)
    if paper is None:
        raise NotFound("this paper is no longer in the archive")
    return paper


def record_vote(
    subscriber_id: int, paper_id: int, vote: int, *, session: Session, now: datetime | None = None
) -> FeedbackVote:
    """Record a reader's vote on a paper; a later vote replaces the earlier one."""
    if vote not in (MORE, LESS):
        raise ValueError(f"a vote is {MORE} or {LESS}, not {vote!r}")
    now = now or utcnow()
    row = session.scalar(
        select(FeedbackVote)
        .where(FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id == paper_id)
        .with_for_update()
    )
    if row is None:
        row = FeedbackVote(subscriber_id=subscriber_id, paper_id=paper_id, created_at=now)
        session.add(row)
    row.vote, row.updated_at = vote, now
    session.flush()
    update_profile(subscriber_id, session=session, now=now)
    return row


def undo_vote(subscriber_id: int, paper_id: int, *, session: Session) -> bool:
    """Remove a reader's vote on a paper; False when there was none."""
    result = execute_dml(
        session,
        delete(FeedbackVote).where(
            FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id == paper_id
        ),
    )
    if result.rowcount:
        update_profile(subscriber_id, session=session)
    return bool(result.rowcount)


def vote_of(subscriber_id: int, paper_id: int, *, session: Session) -> int | None:
    """Return a reader's current vote on a paper, or None."""
    return session.scalar(
        select(FeedbackVote.vote).where(
            FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id == paper_id
        )
    )


def votes_on(subscriber_id: int, paper_ids: list[int], *, session: Session) -> dict[int, int]:
    """Return a reader's current votes on these papers, by paper id (none: left out)."""
    if not paper_ids:
        return {}
    rows = session.execute(
        select(FeedbackVote.paper_id, FeedbackVote.vote).where(
            FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id.in_(paper_ids)
        )
    )
    return {pid: vote for pid, vote in rows}


def votes_of_subscriber(subscriber_id: int, *, session: Session) -> list[dict[str, object]]:
    """Return a reader's votes with the papers' titles, oldest first (for their export)."""
    rows = session.execute(
        select(FeedbackVote, Paper.title, Paper.arxiv_id)
        .join(Paper, Paper.id == FeedbackVote.paper_id)
        .where(FeedbackVote.subscriber_id == subscriber_id)
        .order_by(FeedbackVote.id)
    )
    return [
        {
            "paper": title,
            "arxiv_id": arxiv_id,
            "vote": "more" if vote.vote == MORE else "less",
            "at": vote.updated_at,
        }
        for vote, title, arxiv_id in rows
    ]


def paper_votes(paper_ids: list[int], *, session: Session) -> dict[int, PaperVotes]:
    """Return likes and dislikes per paper for the given papers."""
    likes = func.sum(func.cast(FeedbackVote.vote == MORE, type_=FeedbackVote.vote.type))
    dislikes = func.sum(func.cast(FeedbackVote.vote == LESS, type_=FeedbackVote.vote.type))
    rows = session.execute(
        select(FeedbackVote.paper_id, likes, dislikes)
        .where(FeedbackVote.paper_id.in_(paper_ids))
        .group_by(FeedbackVote.paper_id)
    )
    return {pid: PaperVotes(pid, int(up or 0), int(down or 0)) for pid, up, down in rows}


def edition_votes(edition_id: int, *, session: Session) -> dict[str, int]:
    """Return the votes the edition's readers gave the papers it carried."""
    carried = _carried_papers(edition_id, session=session)
    counted = [
        (vote, sid) for vote, sid, pid in _with_papers(edition_id, session=session)
        if pid in carried
    ]  # fmt: skip
    return {
        "likes": sum(1 for vote, _ in counted if vote == MORE),
        "dislikes": sum(1 for vote, _ in counted if vote == LESS),
        "readers": len({sid for _, sid in counted}),
    }


def _carried_papers(edition_id: int, *, session: Session) -> set[int]:
    carried: set[int] = set()
    for ids in session.scalars(
        select(Delivery.paper_ids).where(
            Delivery.edition_id == edition_id, Delivery.paper_ids.is_not(None)
        )
    ):
        carried.update(ids or ())
    return carried


def _with_papers(edition_id: int, *, session: Session) -> list[tuple[int, int, int]]:
    return [
        (vote, subscriber_id, paper_id)
        for vote, subscriber_id, paper_id in session.execute(
            select(FeedbackVote.vote, FeedbackVote.subscriber_id, FeedbackVote.paper_id)
            .join(Delivery, Delivery.subscriber_id == FeedbackVote.subscriber_id)
            .where(Delivery.edition_id == edition_id)
        )
    ]


def list_votes(*, session: Session, email: str | None = None) -> list[ListedVote]:
    """Return every vote (or one reader's), newest first, with the reader and the paper."""
    query = (
        select(FeedbackVote, Subscriber.email, Paper.title, Paper.arxiv_id)
        .join(Subscriber, Subscriber.id == FeedbackVote.subscriber_id)
        .join(Paper, Paper.id == FeedbackVote.paper_id)
        .order_by(FeedbackVote.updated_at.desc(), FeedbackVote.id.desc())
    )
    if email is not None:
        query = query.where(func.lower(Subscriber.email) == email.strip().lower())
    return [
        {
            "email": address,
            "paper": title,
            "arxiv_id": arxiv_id,
            "vote": "more" if vote.vote == MORE else "less",
            "at": vote.updated_at.isoformat(),
        }
        for vote, address, title, arxiv_id in session.execute(query)
    ]
