"""A reader's own papers (seeds): what they count as, how many, and how they are stored.

A seed is the title and abstract of a paper a reader gave as their own (`subscribers edit
--seed-papers`, or a library file uploaded on the preferences page), with the arXiv id and
DOI it goes by. Seeds count as papers the reader liked, and are never sent back to them: a
paper of the day with a seed's arXiv id, DOI or title is left out of their digest. Turning
identifiers and files into seeds (the store, then arXiv's API) is `papers.seeds`' work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.core.errors import InputError, quoted
from newsletter.core.models import ReaderSeed

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


def replace_seeds(subscriber_id: int, seeds: Sequence[Seed], *, session: Session) -> int:
    """Make these (checked) seeds the reader's papers, in place of any before; return the
    count."""
    chosen = checked_seeds(seeds)
    clear_seeds(subscriber_id, session=session)
    session.add_all(ReaderSeed(subscriber_id=subscriber_id, **s.to_dict()) for s in chosen)
    session.flush()
    return len(chosen)


def clear_seeds(subscriber_id: int, *, session: Session) -> None:
    """Forget every paper the reader gave as their own."""
    session.execute(delete(ReaderSeed).where(ReaderSeed.subscriber_id == subscriber_id))


def seed_of(row: ReaderSeed) -> Seed:
    """Return a stored seed as a Seed."""
    return Seed(row.title, row.abstract or "", row.arxiv_id, row.doi)


def seeds_of(subscriber_ids: Sequence[int] | None, *, session: Session) -> dict[int, list[Seed]]:
    """Return the seeds of these readers (None: of everyone), in the order they were given."""
    columns = (ReaderSeed.title, ReaderSeed.abstract, ReaderSeed.arxiv_id, ReaderSeed.doi)
    query = select(ReaderSeed.subscriber_id, *columns).order_by(ReaderSeed.id)
    if subscriber_ids is not None:
        query = query.where(ReaderSeed.subscriber_id.in_(subscriber_ids))
    found: defaultdict[int, list[Seed]] = defaultdict(list)
    for sid, title, abstract, arxiv_id, doi in session.execute(query):
        found[sid].append(Seed(title, abstract or "", arxiv_id, doi))
    return dict(found)
