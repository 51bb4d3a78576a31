"""How much each of a reader's signals weighs in their ranking: the `ranking_*` settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from newsletter.core.config import Settings, default

PREFIX = "ranking_"


@dataclass(frozen=True)
class RankingWeights:
    """The ranking settings without their prefix (see each setting's help)."""

    votes_weight: float = default("ranking_votes_weight")
    topic_weight: float = default("ranking_topic_weight")
    drop_similarity: float = default("ranking_drop_similarity")
    drop_chance: float = default("ranking_drop_chance")
    min_votes_to_drop: int = default("ranking_min_votes_to_drop")
    discoveries: int = default("ranking_discoveries")
    discovery_min_likes: int = default("ranking_discovery_min_likes")
    discovery_similarity: float = default("ranking_discovery_similarity")
    own_papers_standing: float = default("ranking_own_papers_standing")
    meaning_discovery_similarity: float = default("ranking_meaning_discovery_similarity")
    interest_standing: float = default("ranking_interest_standing")

    @classmethod
    def from_settings(cls, settings: Settings) -> RankingWeights:
        """Read the `ranking_*` settings."""
        return cls(**{f.name: getattr(settings, PREFIX + f.name) for f in dataclasses.fields(cls)})
