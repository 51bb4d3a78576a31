"""Topic matching: decide, with a score and evidence, which papers belong to which topic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class MatchStats:
    papers: int
    topics: int
    matches: int


def match_papers(
    *, session: Session, paper_ids: Iterable[int] | None = None, threshold: float = 1.0
) -> MatchStats:
    """(Re)compute PaperTopic rows for the given papers (all papers when None) against all topics.

    Replaces the existing PaperTopic rows of those papers; does not commit.
    """
    raise NotImplementedError
