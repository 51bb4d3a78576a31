"""Topic matching on the database: score papers against topics and store the matches.

The text scoring itself (keywords, where they occur, what that is worth) lives in `keywords`
and `scoring`; this module loads papers and topics, counts how common each keyword is among the
recent listings (the last WINDOW_DAYS days of papers), and replaces PaperTopic rows. Where
papers are stored with a sentence vector (`embed_papers`) and the sentence model loads, every
signal decides together (`combine`): keywords, the paper's meaning against the topic's among
the recent listings (`meaning`), categories, its nearest papers and the topic's examples.
Without the model, keywords and categories decide alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.util import find_spec
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from newsletter.core.db import execute_dml
from newsletter.core.models import (
    FeedbackVote,
    Paper,
    PaperEmbedding,
    PaperTopic,
    Subscription,
    Topic,
    utcnow,
)
from newsletter.matching import combine
from newsletter.matching.embeddings import (
    MODEL_ID,
    EmbeddingsUnavailable,
    Encoder,
    Precomputed,
    from_bytes,
    load_encoder,
    paper_text,
    to_bytes,
)
from newsletter.matching.examples_store import example_paper_ids
from newsletter.matching.meaning import Examples, embed_topics, topic_parts
from newsletter.matching.profiles import PROFILE_DAYS
from newsletter.matching.scoring import PaperText, Scored, TopicIndex, TopicMatcher

__all__ = [
    "MatchStats",
    "PaperText",
    "RecentSignals",
    "TopicIndex",
    "TopicMatcher",
    "embed_papers",
    "match_papers",
    "signals_of_recent",
]

PROGRESS_EVERY = 200  # papers between progress reports
WINDOW_DAYS = 30  # keyword frequencies come from the papers listed this many days back
WINDOW_MAX_PAPERS = 10_000  # ... at most this many of the newest: counting costs matching time


@dataclass(frozen=True)
class MatchStats:
    papers: int
    topics: int
    matches: int
    removed: int = 0


def compile_topic(topic: Topic) -> TopicMatcher:
    """Compile one topic row."""
    return TopicMatcher.compile(
        topic.slug,
        topic.keywords or (),
        topic.description or "",
        topic.categories or (),
        name=topic.name or "",
        exclude=topic.exclude or (),
        whole_categories=bool(topic.whole_categories),
    )


def match_papers(
    *,
    session: Session,
    paper_ids: Iterable[int] | None = None,
    threshold: float = 1.0,
    topic_ids: Iterable[int] | None = None,
    progress: Callable[[int], None] | None = None,
    neighbours: bool = True,
    encoder: Encoder | Precomputed | None = None,
) -> MatchStats:
    """(Re)compute PaperTopic rows for the given papers (all papers when None) against all topics.

    Stores the pairs scoring at least `threshold` (never a zero score) and, with `neighbours`
    (meaning as well as words) and stored vectors, the pairs all signals together admit
    (`combine`). Replaces the existing PaperTopic rows of those papers (and only of
    `topic_ids` when given); does not commit. `progress(n)` reports n more papers scored.
    `encoder` reads the topics' words (by default the sentence model, loaded here; pass one
    that has them already, see `topic_texts`, to keep the model out of the transaction).
    """
    tids = None if topic_ids is None else sorted(set(topic_ids))
    every = list(session.scalars(select(Topic).order_by(Topic.id)))
    topics = every if tids is None else [t for t in every if t.id in set(tids)]
    ids = None if paper_ids is None else sorted(set(paper_ids))
    rows = _load_papers(session, ids)
    votes = _readers_votes(session) if neighbours else {}  # before the matches they join go
    removed = _delete_matches(session, ids, tids)
    recent = recent_paper_rows(session=session)
    recent_ids = {r[0] for r in recent}
    scored_ids = {r[0] for r in rows}
    background = [r for r in recent if r[0] not in scored_ids]
    vectors = _vectors(session, [r[0] for r in rows + background]) if neighbours else None
    if vectors is None:
        index = TopicIndex([compile_topic(t) for t in topics])
        results = index.score_listing(
            [row_text(r) for r in rows],
            threshold,
            background=[row_text(r) for r in background],
            counted=lambda n: rows[n][0] in recent_ids,
        )
    else:  # the background is scored too: it is what standings and neighbours are judged on
        # Every topic, whichever are stored: a paper's margin is over all of its topics.
        listing = rows + background
        examples = _examples(session, every, votes)
        found_all = _by_all_signals(
            every, listing, vectors, threshold, recent_ids, encoder, examples
        )
        found_all = found_all[: len(rows)]
        position = {t.id: n for n, t in enumerate(topics)}
        results = [
            [(position[every[t].id], v, e) for t, v, e in found if every[t].id in position]
            for found in found_all
        ]
    new_rows = []
    for done, (row, found) in enumerate(zip(rows, results, strict=True), start=1):
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        for t, score, evidence in found:
            new_rows.append(
                {"paper_id": row[0], "topic_id": topics[t].id, "score": score, "evidence": evidence}
            )
    if progress is not None and len(rows) % PROGRESS_EVERY:
        progress(len(rows) % PROGRESS_EVERY)
    if new_rows:
        session.execute(insert(PaperTopic), new_rows)
    return MatchStats(papers=len(rows), topics=len(topics), matches=len(new_rows), removed=removed)


def _by_all_signals(
    topics: list[Topic],
    listing: list[Any],
    vectors: Any,
    threshold: float,
    recent_ids: set[int],
    encoder: Encoder | Precomputed | None,
    examples: list[Examples | None],
) -> list[list[Scored]]:
    if not topics:
        return [[] for _ in listing]
    index = TopicIndex([compile_topic(t) for t in topics])
    texts = [row_text(r) for r in listing]
    counted = [r[0] in recent_ids for r in listing].__getitem__
    signals = _measure(index, texts, vectors, threshold, topics, encoder, examples, counted)
    if signals is None:  # no model to read the topics, or too few papers to judge against
        return index.score_listing(texts, threshold, counted=counted)
    return combine.decide(signals, threshold)


def _measure(
    index: TopicIndex,
    texts: list[PaperText],
    vectors: Any,
    threshold: float,
    topics: list[Topic],
    encoder: Encoder | Precomputed | None,
    examples: list[Examples | None],
    counted: Callable[[int], bool] | None = None,
) -> combine.Signals | None:
    """Measure every signal of a listing, or None when the model or the vectors fall short."""
    topic_vectors = _topic_vectors(topics, encoder)
    if topic_vectors is None:
        return None
    return combine.measure(
        index, texts, vectors, topic_vectors, threshold, counted=counted, examples=examples
    )


@dataclass(frozen=True)
class RecentSignals:
    """Every signal of the recent listings against every topic, as matching measures them."""

    topics: list[Topic]  # in the order of the signals' topic axis
    rows: list[Any]  # (id, title, abstract, keywords, categories), newest first
    signals: combine.Signals
    embedded: Any  # per row: whether the paper has a vector (one without stands nowhere)


def signals_of_recent(
    *, session: Session, threshold: float = 1.0, encoder: Encoder | Precomputed | None = None
) -> RecentSignals | None:
    """Measure every signal of the recent listings' papers against every topic.

    The same standings, chances and category memberships as `match_papers` judges a full
    listing by. None where keywords decide alone: no topic, no stored vectors, the sentence
    model does not load, or too few recent papers have a vector to judge against. Reads only.
    """
    topics = list(session.scalars(select(Topic).order_by(Topic.id)))
    rows = recent_paper_rows(session=session)
    vectors = _vectors(session, [r[0] for r in rows]) if topics and rows else None
    if vectors is None:
        return None
    index = TopicIndex([compile_topic(t) for t in topics])
    texts = [row_text(r) for r in rows]
    examples = _examples(session, topics, _readers_votes(session))
    signals = _measure(index, texts, vectors, threshold, topics, encoder, examples)
    if signals is None:
        return None
    return RecentSignals(topics, rows, signals, abs(vectors).max(axis=1) > 0)


def _examples(
    session: Session, topics: list[Topic], votes: dict[int, tuple[list[int], list[int]]]
) -> list[Examples | None]:
    """Return each topic's examples, not-examples and its readers' votes as stored vectors."""
    out: list[Examples | None] = []
    for topic in topics:
        liked, disliked = votes.get(topic.id, ([], []))
        positive: list[int] = []
        negative: list[int] = []
        if topic.examples or topic.not_examples:
            positive, negative = example_paper_ids(topic, session=session)
        groups = [positive, negative, liked, disliked]
        if not any(groups):
            out.append(None)
            continue
        vectors = _vectors(session, [i for group in groups for i in group])
        if vectors is None:
            out.append(None)
            continue
        parts, start = [], 0
        for group in groups:
            rows = vectors[start : start + len(group)]
            parts.append(rows[abs(rows).max(axis=1) > 0])  # a paper without a vector: left out
            start += len(group)
        out.append(Examples(*parts))
    return out


def _readers_votes(session: Session) -> dict[int, tuple[list[int], list[int]]]:
    """Return, per topic, the papers it placed that its readers liked on balance, and disliked.

    Only a topic's own subscribers' votes count, over the days readers' profiles read.
    """
    since = utcnow() - timedelta(days=PROFILE_DAYS)
    rows = session.execute(
        select(PaperTopic.topic_id, FeedbackVote.paper_id, func.sum(FeedbackVote.vote))
        .join(PaperTopic, PaperTopic.paper_id == FeedbackVote.paper_id)
        .join(
            Subscription,
            (Subscription.subscriber_id == FeedbackVote.subscriber_id)
            & (Subscription.topic_id == PaperTopic.topic_id),
        )
        .where(FeedbackVote.updated_at >= since)
        .group_by(PaperTopic.topic_id, FeedbackVote.paper_id)
    )
    out: dict[int, tuple[list[int], list[int]]] = {}
    for topic_id, paper_id, total in rows:
        liked, disliked = out.setdefault(topic_id, ([], []))
        if total > 0:
            liked.append(paper_id)
        elif total < 0:
            disliked.append(paper_id)
    return out


def _topic_vectors(topics: list[Topic], encoder: Encoder | Precomputed | None) -> Any | None:
    """Embed each topic's prototype, or None when the sentence model does not load."""
    if encoder is None:
        try:
            encoder = load_encoder()
        except EmbeddingsUnavailable:
            return None
    return embed_topics(encoder.embed, [_described(t) for t in topics])


def matching_mode(enabled: bool) -> tuple[bool, str]:
    """Tell whether topics are matched by meaning here, and say how or why not."""
    if not enabled:
        return False, "by keywords alone: match_neighbours is false"
    try:
        load_encoder()
    except EmbeddingsUnavailable as exc:
        return False, f"by keywords alone: {exc}"
    return True, f"by meaning and keywords ({MODEL_ID})"


def _described(topic: Topic) -> tuple[str, str, list[str]]:
    return topic.name or topic.slug, topic.description or "", list(topic.keywords or ())


def topic_texts(*, session: Session) -> list[str]:
    """Return every text the topics' prototypes are embedded from (to embed them beforehand)."""
    topics = session.scalars(select(Topic).order_by(Topic.id))
    return [p for t in topics for p in topic_parts(*_described(t)) if p]


def paper_vectors(*, session: Session, paper_ids: Iterable[int]) -> Any | None:
    """Return the stored vectors of the papers in order (zeros where none), or None if none."""
    return _vectors(session, list(paper_ids))


def _vectors(session: Session, ids: list[int]) -> Any | None:
    """Return the stored vectors of the papers in order (zeros where none), or None if none."""
    if find_spec("numpy") is None:
        return None  # numpy could not be installed here: keywords alone
    found: dict[int, bytes] = {}
    for chunk in _chunks(sorted(set(ids))):
        query = select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
            PaperEmbedding.model == MODEL_ID
        )
        if chunk is not None:
            query = query.where(PaperEmbedding.paper_id.in_(chunk))
        found.update((pid, blob) for pid, blob in session.execute(query))
    if not found:
        return None  # no sentence model here, or nothing embedded yet: keywords alone
    zero = bytes(len(next(iter(found.values()))))
    return from_bytes([found.get(i, zero) for i in ids])


def embed_papers(
    *, session: Session, paper_ids: Iterable[int], encoder: Encoder | Precomputed
) -> int:
    """Store the sentence vector of each given paper that has none from the current model.

    Returns how many were embedded; does not commit.
    """
    ids = sorted(set(paper_ids))
    have: set[int] = set()
    for chunk in _chunks(ids):
        have.update(
            session.scalars(
                select(PaperEmbedding.paper_id).where(
                    PaperEmbedding.paper_id.in_(chunk or []), PaperEmbedding.model == MODEL_ID
                )
            )
        )
    todo = [i for i in ids if i not in have]
    if not todo:
        return 0
    rows: list[tuple[int, str, str]] = []
    for chunk in _chunks(todo):
        query = select(Paper.id, Paper.title, Paper.abstract).where(Paper.id.in_(chunk or []))
        rows.extend(session.execute(query).all())
    texts = [paper_text(title or "", abstract or "") for _, title, abstract in rows]
    vectors = encoder.embed(texts)
    for chunk in _chunks(todo):  # a vector of an older model goes
        session.execute(delete(PaperEmbedding).where(PaperEmbedding.paper_id.in_(chunk or [])))
    blobs = to_bytes(vectors)
    session.execute(
        insert(PaperEmbedding),
        [
            {"paper_id": pid, "model": MODEL_ID, "vector": blob}
            for (pid, _, _), blob in zip(rows, blobs, strict=True)
        ],
    )
    return len(rows)


def row_text(row: Any) -> PaperText:
    """Return what the matcher reads of an (id, title, abstract, keywords, categories) row."""
    _, title, abstract, keywords, categories = row
    return PaperText(title or "", abstract or "", keywords or (), categories or ())


def recent_window(*, session: Session, days: int = WINDOW_DAYS) -> date | None:
    """Return the first listing date of the recent window, or None when no paper is stored."""
    newest = session.scalar(select(func.max(Paper.listing_date)))
    return None if newest is None else newest - timedelta(days=days - 1)


def recent_paper_rows(*, session: Session, days: int = WINDOW_DAYS) -> list[Any]:
    """Return (id, title, abstract, keywords, categories) of the recent listings, newest first."""
    columns = (Paper.id, Paper.title, Paper.abstract, Paper.keywords, Paper.categories)
    return _recent(session, columns, days)


def recent_paper_ids(*, session: Session, days: int = WINDOW_DAYS) -> list[int]:
    """Return the ids of the recent listings' papers, newest first."""
    return [row[0] for row in _recent(session, (Paper.id,), days)]


def listed_paper_ids(*, session: Session, listing_date: date | None = None) -> list[int]:
    """Return the ids of the papers listed on a date, or of every stored paper."""
    query = select(Paper.id)
    if listing_date is not None:
        query = query.where(Paper.listing_date == listing_date)
    return list(session.scalars(query))


def _recent(session: Session, columns: tuple[Any, ...], days: int) -> list[Any]:
    start = recent_window(session=session, days=days)
    if start is None:
        return []
    query = (
        select(*columns)
        .where(Paper.listing_date >= start)
        .order_by(Paper.listing_date.desc(), Paper.id.desc())
        .limit(WINDOW_MAX_PAPERS)
    )
    return list(session.execute(query).all())


def recent_papers(*, session: Session, days: int = WINDOW_DAYS) -> list[PaperText]:
    """Return the text of the recent listings' papers, newest first."""
    return [row_text(r) for r in recent_paper_rows(session=session, days=days)]


def _chunks(ids: list[int] | None, size: int = 500) -> Iterable[list[int] | None]:
    # Bounded IN lists: SQLite limits the bound parameters of one statement.
    if ids is None:
        yield None
        return
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _load_papers(session: Session, ids: list[int] | None) -> list[Any]:
    query = select(Paper.id, Paper.title, Paper.abstract, Paper.keywords, Paper.categories)
    rows: list[Any] = []
    for chunk in _chunks(ids):
        q = query if chunk is None else query.where(Paper.id.in_(chunk))
        rows.extend(session.execute(q).all())
    return rows


def _delete_matches(session: Session, ids: list[int] | None, topic_ids: list[int] | None) -> int:
    if topic_ids is not None and not topic_ids:
        return 0
    removed = 0
    for chunk in _chunks(ids):
        stmt = delete(PaperTopic)
        if chunk is not None:
            stmt = stmt.where(PaperTopic.paper_id.in_(chunk))
        if topic_ids is not None:
            stmt = stmt.where(PaperTopic.topic_id.in_(topic_ids))
        removed += execute_dml(session, stmt).rowcount or 0
    return removed
