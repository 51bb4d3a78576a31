"""What "matched" means, once: a topic's stored matches among the papers of the window.

A paper is matched to a topic when matching stored a PaperTopic row for the pair: what the
digests send, whichever signal placed it (keywords, category, meaning or neighbours, see
`combine.placed_by`). A topic's count is over the papers listed in the last `days` listing
days, counted back from the newest listing (MATCH_DAYS, the window matching reads, unless
asked otherwise). `topics list`, `topics check`, the reports of `topics add`, `edit` and
`import`, and the quiet topics of `status` all count with these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching.combine import placed_by
from newsletter.matching.matches import WINDOW_DAYS, recent_window

MATCH_DAYS = WINDOW_DAYS

Stored = tuple[int, float, list[str]]  # a stored match: paper id, score, evidence


@dataclass(frozen=True)
class MatchedPaper:
    """One paper a topic matched, with the signal that placed it and the evidence."""

    paper_id: int
    arxiv_id: str | None
    title: str
    listing_date: date
    score: float
    placed_by: str  # one of combine.PLACERS
    evidence: list[str] = field(default_factory=list)


def window_start(*, session: Session, days: int = MATCH_DAYS) -> date | None:
    """Return the first listing date of the window, or None when no paper is stored."""
    return recent_window(session=session, days=days)


def listed_count(*, session: Session, days: int = MATCH_DAYS) -> int:
    """Return how many papers were listed in the window."""
    start = window_start(session=session, days=days)
    if start is None:
        return 0
    query = select(func.count()).select_from(Paper).where(Paper.listing_date >= start)
    return session.scalar(query) or 0


def matched_counts(
    *, session: Session, days: int = MATCH_DAYS, topic_ids: Iterable[int] | None = None
) -> dict[int, int]:
    """Return, per topic id (all topics, or those given), how many papers of the window it
    matched; a topic that matched none is there with 0."""
    query = select(Topic.id)
    if topic_ids is not None:
        query = query.where(Topic.id.in_(list(topic_ids)))
    counts = dict.fromkeys(session.scalars(query), 0)
    start = window_start(session=session, days=days)
    if start is None or not counts:
        return counts
    rows = session.execute(
        select(PaperTopic.topic_id, func.count())
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date >= start, PaperTopic.topic_id.in_(list(counts)))
        .group_by(PaperTopic.topic_id)
    )
    counts.update((topic_id, n) for topic_id, n in rows)
    return counts


def matched_count(topic_id: int, *, session: Session, days: int = MATCH_DAYS) -> int:
    """Return how many papers of the window one topic matched."""
    return matched_counts(session=session, days=days, topic_ids=[topic_id]).get(topic_id, 0)


def stored_matches(
    topic_ids: Iterable[int], *, session: Session, days: int = MATCH_DAYS
) -> dict[int, list[Stored]]:
    """Return, per topic id, (paper id, score, evidence) of its matches in the window."""
    found: dict[int, list[Stored]] = {tid: [] for tid in topic_ids}
    start = window_start(session=session, days=days)
    if start is None or not found:
        return found
    query = (
        select(PaperTopic.topic_id, PaperTopic.paper_id, PaperTopic.score, PaperTopic.evidence)
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date >= start, PaperTopic.topic_id.in_(list(found)))
    )
    for tid, pid, score, evidence in session.execute(query):
        found[tid].append((pid, score, list(evidence or ())))
    return found


def matched_papers(
    topic: Topic, *, session: Session, days: int = MATCH_DAYS, threshold: float = 1.0
) -> list[MatchedPaper]:
    """Return the papers of the window a topic matched, newest listing first, the strongest
    match first within a day, each with the signal that placed it."""
    start = window_start(session=session, days=days)
    if start is None:
        return []
    query = (
        select(
            Paper.id, Paper.arxiv_id, Paper.title, Paper.listing_date,
            PaperTopic.score, PaperTopic.evidence,
        )
        .join(PaperTopic, PaperTopic.paper_id == Paper.id)
        .where(PaperTopic.topic_id == topic.id, Paper.listing_date >= start)
        .order_by(Paper.listing_date.desc(), PaperTopic.score.desc(), Paper.id)
    )  # fmt: skip
    whole = bool(topic.whole_categories)
    return [
        MatchedPaper(
            paper_id=pid,
            arxiv_id=arxiv_id,
            title=title,
            listing_date=listed,
            score=round(score, 3),
            placed_by=placed_by(score, evidence or (), threshold, whole_categories=whole),
            evidence=list(evidence or ()),
        )
        for pid, arxiv_id, title, listed, score, evidence in session.execute(query)
    ]


def unmatched_ids(*, session: Session, days: int = MATCH_DAYS) -> list[int]:
    """Return the ids of the papers of the window that no topic matched, newest first."""
    start = window_start(session=session, days=days)
    if start is None:
        return []
    taken = select(PaperTopic.paper_id).where(PaperTopic.paper_id == Paper.id).exists()
    query = (
        select(Paper.id)
        .where(Paper.listing_date >= start, ~taken)  # an anti-join, on either database
        .order_by(Paper.listing_date.desc(), Paper.id.desc())
    )
    return list(session.scalars(query))
