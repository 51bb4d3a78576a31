"""How well each topic's keywords fit the recent papers, with warnings for weak ones.

A keyword that most recent papers mention places none of them; one that no paper mentions
is probably misspelt or from another field; a topic that matches nothing leaves its
subscribers without a digest. `check_topics` measures this over the recent listings and
`quiet_topics` names the topics that matched no paper lately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching.matches import compile_topic, recent_papers, recent_window
from newsletter.matching.scoring import PaperText, TopicIndex, compile_keyword
from newsletter.matching.specificity import WARN_COMMON_SHARE

CHECK_DAYS = 30
QUIET_DAYS = 7  # `newsletter status` flags topics that matched nothing in this many days
MIN_PAPERS_FOR_NONE = 20  # below this, a keyword found nowhere proves little
BROAD_TOPIC_SHARE = 0.5  # a topic matching this share of the listing is hardly a filter


@dataclass(frozen=True)
class KeywordCheck:
    """One keyword: in how many recent papers it is found, and what to do about it."""

    keyword: str
    papers: int
    share: float
    warning: str | None = None


@dataclass(frozen=True)
class TopicCheck:
    """One topic over the recent papers: what it matched, per keyword, with warnings."""

    slug: str
    name: str
    days: int
    papers: int
    matched: int
    share: float
    keywords: list[KeywordCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_topics(
    *,
    session: Session,
    slug: str | None = None,
    days: int = CHECK_DAYS,
    threshold: float = 1.0,
) -> list[TopicCheck]:
    """Measure each topic (or the one named) against the papers of the last `days` days."""
    query = select(Topic).order_by(Topic.slug)
    if slug is not None:
        query = query.where(Topic.slug == slug)
    papers = recent_papers(session=session, days=days)
    return [
        check_topic(topic, papers, days=days, threshold=threshold)
        for topic in session.scalars(query)
    ]


def check_topic(
    topic: Topic, papers: list[PaperText], *, days: int = CHECK_DAYS, threshold: float = 1.0
) -> TopicCheck:
    """Measure one topic against a list of recent papers."""
    index = TopicIndex([compile_topic(topic)])
    found = index.count_keywords(papers)
    matched = sum(1 for hits in index.score_listing(papers, threshold) if hits)
    total = len(papers)
    keywords = [
        _keyword_check(word, found.counts.get(compile_keyword(word).key, 0), total)
        for word in topic.keywords or ()
    ]
    return TopicCheck(
        slug=topic.slug,
        name=topic.name,
        days=days,
        papers=total,
        matched=matched,
        share=_share(matched, total),
        keywords=keywords,
        warnings=_topic_warnings(topic.slug, matched, total, days),
    )


def _share(count: int, total: int) -> float:
    return round(count / total, 3) if total else 0.0


def _keyword_check(word: str, count: int, total: int) -> KeywordCheck:
    share = _share(count, total)
    warning = None
    if total and share >= WARN_COMMON_SHARE:
        warning = (
            f"keyword {word!r} is in {share:.0%} of recent papers: it says little about one; "
            "use a more specific phrase, or pair it with specific keywords"
        )
    elif total >= MIN_PAPERS_FOR_NONE and count == 0:
        warning = (
            f"keyword {word!r} is in none of the {total} recent papers: check its spelling, "
            "or add the words papers use for it (a synonym, an acronym)"
        )
    return KeywordCheck(word, count, share, warning)


def _topic_warnings(slug: str, matched: int, total: int, days: int) -> list[str]:
    if not total:
        return [f"no papers in the last {days} days: nothing to check {slug!r} against"]
    if matched == 0:
        return [
            f"topic {slug!r} matched none of the {total} papers of the last {days} days: "
            "its subscribers get nothing; add keywords papers use"
        ]
    if matched / total >= BROAD_TOPIC_SHARE:
        return [
            f"topic {slug!r} matched {matched / total:.0%} of recent papers: "
            "it filters little; use more specific keywords"
        ]
    return []


def warnings_of(check: TopicCheck) -> list[str]:
    """Return every warning of a topic check: its keywords' and its own."""
    return [k.warning for k in check.keywords if k.warning] + check.warnings


def quiet_topics(*, session: Session, days: int = QUIET_DAYS) -> list[str]:
    """Return the slugs of topics that matched no paper in the last `days` days of listings."""
    start = recent_window(session=session, days=days)
    if start is None:
        return []
    matched = (
        select(PaperTopic.topic_id)
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date >= start)
    )
    query = select(Topic.slug).where(Topic.id.not_in(matched)).order_by(Topic.slug)
    return list(session.scalars(query))
