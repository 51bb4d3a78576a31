"""Papers to teach a topic with: the closest ones it does not take, and the ones it takes by
the weakest margin.

The first are where a topic's words fall short (an admin adds those that belong as
`--examples`), the second where they reach too far (those that do not belong go to
`--not-examples`). Both are judged as matching judges a listing (`matches.signals_of_recent`):
a paper's standing in meaning among the recent papers for the topic, and the chance that all
signals together give the pair. Without the sentence model or stored vectors there is nothing
to judge by, and `suggest_examples` says so in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching import combine
from newsletter.matching.examples_store import example_paper_ids
from newsletter.matching.matches import (
    RecentSignals,
    matching_mode,
    recent_window,
    signals_of_recent,
)
from newsletter.matching.meaning import MIN_REFERENCE

SUGGESTED = 5  # papers of each kind per topic


@dataclass(frozen=True)
class Suggestion:
    """One paper to consider as an example or a not-example of a topic."""

    paper_id: int
    arxiv_id: str | None
    title: str
    standing: float  # the z-score of its meaning for the topic among the recent papers
    chance: float  # the chance all signals together give that it belongs


@dataclass(frozen=True)
class Suggestions:
    """A topic's suggested examples (closest, not taken) and not-examples (weakest taken),
    with the lists it has: `topics edit --examples` replaces them whole."""

    not_taken: list[Suggestion]
    weakest: list[Suggestion]
    examples: list[str]
    not_examples: list[str]


def suggest_examples(
    *,
    session: Session,
    topics: Sequence[Topic],
    days: int,
    threshold: float = 1.0,
    neighbours: bool = True,
) -> dict[int, Suggestions] | str:
    """Return each topic's suggestions by topic id, among the papers of the last `days` days,
    or the line that says why there are none. Reads only: call it outside a write transaction.
    """
    by_meaning, how = matching_mode(neighbours)
    if not by_meaning:
        return f"no suggestions: matching {how}"
    recent = signals_of_recent(session=session, threshold=threshold)
    start = recent_window(session=session, days=days)
    if recent is None or start is None:
        return (
            "no suggestions: matching by keywords alone: fewer than "
            f"{MIN_REFERENCE} recent papers have a sentence vector"
        )
    ids = [r[0] for r in recent.rows]
    listed = set(_listed_since(start, ids, session=session))
    taken = _taken(start, [t.id for t in topics], session=session)
    chances = combine.chance(recent.signals.values)
    position = {t.id: n for n, t in enumerate(recent.topics)}
    out = {}
    for topic in topics:
        positive, negative = example_paper_ids(topic, session=session)
        known = set(positive) | set(negative)  # already said: not suggested again
        rows = [
            i
            for i, pid in enumerate(ids)
            if pid in listed and pid not in known and recent.embedded[i]
        ]
        out[topic.id] = _suggestions(topic, recent, chances, position[topic.id], rows, taken)
    return _with_arxiv_ids(out, session=session)


def _suggestions(
    topic: Topic,
    recent: RecentSignals,
    chances: Any,
    t: int,
    rows: list[int],
    taken: dict[int, set[int]],
) -> Suggestions:
    """Pick one topic's closest papers it does not take and those it takes most weakly,
    among the given rows of the recent signals (`t`: the topic's place in them).

    A whole-category topic's members are left out of the weakest: no not-example moves them.
    """
    z = recent.signals.standing.z[:, t]
    mine = taken[topic.id]
    ids = [r[0] for r in recent.rows]
    outside = sorted((i for i in rows if ids[i] not in mine), key=lambda i: -z[i])
    inside = sorted(
        (i for i in rows if ids[i] in mine and (i, t) not in recent.signals.members),
        key=lambda i: chances[i, t],
    )
    return Suggestions(
        not_taken=[_suggestion(recent.rows[i], z[i], chances[i, t]) for i in outside[:SUGGESTED]],
        weakest=[_suggestion(recent.rows[i], z[i], chances[i, t]) for i in inside[:SUGGESTED]],
        examples=list(topic.examples or ()),
        not_examples=list(topic.not_examples or ()),
    )


def _suggestion(row: Any, standing: float, chance: float) -> Suggestion:
    return Suggestion(row[0], None, row[1], round(float(standing), 2), round(float(chance), 3))


def _listed_since(start: date, ids: list[int], *, session: Session) -> list[int]:
    """Return those of the papers that were listed on `start` or later."""
    out: list[int] = []
    for n in range(0, len(ids), 500):  # bounded IN lists, as SQLite wants
        query = select(Paper.id).where(Paper.id.in_(ids[n : n + 500]), Paper.listing_date >= start)
        out.extend(session.scalars(query))
    return out


def _taken(start: date, topic_ids: list[int], *, session: Session) -> dict[int, set[int]]:
    """Return, per topic, the ids of the papers listed since `start` that it takes."""
    found: dict[int, set[int]] = {tid: set() for tid in topic_ids}
    query = (
        select(PaperTopic.topic_id, PaperTopic.paper_id)
        .join(Paper, Paper.id == PaperTopic.paper_id)
        .where(Paper.listing_date >= start, PaperTopic.topic_id.in_(topic_ids))
    )
    for tid, pid in session.execute(query):
        found[tid].add(pid)
    return found


def _with_arxiv_ids(found: dict[int, Suggestions], *, session: Session) -> dict[int, Suggestions]:
    """Fill in the arXiv ids of the suggested papers: what `--examples` takes."""
    ids = sorted({s.paper_id for x in found.values() for s in (*x.not_taken, *x.weakest)})
    query = select(Paper.id, Paper.arxiv_id).where(Paper.id.in_(ids))
    arxiv = {pid: ref for pid, ref in session.execute(query)} if ids else {}

    def filled(items: list[Suggestion]) -> list[Suggestion]:
        return [replace(s, arxiv_id=arxiv.get(s.paper_id)) for s in items]

    return {
        tid: replace(x, not_taken=filled(x.not_taken), weakest=filled(x.weakest))
        for tid, x in found.items()
    }
