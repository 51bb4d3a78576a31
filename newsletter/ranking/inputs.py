"""What ranking reads (an edition's candidates, a reader's taste and rules) and answers (picks)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from newsletter.matching.interests import InterestStandings
from newsletter.matching.personal import EditionText, ReaderRules
from newsletter.matching.profiles import ReaderProfile, TextVectors

ORDERS_KEPT = 4096  # orders of topic sets remembered per edition: memory flat in readers


@dataclass(eq=False)  # compared by identity: one object per paper of the edition
class Candidate:
    """A paper of the edition as ranking reads it."""

    paper_id: int
    title: str
    upvotes: int | None
    scores: dict[int, float] = field(default_factory=dict)  # topic id -> match score


def today_order(
    cand: Candidate, wanted: Iterable[int], close: Mapping[int, float] | None = None
) -> tuple[int, float, str]:
    """Most upvoted first (the day's trend), then the strongest topic match (or standing
    against the reader's interests, `close`), then title."""
    best = max((s for t, s in cand.scores.items() if t in wanted), default=0.0)
    if close:
        best = max(best, close.get(cand.paper_id, 0.0))
    return (-(cand.upvotes or 0), -best, cand.title)


class Candidates:
    """An edition's papers; the order of each set of topics' papers is worked out once."""

    def __init__(self, items: Iterable[Candidate]) -> None:
        self.items = list(items)
        self.by_id = {c.paper_id: c for c in self.items}
        self.ids = frozenset(self.by_id)
        self.by_topic: dict[int, list[Candidate]] = defaultdict(list)
        for cand in self.items:
            for topic_id in cand.scores:
                self.by_topic[topic_id].append(cand)
        self._orders: dict[tuple[tuple[int, ...], frozenset[int]], list[Candidate]] = {}

    def of_topics(self, wanted: Iterable[int], exclude: frozenset[int]) -> list[Candidate]:
        """Return the papers of any of these topics, but the excluded, in today's order.

        Shared by the readers of the same topics: read it, never change it.
        """
        key = (tuple(sorted(set(wanted))), exclude)
        found = self._orders.get(key)
        if found is None:
            chosen: dict[int, Candidate] = {}
            for topic_id in key[0]:
                for cand in self.by_topic.get(topic_id, ()):
                    if cand.paper_id not in exclude:
                        chosen[cand.paper_id] = cand
            found = sorted(chosen.values(), key=lambda c: today_order(c, key[0]))
            if len(self._orders) >= ORDERS_KEPT:
                del self._orders[next(iter(self._orders))]
            self._orders[key] = found
        return found


@dataclass(frozen=True)
class Taste:
    """What one reader wants, as far as ranking can tell, against one edition.

    `profile` is what their votes and own papers say (None: neither), `words` the edition's
    papers and the voted ones as tf-idf vectors, and `titles` the voted papers' titles (for
    "because you liked"). `meaning` holds each paper's cosine in meaning to their own papers,
    `interests` their interests' unit vector, and `standings` the edition's papers against the
    recent window, by which both are judged.
    """

    topic_ids: frozenset[int]
    max_papers: int
    exclude: frozenset[int] = frozenset()  # received already, or their own papers
    profile: ReaderProfile | None = None
    words: TextVectors | None = None  # set with a profile
    titles: Mapping[int, str] = field(default_factory=dict)
    meaning: Mapping[int, float] = field(default_factory=dict)
    interests: Any = None
    standings: InterestStandings | None = None


@dataclass(frozen=True)
class EditionRules:
    """A reader's own rules as they fall on one edition's papers."""

    followed: Mapping[int, str] = field(default_factory=dict)  # paper -> the author, as spelled
    muted: frozenset[int] = frozenset()
    keywords: Sequence[tuple[str, frozenset[int]]] = ()  # each keyword and what it matches


NO_RULES = EditionRules()


def rules_on(rules: ReaderRules | None, edition: EditionText | None) -> EditionRules:
    """Return where a reader's rules fall among an edition's papers (`edition`: their text)."""
    if not rules or edition is None:
        return NO_RULES
    muted: frozenset[int] = frozenset().union(*map(edition.mentioning, rules.muted_words))
    return EditionRules(
        edition.by_followed(rules.follow_authors) if rules.follow_authors else {},
        muted,
        tuple((k, edition.matching(k)) for k in rules.personal_keywords),
    )


class Why(StrEnum):
    """Kinds of reason a paper is in a reader's digest."""

    TOPIC = "topic"  # it matched one of their topics
    FOLLOWED = "followed"  # by an author they follow (detail: the name)
    KEYWORD = "keyword"  # one of their own keywords (detail: the keyword)
    INTERESTS = "interests"  # close to their interests in their own words
    LIKED = "liked"  # like a paper they liked (detail: its title, or "")
    OWN_PAPER = "own paper"  # like one of their own papers (detail: its title)


@dataclass(frozen=True)
class Reason:
    """Why a paper is there, with what names it (an author, a keyword, a title)."""

    kind: Why
    detail: str = ""


@dataclass(frozen=True)
class Pick:
    """A paper of a reader's digest and why it is there, the first reason the main one."""

    paper_id: int
    reasons: tuple[Reason, ...]

    @property
    def discovery(self) -> bool:
        """Tell whether the paper came from outside the reader's topics for its likeness."""
        return self.reasons[0].kind in (Why.LIKED, Why.OWN_PAPER)
