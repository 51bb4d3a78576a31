"""Readers' profiles in the sentence model's space, stored and kept up to date as they vote.

A reader's stored profile holds the unit direction of the mean sentence vector of the papers
they liked (their own papers count as likes), of those they disliked, and of their own papers
alone, with how many vectors each holds and the model that made them (`StoredProfile`). It is
worked out from their votes of the last PROFILE_DAYS and their own papers, and written in the
transaction that records, replaces or undoes a vote or sets or clears their own papers (one
reader's votes are read again then: exact, whatever came before). A vote on a paper without a
vector counts in no direction. `rebuild_profiles` writes the missing ones and those of another
model (after an upgrade, a restore or a new model). The send reads the direction of readers'
own papers from here, one query a batch, and works out the few missing ones as a rebuild
would; the words and topics of what a reader voted on need the edition's papers and are still
worked out at each send (`profiles`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, union
from sqlalchemy.orm import Session

from newsletter.core.app import App
from newsletter.core.db import dialect_insert
from newsletter.core.models import (
    FeedbackVote,
    PaperEmbedding,
    ReaderSeed,
    StoredProfile,
    Subscriber,
    utcnow,
)
from newsletter.matching.embeddings import MODEL_ID, from_bytes, to_bytes

# Votes older than this are forgotten: interests drift, and what a profile reads stays bounded
# (the papers voted on in half a year, not since the list began).
PROFILE_DAYS = 180
READERS_PER_QUERY = 500  # bounds the IN lists, and a rebuild's transactions
_COLUMNS = ("model", "liked", "disliked", "own", "likes", "dislikes", "seeds")


@dataclass(frozen=True)
class ProfileVectors:
    """A reader's profile in the sentence model's space, as stored (see `StoredProfile`)."""

    model: str
    liked: bytes | None
    disliked: bytes | None
    own: bytes | None
    likes: int
    dislikes: int
    seeds: int

    def own_direction(self) -> Any:
        """Return the unit direction of the reader's own papers as a float32 row, or None."""
        return None if self.own is None else from_bytes([self.own])[0]

    def to_dict(self) -> dict[str, Any]:
        """Return the columns of its row."""
        return {name: getattr(self, name) for name in _COLUMNS}


def mean_direction(blobs: Sequence[bytes]) -> Any:
    """Return the unit mean of stored sentence vectors as float32, or None for none (or a
    mean of zero)."""
    if not blobs:
        return None
    mean = from_bytes(list(blobs)).mean(axis=0)
    norm = float((mean @ mean) ** 0.5)
    return mean / norm if norm > 0 else None


def _stored(blobs: Sequence[bytes]) -> bytes | None:
    direction = mean_direction(blobs)
    return None if direction is None else next(iter(to_bytes(direction[None, :])))


def compute_profiles(
    subscriber_ids: Iterable[int], *, session: Session, now: datetime | None = None
) -> dict[int, ProfileVectors]:
    """Work out the profiles of these readers from their votes and own papers (readers with
    neither have none)."""
    since = (now or utcnow()) - timedelta(days=PROFILE_DAYS)
    ids = sorted(set(subscriber_ids))
    found: dict[int, ProfileVectors] = {}
    for start in range(0, len(ids), READERS_PER_QUERY):
        chunk = ids[start : start + READERS_PER_QUERY]
        votes, seeds = (
            _votes_with_vectors(chunk, since, session=session),
            _seed_vectors(chunk, session=session),
        )
        for sid in votes.keys() | seeds.keys():
            liked = [blob for vote, blob in votes.get(sid, ()) if vote > 0 and blob is not None]
            disliked = [blob for vote, blob in votes.get(sid, ()) if vote < 0 and blob is not None]
            own = seeds.get(sid, [])
            found[sid] = ProfileVectors(
                MODEL_ID, _stored(liked + own), _stored(disliked), _stored(own),
                len(liked) + len(own), len(disliked), len(own),
            )  # fmt: skip
    return found


def _votes_with_vectors(
    subscriber_ids: Sequence[int], since: datetime, *, session: Session
) -> dict[int, list[tuple[int, bytes | None]]]:
    """Return each reader's (vote, the paper's vector or None) of the window, as cast."""
    query = (
        select(FeedbackVote.subscriber_id, FeedbackVote.vote, PaperEmbedding.vector)
        .outerjoin(
            PaperEmbedding,
            (PaperEmbedding.paper_id == FeedbackVote.paper_id) & (PaperEmbedding.model == MODEL_ID),
        )
        .where(FeedbackVote.subscriber_id.in_(subscriber_ids), FeedbackVote.updated_at >= since)
        .order_by(FeedbackVote.id)
    )
    found: defaultdict[int, list[tuple[int, bytes | None]]] = defaultdict(list)
    for sid, vote, blob in session.execute(query):
        found[sid].append((vote, bytes(blob) if blob is not None else None))
    return dict(found)


def _seed_vectors(subscriber_ids: Sequence[int], *, session: Session) -> dict[int, list[bytes]]:
    """Return each reader's own papers: their vectors of the current model, in order given.

    A reader whose own papers have no such vector is there with none.
    """
    query = (
        select(ReaderSeed.subscriber_id, ReaderSeed.model, ReaderSeed.vector)
        .where(ReaderSeed.subscriber_id.in_(subscriber_ids))
        .order_by(ReaderSeed.id)
    )
    found: defaultdict[int, list[bytes]] = defaultdict(list)
    for sid, model, blob in session.execute(query):
        vectors = found[sid]  # a reader with own papers, whatever their vectors
        if model == MODEL_ID and blob is not None:
            vectors.append(bytes(blob))
    return dict(found)


def store_profiles(
    subscriber_ids: Iterable[int], *, session: Session, now: datetime | None = None
) -> int:
    """Write these readers' profiles afresh (none for a reader with neither votes nor own
    papers); return how many are stored."""
    ids = sorted(set(subscriber_ids))
    profiles = compute_profiles(ids, session=session, now=now)
    gone = [sid for sid in ids if sid not in profiles]
    for start in range(0, len(gone), READERS_PER_QUERY):
        chunk = gone[start : start + READERS_PER_QUERY]
        session.execute(delete(StoredProfile).where(StoredProfile.subscriber_id.in_(chunk)))
    rows = [{"subscriber_id": sid, **p.to_dict()} for sid, p in sorted(profiles.items())]
    for start in range(0, len(rows), READERS_PER_QUERY):
        insert = dialect_insert(session, StoredProfile).values(
            rows[start : start + READERS_PER_QUERY]
        )
        changed = {name: insert.excluded[name] for name in _COLUMNS}
        session.execute(
            insert.on_conflict_do_update(
                index_elements=["subscriber_id"], set_={**changed, "updated_at": func.now()}
            )
        )
    return len(rows)


def update_profile(subscriber_id: int, *, session: Session, now: datetime | None = None) -> None:
    """Write one reader's profile afresh, after their votes or own papers changed.

    Their row is locked first: two votes of one reader at once write one after the other, the
    later seeing the earlier.
    """
    session.execute(select(Subscriber.id).where(Subscriber.id == subscriber_id).with_for_update())
    session.flush()
    store_profiles([subscriber_id], session=session, now=now)


def stored_profiles(
    subscriber_ids: Iterable[int], *, session: Session
) -> dict[int, ProfileVectors]:
    """Return the stored profiles of these readers that the current model made."""
    ids = sorted(set(subscriber_ids))
    found: dict[int, ProfileVectors] = {}
    columns = [StoredProfile.__table__.c[name] for name in _COLUMNS]
    for start in range(0, len(ids), READERS_PER_QUERY):
        query = select(StoredProfile.subscriber_id, *columns).where(
            StoredProfile.subscriber_id.in_(ids[start : start + READERS_PER_QUERY]),
            StoredProfile.model == MODEL_ID,
        )
        for sid, *values in session.execute(query):
            found[sid] = ProfileVectors(*values)
    return found


def own_directions(subscriber_ids: Iterable[int], *, session: Session) -> dict[int, Any]:
    """Return the direction of each of these readers' own papers (readers who have some),
    as stored; one missing or of another model is worked out as a rebuild would."""
    ids = set(subscriber_ids)
    found = stored_profiles(ids, session=session)
    missing = ids - found.keys()
    if missing:
        found |= compute_profiles(missing, session=session)
    directions = {sid: p.own_direction() for sid, p in found.items()}
    return {sid: d for sid, d in directions.items() if d is not None}


def _readers_with_signals() -> Any:
    """Return the query of readers who voted within the window or gave their own papers."""
    since = utcnow() - timedelta(days=PROFILE_DAYS)
    return union(
        select(FeedbackVote.subscriber_id.label("sid")).where(FeedbackVote.updated_at >= since),
        select(ReaderSeed.subscriber_id.label("sid")),
    )


@dataclass(frozen=True)
class ProfileCounts:
    """How readers' stored profiles stand: readers with votes or own papers, and of them
    those whose profile is stored for the current model, missing or of another model."""

    model: str
    readers: int
    current: int
    missing: int
    other_model: int
    rebuilt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "readers": self.readers, "current": self.current,
            "missing": self.missing, "other_model": self.other_model, "rebuilt": self.rebuilt,
        }  # fmt: skip


def _stale(*, session: Session) -> tuple[list[int], ProfileCounts]:
    """Return the readers whose profile is missing or of another model, and the counts."""
    readers = _readers_with_signals().subquery("readers")
    rows = session.execute(
        select(readers.c.sid, StoredProfile.model).outerjoin(
            StoredProfile, StoredProfile.subscriber_id == readers.c.sid
        )
    ).all()
    missing = [sid for sid, model in rows if model is None]
    other = [sid for sid, model in rows if model is not None and model != MODEL_ID]
    counts = ProfileCounts(MODEL_ID, len(rows), len(rows) - len(missing) - len(other),
                           len(missing), len(other))  # fmt: skip
    return sorted(missing + other), counts


def profile_counts(*, session: Session) -> ProfileCounts:
    """Return how readers' stored profiles stand."""
    return _stale(session=session)[1]


def rebuild_profiles(
    app: App,
    *,
    on_each: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ProfileCounts:
    """Write the missing profiles and those of another model from the votes and own papers,
    READERS_PER_QUERY readers a transaction; `on_start` hears how many, `on_each` each batch
    done. Return the counts as they were, with how many were rebuilt."""
    with app.reading() as session:
        stale, counts = _stale(session=session)
    if on_start is not None:
        on_start(len(stale))
    for start in range(0, len(stale), READERS_PER_QUERY):
        chunk = stale[start : start + READERS_PER_QUERY]
        with app.transaction() as session:
            store_profiles(chunk, session=session)
        if on_each is not None:
            on_each(len(chunk))
    return ProfileCounts(counts.model, counts.readers, counts.current, counts.missing,
                         counts.other_model, rebuilt=len(stale))  # fmt: skip
