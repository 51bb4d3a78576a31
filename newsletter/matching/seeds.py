"""A reader's own papers (seeds): what they count as, how many, and how they are stored.

A seed is the title and abstract of a paper a reader gave as their own (`subscribers edit
--seed-papers`, or a library file uploaded on the preferences page), with the arXiv id and
DOI it goes by. Seeds count as papers the reader liked, and are never sent back to them: a
paper of the day with a seed's arXiv id, DOI or title is left out of their digest. Each
seed keeps its sentence vector, made once when it is given (as papers' are when they are
stored), so that papers close to it in meaning rank as close to what the reader likes.
Turning identifiers and files into seeds (the store, then arXiv's API) is `papers.seeds`'
work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import delete, null, select
from sqlalchemy.orm import Session

from newsletter.core.errors import InputError, quoted
from newsletter.core.models import ReaderSeed
from newsletter.matching.embeddings import (
    MODEL_ID,
    EmbeddingsUnavailable,
    load_encoder,
    paper_text,
    to_bytes,
)
from newsletter.matching.stored_profiles import update_profile

MAX_SEEDS = 200  # a reader's own papers, not a whole library: the profile reads them all
TITLE_MAX = 500
ABSTRACT_MAX = 5000  # as long as the longest abstract a source gives


@dataclass(frozen=True)
class Seed:
    """One of a reader's papers, as stored: its text and the identifiers it goes by."""

    title: str
    abstract: str = ""
    arxiv_id: str | None = None  # without version
    doi: str | None = None  # lowercase
    vector: bytes | None = field(default=None, compare=False, repr=False)  # see embedded

    def key(self) -> str:
        """Return what makes two seeds the same paper: an identifier, else the title."""
        return self.arxiv_id or self.doi or " ".join(self.title.casefold().split())

    def to_dict(self) -> dict[str, str | None]:
        """Return the seed as JSON-ready data (and the columns of its row)."""
        return {
            "arxiv_id": self.arxiv_id,
            "doi": self.doi,
            "title": self.title,
            "abstract": self.abstract,
        }

    def as_row(self, **columns: int) -> ReaderSeed:
        """Return the seed as a row to store, with its vector and the model that made it."""
        model = MODEL_ID if self.vector is not None else None
        return ReaderSeed(model=model, vector=self.vector, **self.to_dict(), **columns)


def checked_seeds(seeds: Iterable[Seed]) -> list[Seed]:
    """Return the seeds without repeats, or raise InputError on too many or an empty title."""
    unique = list({seed.key(): seed for seed in reversed(list(seeds))}.values())[::-1]
    if len(unique) > MAX_SEEDS:
        raise InputError(f"at most {MAX_SEEDS} papers of one's own, got {len(unique)}")
    for seed in unique:
        if not seed.title.strip():
            raise InputError(f"paper {quoted(seed.key())} has no title")
        if len(seed.title) > TITLE_MAX or len(seed.abstract) > ABSTRACT_MAX:
            raise InputError(f"paper {quoted(seed.title, 60)} has a title or abstract too long")
    return unique


def embedded(seeds: Sequence[Seed], *, enabled: bool) -> list[Seed]:
    """Return the seeds with their sentence vectors (about 35 ms of CPU each), when the
    sentence model is on (`match_neighbours`) and loads; else as they are."""
    if not enabled or not seeds:
        return list(seeds)
    try:
        encoder = load_encoder()
    except EmbeddingsUnavailable:
        return list(seeds)  # words alone, as papers are matched here
    rows = to_bytes(encoder.embed([paper_text(s.title, s.abstract) for s in seeds]))
    return [replace(s, vector=blob) for s, blob in zip(seeds, rows, strict=True)]


def replace_seeds(subscriber_id: int, seeds: Sequence[Seed], *, session: Session) -> int:
    """Make these (checked) seeds the reader's papers, in place of any before; return the
    count."""
    chosen = checked_seeds(seeds)
    _delete_seeds(subscriber_id, session=session)
    session.add_all(s.as_row(subscriber_id=subscriber_id) for s in chosen)
    session.flush()
    update_profile(subscriber_id, session=session)
    return len(chosen)


def clear_seeds(subscriber_id: int, *, session: Session) -> None:
    """Forget every paper the reader gave as their own."""
    _delete_seeds(subscriber_id, session=session)
    update_profile(subscriber_id, session=session)


def _delete_seeds(subscriber_id: int, *, session: Session) -> None:
    session.execute(delete(ReaderSeed).where(ReaderSeed.subscriber_id == subscriber_id))


def seed_of(row: ReaderSeed) -> Seed:
    """Return a stored seed as a Seed."""
    return Seed(row.title, row.abstract or "", row.arxiv_id, row.doi)


def seeds_of(
    subscriber_ids: Sequence[int] | None, *, session: Session, with_vectors: bool = True
) -> dict[int, list[Seed]]:
    """Return the seeds of these readers (None: of everyone), in the order they were given;
    without their vectors unless `with_vectors` (a send reads their mean's direction from the
    readers' stored profiles)."""
    columns = (ReaderSeed.title, ReaderSeed.abstract, ReaderSeed.arxiv_id, ReaderSeed.doi)
    vectors = (ReaderSeed.model, ReaderSeed.vector) if with_vectors else (null(), null())
    query = select(ReaderSeed.subscriber_id, *columns, *vectors)
    if subscriber_ids is not None:
        query = query.where(ReaderSeed.subscriber_id.in_(subscriber_ids))
    found: defaultdict[int, list[Seed]] = defaultdict(list)
    rows = session.execute(query.order_by(ReaderSeed.id))
    for sid, title, abstract, arxiv_id, doi, model, vector in rows:
        kept = vector if model == MODEL_ID else None  # another model's is not comparable
        found[sid].append(Seed(title, abstract or "", arxiv_id, doi, kept))
    return dict(found)


def anyone_has_vectors(*, session: Session) -> bool:
    """Tell whether any reader's own paper has a sentence vector of the current model."""
    query = select(ReaderSeed.id).where(ReaderSeed.model == MODEL_ID).limit(1)
    return session.scalar(query) is not None
