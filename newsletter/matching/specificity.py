"""How much a keyword says, from the share of recent papers that mention it.

A keyword found in most of a listing ("learning" among machine-learning papers) says little
about any one paper; the same word in an education-research listing names a subject. As
BM25's idf does, a keyword's weight falls with its document frequency over the papers the
store has seen lately. With few papers the hand-written generic word lists act as a prior:
they count as PRIOR_PAPERS papers, in GENERIC_PRIOR_SHARE of which a listed word appears.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

SPECIFIC_SHARE = 0.2  # a keyword in at most this share of the papers is fully specific
COMMON_SHARE = 0.6  # ... and in this share or more, as weak as a generic word
COMMON_FACTOR = 0.4  # the weight left to a keyword found in COMMON_SHARE of the papers
PRIOR_PAPERS = 10  # how many papers the word lists are worth
GENERIC_PRIOR_SHARE = COMMON_SHARE  # a listed generic word is assumed common
SPECIFIC_PRIOR_SHARE = 0.02  # any other keyword, in few of them
WARN_COMMON_SHARE = 0.3  # `topics check` warns about keywords in this share of papers or more


@dataclass(frozen=True)
class DocumentFrequencies:
    """How many recent papers there are and in how many each keyword (by key) was found."""

    papers: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)

    def share(self, key: str, *, generic: bool) -> float:
        """Return the share of papers that mention a keyword, smoothed by the word lists."""
        prior = GENERIC_PRIOR_SHARE if generic else SPECIFIC_PRIOR_SHARE
        found = self.counts.get(key, 0)
        return (found + PRIOR_PAPERS * prior) / (self.papers + PRIOR_PAPERS)

    def factor(self, key: str, *, generic: bool) -> float:
        """Return the weight a keyword keeps given how common it is: 1.0 down to COMMON_FACTOR."""
        return factor_for_share(self.share(key, generic=generic))


NO_PAPERS = DocumentFrequencies()


def factor_for_share(share: float) -> float:
    """Map a document share to a weight, log-linearly between the specific and common shares."""
    if share <= SPECIFIC_SHARE:
        return 1.0
    if share >= COMMON_SHARE:
        return COMMON_FACTOR
    place = math.log(share / SPECIFIC_SHARE) / math.log(COMMON_SHARE / SPECIFIC_SHARE)
    return 1.0 - (1.0 - COMMON_FACTOR) * place
