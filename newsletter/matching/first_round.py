"""A new reader's first round of ratings: the few recent papers whose votes teach their profile
fastest.

Active learning by uncertainty: a vote says most where the matcher is least sure, so the round
asks about the papers of the window that stand nearest each topic's admit boundary
(`combine.boundary_margin`), not those it would send anyway. The papers come in turn from each
of the reader's signals (a `Strand` each: a topic's matches; their sentence of interests and
their own papers, each by the papers' standing along it, nearest the cut from which interests
bring a paper), so every signal is asked about, and a
spread of the window's papers fills what they leave: every topic's in turn, then those no topic
took. A paper the reader was sent, or voted on before the day, is never asked again; within a
day the round is the same, so a reload shows the same papers with the votes given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import default
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    FeedbackVote,
    Paper,
    Subscriber,
    Subscription,
    Topic,
)
from newsletter.matching.combine import boundary_margin
from newsletter.matching.interests import load_standings, reader_vector
from newsletter.matching.matched import MATCH_DAYS, stored_matches, unmatched_ids, window_start
from newsletter.matching.matches import recent_paper_ids
from newsletter.matching.seeds import seeds_of
from newsletter.matching.stored_profiles import mean_direction

FIRST_ROUND = 10  # papers per round: a minute of pressing, enough to move a profile
SPREAD = "recent papers"  # the strand that fills the round
INTERESTS = "your interests"
OWN_PAPERS = "like your own papers"

TieBreak = Callable[[int], bytes]


@dataclass(frozen=True)
class StartingPoint:
    """What a reader chose when they signed up: the signals their first round asks about."""

    subscriber_id: int
    topic_ids: tuple[int, ...]
    interests: Any | None = None  # their sentence's vector (None: none, or no model)
    own_papers: Any | None = None  # the unit mean of their own papers' vectors


@dataclass(frozen=True)
class Strand:
    """One signal's papers to ask about, nearest its boundary first, and what it is called."""

    name: str
    paper_ids: tuple[int, ...]


@dataclass(frozen=True)
class Pick:
    """One paper of a first round and the strand that asked for it."""

    paper_id: int
    strand: str


def starting_point(subscriber_id: int, *, session: Session) -> StartingPoint:
    """Return what a reader chose: their topics in a stable order, their sentence's vector
    and their own papers' mean vector (either None where absent or without the model)."""
    topic_ids = session.scalars(
        select(Subscription.topic_id).where(Subscription.subscriber_id == subscriber_id)
    )
    reader = session.get(Subscriber, subscriber_id)
    interests = None
    if reader is not None and reader.interests:
        interests = reader_vector(reader.interests, reader.interests_model,
                                  reader.interests_vector)  # fmt: skip
    own = seeds_of([subscriber_id], session=session).get(subscriber_id, [])
    blobs = [seed.vector for seed in own if seed.vector is not None]
    return StartingPoint(subscriber_id, tuple(sorted(topic_ids)), interests, mean_direction(blobs))


def choose_first_round(
    start: StartingPoint,
    *,
    session: Session,
    day: date,
    threshold: float = 1.0,
    size: int = FIRST_ROUND,
    days: int = MATCH_DAYS,
    interest_cut: float = default("ranking_interest_standing"),
) -> list[Pick]:
    """Return a reader's first round on a day, in page order (empty: no paper stored)."""
    window = window_start(session=session, days=days)
    if window is None:
        return []
    skip = sent_to(start.subscriber_id, window, session=session)
    skip |= voted_before(start.subscriber_id, day, session=session)
    tie = _tie_break(start.subscriber_id, day)
    strands = strands_for(start, skip, tie, session=session, threshold=threshold, days=days,
                          interest_cut=interest_cut)  # fmt: skip
    picks = in_turn(strands, size, offset=start.subscriber_id + day.toordinal())
    if len(picks) < size:
        taken = skip | {p.paper_id for p in picks}
        spread = _spread(taken, tie, session=session, threshold=threshold, days=days)
        picks += in_turn([spread], size - len(picks))
    return picks


def strands_for(
    start: StartingPoint,
    skip: set[int],
    tie: TieBreak,
    *,
    session: Session,
    threshold: float,
    days: int,
    interest_cut: float = default("ranking_interest_standing"),
) -> list[Strand]:
    """Return one strand per signal of the reader's, in a stable order: topics, interests,
    own papers."""
    strands = topic_strands(
        start.topic_ids, skip, tie, session=session, threshold=threshold, days=days
    )
    wanted = [(n, v) for n, v in ((INTERESTS, start.interests), (OWN_PAPERS, start.own_papers))
              if v is not None]  # fmt: skip
    if wanted:
        window = [pid for pid in recent_paper_ids(session=session, days=days) if pid not in skip]
        standings = load_standings(window, session=session)
        if standings is not None:
            strands += [meaning_strand(name, standings.standing(v), tie, interest_cut)
                        for name, v in wanted]  # fmt: skip
    return strands


def meaning_strand(name: str, standing: dict[int, float], tie: TieBreak, cut: float) -> Strand:
    """Return the papers by their standing along a reader's vector, nearest the `cut` from
    which interests bring a paper first: there a vote tells the profile most."""
    order = sorted(standing, key=lambda pid: (abs(standing[pid] - cut), tie(pid)))
    return Strand(name, tuple(order))


def topic_strands(
    topic_ids: Iterable[int],
    skip: set[int],
    tie: TieBreak,
    *,
    session: Session,
    threshold: float,
    days: int,
) -> list[Strand]:
    """Return each topic's matches of the window, nearest its admit boundary first."""
    ids = sorted(set(topic_ids))
    names = dict(session.execute(select(Topic.id, Topic.name).where(Topic.id.in_(ids))).all())
    found = stored_matches(ids, session=session, days=days)
    strands = []
    for tid in ids:
        scored = [(pid, score) for pid, score, _ in found.get(tid, ()) if pid not in skip]
        scored.sort(key=lambda item: (boundary_margin(item[1], threshold), tie(item[0])))
        strands.append(Strand(names.get(tid, ""), tuple(pid for pid, _ in scored)))
    return strands


def in_turn(strands: Sequence[Strand], size: int, *, offset: int = 0) -> list[Pick]:
    """Take one paper from each strand in turn (from strand `offset` on), each paper once."""
    order = [strands[(offset + n) % len(strands)] for n in range(len(strands))]
    queues = [(strand.name, iter(strand.paper_ids)) for strand in order]
    picks: list[Pick] = []
    seen: set[int] = set()
    while queues and len(picks) < size:
        left = []
        for name, ids in queues:
            pid = next((p for p in ids if p not in seen), None)
            if pid is None or len(picks) == size:
                continue  # this strand is spent, or the round is full
            picks.append(Pick(pid, name))
            seen.add(pid)
            left.append((name, ids))
        queues = left
    return picks


def _spread(
    skip: set[int], tie: TieBreak, *, session: Session, threshold: float, days: int
) -> Strand:
    """Return the window's other papers: every topic's in turn, then those no topic took."""
    topic_ids = list(session.scalars(select(Topic.id)))
    strands = topic_strands(topic_ids, skip, tie, session=session, threshold=threshold, days=days)
    spread = [p.paper_id for p in in_turn(strands, FIRST_ROUND * 10)]
    rest = sorted((pid for pid in unmatched_ids(session=session, days=days) if pid not in skip),
                  key=tie)  # fmt: skip
    return Strand(SPREAD, tuple(spread + rest))


def _tie_break(subscriber_id: int, day: date) -> TieBreak:
    """Return paper id -> a key that orders equals the same way for one reader and day."""
    prefix = f"{subscriber_id}:{day.isoformat()}:".encode()
    return lambda paper_id: hashlib.sha256(prefix + str(paper_id).encode()).digest()[:8]


def sent_to(subscriber_id: int, since: date, *, session: Session) -> set[int]:
    """Return the papers a reader was sent in editions of listing dates from `since` on."""
    rows = session.scalars(
        select(Delivery.paper_ids)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.status == DeliveryStatus.SENT,
            Edition.listing_date >= since,
        )
    )
    return {pid for ids in rows for pid in ids or ()}


def voted_before(subscriber_id: int, day: date, *, session: Session) -> set[int]:
    """Return the papers a reader first voted on before a day began (UTC)."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return set(
        session.scalars(
            select(FeedbackVote.paper_id).where(
                FeedbackVote.subscriber_id == subscriber_id, FeedbackVote.created_at < start
            )
        )
    )


def load_round(picks: Sequence[Pick], *, session: Session) -> list[tuple[Pick, Paper]]:
    """Return each pick with its paper, in the picks' order."""
    ids = [p.paper_id for p in picks]
    papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(ids)))}
    return [(pick, papers[pick.paper_id]) for pick in picks if pick.paper_id in papers]
