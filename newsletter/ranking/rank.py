"""Rank one reader's papers of an edition: the one place a digest's order is decided.

Papers by followed authors come first; papers with a muted word never come; personal
keywords match like one more topic. The papers close to the reader's interests (their
standing, by which they rank) alternate with the topics' ones: a standing and a keyword
score are not on one scale. With votes or own papers, today's order is blended with what they
liked, papers much like what they disliked drop out, and once they liked enough, a few papers
from outside their topics that closely resemble liked ones join, each naming the liked paper
it resembles. Without any of these, the order is today's: most upvoted, best matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter

from newsletter.matching.profiles import ReaderProfile, TextVectors, Vector, cosine
from newsletter.ranking.inputs import (
    Candidate,
    Candidates,
    EditionRules,
    Pick,
    Reason,
    Taste,
    Why,
    today_order,
)
from newsletter.ranking.weights import RankingWeights

ROUNDING = 1e-9  # two sums of the same products in another order differ by less
TOPIC = (Reason(Why.TOPIC),)
INTERESTS = Reason(Why.INTERESTS)


def rank(
    candidates: Candidates, reader: Taste, rules: EditionRules, weights: RankingWeights
) -> list[Pick]:
    """Return a reader's papers of the edition, best first, each with why it is there."""
    wanted = reader.topic_ids
    skip = reader.exclude | rules.muted
    inside = [c for c in candidates.of_topics(wanted, reader.exclude) if c.paper_id not in skip]
    # Beyond their topics: papers by keyword (naming it), then by interests.
    own: dict[Candidate, Reason] = _keyword_matches(candidates, rules, inside, skip)
    if own:
        inside = sorted([*inside, *own], key=lambda c: today_order(c, wanted))
    close = _close_to_interests(reader, weights)
    taken = {c.paper_id for c in inside} | skip
    near = [c for c in candidates.items if c.paper_id in close and c.paper_id not in taken]
    if near:
        own.update(dict.fromkeys(near, INTERESTS))
        ordered = sorted(near, key=lambda c: today_order(c, wanted, close))
        inside = _alternate(inside, ordered)
    likeness = _Likeness(reader, weights) if reader.profile is not None else None
    pinned = _followed(candidates, rules, skip, wanted)
    pinned_ids = {p.paper_id for p in pinned}
    picks = pinned + [
        Pick(c.paper_id, (own[c],) if c in own else TOPIC)
        for c in _blended(inside, likeness)
        if c.paper_id not in pinned_ids
    ]
    picks = picks[: max(reader.max_papers, len(pinned))]
    if likeness is not None:
        extras = _discoveries(candidates, inside, skip, likeness)
        if extras:
            picks = picks[: max(reader.max_papers - len(extras), len(pinned))] + extras
    return picks


def _keyword_matches(
    candidates: Candidates, rules: EditionRules, inside: list[Candidate], skip: frozenset[int]
) -> dict[Candidate, Reason]:
    """Return the papers a reader's own keywords match beyond their topics."""
    taken = {c.paper_id for c in inside} | skip
    found: dict[Candidate, Reason] = {}
    for keyword, matched in rules.keywords:
        for pid in sorted(matched):
            cand = candidates.by_id.get(pid)
            if pid not in taken and cand is not None and cand not in found:
                found[cand] = Reason(Why.KEYWORD, keyword)
    return found


def _close_to_interests(reader: Taste, weights: RankingWeights) -> dict[int, float]:
    """Return the papers that stand out against the reader's interests, with their standing."""
    if reader.interests is None or reader.standings is None:
        return {}
    return reader.standings.close(reader.interests, weights.interest_standing)


def _followed(
    candidates: Candidates, rules: EditionRules, skip: frozenset[int], wanted: frozenset[int]
) -> list[Pick]:
    """Return the papers by authors a reader follows, in today's order, naming the author."""
    found = rules.followed
    chosen = sorted(
        (candidates.by_id[pid] for pid in found if pid in candidates.by_id and pid not in skip),
        key=lambda c: today_order(c, wanted),
    )
    return [Pick(c.paper_id, (Reason(Why.FOLLOWED, found[c.paper_id]), *TOPIC)) for c in chosen]


def _blended(ranked: list[Candidate], likeness: _Likeness | None) -> list[Candidate]:
    """Blend today's order (`ranked`) with the reader's votes, dropping the unwanted."""
    if likeness is None:
        return ranked
    weights = likeness.weights
    scored = []
    for position, cand in enumerate(ranked):
        like, dislike = likeness(cand.paper_id)
        chance = likeness.chance_of_like(cand)
        if likeness.unwanted(like, dislike, chance):
            continue
        today = 1.0 - position / len(ranked)  # 1 for today's top paper
        personal = weights.votes_weight * (like - dislike) + weights.topic_weight * (chance - 0.5)
        scored.append((-(today + personal), position, cand))
    scored.sort(key=lambda item: item[:2])
    return [c for _, _, c in scored]


def _discoveries(
    candidates: Candidates, inside: list[Candidate], skip: frozenset[int], likeness: _Likeness
) -> list[Pick]:
    """Return up to `discoveries` papers from outside the reader's topics much like what
    they liked (their own papers count), each naming the liked paper it is most like."""
    profile, words, weights = likeness.profile, likeness.words, likeness.weights
    if profile.likes < weights.discovery_min_likes:
        return []
    meaning_cut = likeness.meaning_cut()
    taken = {c.paper_id for c in inside} | set(skip) | set(profile.liked_ids)
    # Most papers are far from every like: the likeness of all of them at once, through
    # an index of their words, rules those out before the exact pair of products.
    near = words.products(profile.liked, candidates.ids)
    found = []
    for cand in candidates.items:
        if cand.paper_id in taken or cand.paper_id in profile.disliked_ids:
            continue
        words_far = near.get(cand.paper_id, 0.0) < weights.discovery_similarity - ROUNDING
        meaning = likeness.meaning(cand.paper_id)
        by_meaning = meaning > 0 and meaning >= meaning_cut
        if words_far and not by_meaning:
            continue
        like, dislike = likeness(cand.paper_id)
        in_words, _ = profile.similarities(words.vector(cand.paper_id))
        close = in_words >= weights.discovery_similarity or by_meaning
        # Closer to a like than to any dislike: never unwanted.
        if close and like > dislike:
            found.append((like, cand))
    found.sort(key=lambda item: (-item[0], item[1].paper_id))
    return [
        Pick(cand.paper_id, (_closest_like(likeness, words.vector(cand.paper_id)),))
        for _, cand in found[: weights.discoveries]
    ]


def _closest_like(likeness: _Likeness, vector: Vector) -> Reason:
    """Name the liked paper, or the reader's own, most like a vector."""
    profile, words = likeness.profile, likeness.words
    scored = [
        (cosine(words.vector(p), vector), p, likeness.titles.get(p, ""), Why.LIKED)
        for p in profile.liked_ids
    ]
    scored += [
        (cosine(seed, vector), 0, title, Why.OWN_PAPER)
        for seed, title in zip(profile.seed_vectors, profile.seed_titles, strict=True)
    ]
    if not scored:
        return Reason(Why.LIKED)
    _, _, title, kind = max(scored, key=itemgetter(0, 1))
    return Reason(kind, title)


class _Likeness:
    """A reader's likeness to each paper, worked out once per ranking."""

    def __init__(self, reader: Taste, weights: RankingWeights) -> None:
        assert reader.profile is not None and reader.words is not None, "a profile has words"
        self.profile: ReaderProfile = reader.profile
        self.words: TextVectors = reader.words
        self.titles: Mapping[int, str] = reader.titles
        self.weights = weights
        self._reader = reader
        self._seen: dict[int, tuple[float, float]] = {}
        self._judge_topics = self.profile.votes >= weights.min_votes_to_drop

    def meaning(self, paper_id: int) -> float:
        """Return a paper's cosine in meaning to the reader's own papers (0 without)."""
        return self._reader.meaning.get(paper_id, 0.0)

    def meaning_cut(self) -> float:
        """Return the cosine to the reader's own papers from which a paper joins by meaning:
        where it stands `own_papers_standing` out among the recent listings, as nearness to
        interests is judged; `meaning_discovery_similarity` where that cannot be judged."""
        standings = self._reader.standings
        if self.profile.meaning is not None and standings is not None:
            cut = standings.similarity_at(self.profile.meaning, self.weights.own_papers_standing)
            if cut is not None:
                return cut
        return self.weights.meaning_discovery_similarity

    def chance_of_like(self, cand: Candidate) -> float:
        """Return the chance of a like from the paper's topics (0.5 on too few votes)."""
        if not self._judge_topics:
            return 0.5
        return self.profile.topics.chance_of_like(cand.scores)

    def unwanted(self, like: float, dislike: float, chance: float) -> bool:
        """Say whether a paper is so like what the reader disliked that it should go."""
        if like > dislike:
            return False
        return dislike >= self.weights.drop_similarity or chance < self.weights.drop_chance

    def __call__(self, paper_id: int) -> tuple[float, float]:
        """Return (like, dislike) likeness of a paper to the reader: a like in words, or in
        meaning to their own papers, whichever is closer."""
        found = self._seen.get(paper_id)
        if found is None:
            like, dislike = self.profile.similarities(self.words.vector(paper_id))
            found = self._seen[paper_id] = (max(like, self.meaning(paper_id)), dislike)
        return found


def _alternate(first: list[Candidate], second: list[Candidate]) -> list[Candidate]:
    """Take from two rankings in turn, the first's best first, until both are spent."""
    merged = [c for pair in zip(first, second, strict=False) for c in pair]
    shorter = min(len(first), len(second))
    return merged + first[shorter:] + second[shorter:]
