"""Queries over stored papers: a day's listing, one paper, and their plain-data form."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.core.errors import NotFound
from newsletter.core.models import Paper, PaperTopic
from newsletter.matching.topics import get_topic
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.common import arxiv_id_of

RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(PaperRecord))


def latest_listing_date(*, session: Session) -> date | None:
    """Return the newest listing date in the database, or None when it holds no papers."""
    return session.scalar(select(func.max(Paper.listing_date)))


def list_papers(
    *,
    session: Session,
    listing_date: date,
    topic_slug: str | None = None,
    limit: int | None = None,
) -> list[Paper]:
    """Return the papers listed on a day, with their topic matches loaded.

    Most upvoted first where the source counts upvotes, then in the order they were listed.
    """
    query = (
        select(Paper)
        .where(Paper.listing_date == listing_date)
        .options(selectinload(Paper.topics).selectinload(PaperTopic.topic))
        .order_by(Paper.upvotes.desc().nulls_last(), Paper.id)
    )
    if topic_slug is not None:
        topic = get_topic(topic_slug, session=session)
        query = query.join(PaperTopic).where(PaperTopic.topic_id == topic.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def find_paper(ref: str, *, session: Session) -> Paper:
    """Return a paper by database id or arXiv id (any version, URL accepted)."""
    ref = ref.strip()
    paper = None
    if ref.isdigit():
        paper = session.get(Paper, int(ref))
    if paper is None:
        arxiv_id = arxiv_id_of(ref)
        if arxiv_id:
            paper = session.scalar(select(Paper).where(Paper.arxiv_id == arxiv_id))
    if paper is None:
        raise NotFound(f"no paper with id or arXiv id {ref!r}")
    return paper


def paper_as_dict(paper: Paper) -> dict[str, Any]:
    """Return the paper as plain data: the PaperRecord fields, its id and its topic matches."""
    data: dict[str, Any] = {"id": paper.id}
    data.update({name: getattr(paper, name) for name in RECORD_FIELDS})
    data["topics"] = [
        {"slug": m.topic.slug, "score": round(m.score, 3), "evidence": list(m.evidence or [])}
        for m in sorted(paper.topics, key=lambda m: (-m.score, m.topic.slug))
    ]
    return data
