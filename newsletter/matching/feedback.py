"""Readers' signals: "more like this" and "less like this" votes on the papers they received.

A vote is one row per reader and paper: voting again replaces it, undo removes it. Votes are
personal data: they go with the reader's export and with their deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsletter.core.errors import NotFound
from newsletter.core.models import FeedbackVote, Paper, utcnow

MORE, LESS = 1, -1
DIRECTIONS = {"more": MORE, "less": LESS}


@dataclass(frozen=True)
class PaperVotes:
    """How readers voted on one paper."""

    paper_id: int
    likes: int
    dislikes: int


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
    return row


def undo_vote(subscriber_id: int, paper_id: int, *, session: Session) -> bool:
    """Remove a reader's vote on a paper; False when there was none."""
    result = session.execute(
        delete(FeedbackVote).where(
            FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id == paper_id
        )
    )
    return bool(result.rowcount)


def vote_of(subscriber_id: int, paper_id: int, *, session: Session) -> int | None:
    """Return a reader's current vote on a paper, or None."""
    return session.scalar(
        select(FeedbackVote.vote).where(
            FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.paper_id == paper_id
        )
    )


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
