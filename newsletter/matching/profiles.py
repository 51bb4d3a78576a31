"""What a reader's votes say they want: what the papers they liked and disliked were about.

Two views of the same votes. The words: a paper is a sparse tf-idf vector of the stemmed
words of its title and abstract (the title counted twice), cut to its strongest terms, and a
reader's profile holds the normalised centroid of the papers they liked and another of those
they disliked (Rocchio's relevance feedback, as arxiv-sanity ranks by similarity to a reader's
tagged papers). The topics: each voted paper carries the topics the matcher gave it, and a
naive Bayes over those (which topics come with a like, which with a dislike) gives the chance
that the reader likes a new paper from its topics, so a reader who keeps saying "less like
this" to one of their topics sees that topic's papers sink and, when sure, go. Both are counts
and sums over the votes: building a profile is one pass over them, once per reader and
edition, from the votes as they are when the edition is composed. A reader's own papers
(`matching.seeds`) count as papers they liked in the centroid of words, and by meaning: a
paper's likeness to them is the larger of its words' and its sentence vector's cosine to
theirs (the direction of their mean, where the model is on, as their stored profile holds it:
`matching.stored_profiles`). They are no paper of the store, so they have no
topics and say nothing about them. Beside the votes come the reader's rules and their
interests in their own words, as stored (see `matching.interests`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import repeat
from operator import itemgetter, mul
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from newsletter.core.models import (
    FeedbackVote,
    Paper,
    PaperEmbedding,
    PaperTopic,
    ReaderSeed,
    Subscriber,
    utcnow,
)
from newsletter.matching.embeddings import MODEL_ID, from_bytes
from newsletter.matching.personal import EditionText, ReaderRules, clean_rules
from newsletter.matching.seeds import Seed, anyone_has_vectors, seeds_of
from newsletter.matching.stored_profiles import PROFILE_DAYS, own_directions
from newsletter.matching.text import STEMS_KEPT, STOPWORDS, PaperText, stem

PAPER_TERMS = 40  # the strongest terms kept per paper: enough to compare, cheap to score
PROFILE_TERMS = 150
PROFILES_KEPT = 1024  # profiles cached per edition: each row asks once; memory stays flat
TOPIC_PRIOR_VOTES = 2.0  # each side's topic shares start as this many votes of the overall share
VOTERS_PER_QUERY = 5000  # bounds the IN list of a batch's readers
_WORD = re.compile(r"[a-z][a-z0-9]+")

Vector = dict[str, float]


@lru_cache(maxsize=STEMS_KEPT)
def _term(word: str) -> str:
    """Return the term a word counts as, or "" for one that counts as none."""
    return stem(word) if word not in STOPWORDS and len(word) > 2 else ""


def _terms(title: str, abstract: str) -> Counter[str]:
    # Every word through one remembered lookup, counted at C speed: a send reads each
    # reader's own papers afresh.
    counts = Counter(map(_term, _WORD.findall(f"{title} {title} {abstract}".lower())))
    counts.pop("", None)
    return counts


def _normalised(weights: Mapping[str, float], keep: int) -> Vector:
    top = sorted(weights.items(), key=itemgetter(1), reverse=True)[:keep]
    values = [w for _, w in top]
    norm = math.sqrt(sum(map(mul, values, values))) or 1.0  # the same sum, at C speed
    return {term: w / norm for term, w in top}


def cosine(a: Vector, b: Vector) -> float:
    """Return the dot product of two normalised sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    # The products summed in a's order, as a generator would, at C speed: the sender scores
    # every paper of an edition against every voter's profile.
    return sum(map(mul, a.values(), map(b.get, a.keys(), repeat(0.0))))


class TextVectors:
    """Tf-idf vectors of a set of papers, with document frequencies taken from that set."""

    def __init__(self, texts: Mapping[int, tuple[str, str]]) -> None:
        self._counts = {pid: _terms(title, abstract) for pid, (title, abstract) in texts.items()}
        df: Counter[str] = Counter()
        for counts in self._counts.values():
            df.update(counts.keys())
        n = len(self._counts)
        self._idf = {t: math.log((n + 1) / (d + 1)) + 1.0 for t, d in df.items()}
        self._vectors: dict[int, Vector] = {}
        self._postings: dict[str, list[tuple[int, float]]] = {}
        self._postings_of: frozenset[int] | None = None

    def vector(self, paper_id: int) -> Vector:
        """Return a paper's normalised tf-idf vector (empty for an unknown paper)."""
        vec = self._vectors.get(paper_id)
        if vec is None:
            vec = self._vectors[paper_id] = self._weighted(self._counts.get(paper_id, Counter()))
        return vec

    def text_vector(self, title: str, abstract: str) -> Vector:
        """Return the vector of a text outside the set (a reader's own paper) on the set's
        idf, made of the words it shares with the set: the others can match no paper of it,
        and would only dilute the ones that do."""
        counts = _terms(title, abstract)
        return self._weighted({t: c for t, c in counts.items() if t in self._idf})

    def _weighted(self, counts: Mapping[str, int]) -> Vector:
        weights = {t: (1 + math.log(c)) * self._idf[t] for t, c in counts.items()}
        return _normalised(weights, PAPER_TERMS)

    def products(self, vector: Vector, paper_ids: Iterable[int]) -> dict[int, float]:
        """Return the dot product of a vector with each of these papers' vectors, at once.

        Summed term by term through an index of the papers' terms (built once per set of
        papers), so in another order than `cosine`: equal to it up to rounding.
        """
        key = frozenset(paper_ids)
        if self._postings_of != key:
            postings: defaultdict[str, list[tuple[int, float]]] = defaultdict(list)
            for pid in key:
                for term, weight in self.vector(pid).items():
                    postings[term].append((pid, weight))
            self._postings, self._postings_of = dict(postings), key
        found: defaultdict[int, float] = defaultdict(float)
        for term, weight in vector.items():
            for pid, paper_weight in self._postings.get(term, ()):
                found[pid] += weight * paper_weight
        return found


@dataclass(frozen=True)
class TopicLean:
    """Which topics came with a reader's likes and which with their dislikes (naive Bayes).

    `present` and `absent` hold, per topic seen in the votes, the log-likelihood ratio of
    like against dislike when a paper has that topic and when it does not. Each side's share
    of a topic is smoothed toward the topic's share of all the votes, so a topic says nothing
    until likes and dislikes differ on it: with no likes yet, nothing can be told apart. The
    share of likes among all votes (the prior) is left out on purpose: a reader who has said
    "less like this" more often than not must not lose papers for that alone.
    """

    present: Mapping[int, float]
    absent: Mapping[int, float]

    @classmethod
    def from_votes(cls, votes: Iterable[tuple[Iterable[int], bool]]) -> TopicLean:
        """Count each voted paper's topics on the side of its vote."""
        liked: Counter[int] = Counter()
        disliked: Counter[int] = Counter()
        likes = dislikes = 0
        for topics, is_like in votes:
            if is_like:
                likes += 1
                liked.update(set(topics))
            else:
                dislikes += 1
                disliked.update(set(topics))
        a = TOPIC_PRIOR_VOTES
        present, absent = {}, {}
        for topic in liked.keys() | disliked.keys():
            overall = (liked[topic] + disliked[topic] + 1) / (likes + dislikes + 2)
            p_like = (liked[topic] + a * overall) / (likes + a)
            p_dislike = (disliked[topic] + a * overall) / (dislikes + a)
            present[topic] = math.log(p_like / p_dislike)
            absent[topic] = math.log((1 - p_like) / (1 - p_dislike))
        return cls(present, absent)

    def chance_of_like(self, topics: Iterable[int]) -> float:
        """Return the chance of a like from a paper's topics alone, 0.5 when they say nothing."""
        have = set(topics)
        odds = sum(self.present[t] if t in have else self.absent[t] for t in self.present)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, odds))))


@dataclass(frozen=True)
class ReaderProfile:
    """The centroids of a reader's liked and disliked papers, and their lean by topic.

    `liked` holds their own papers (seeds) too: `seed_titles` and `seed_vectors` are theirs.
    """

    liked: Vector
    disliked: Vector
    liked_ids: tuple[int, ...]
    disliked_ids: tuple[int, ...]
    topics: TopicLean = TopicLean({}, {})
    seed_titles: tuple[str, ...] = ()
    seed_vectors: tuple[Vector, ...] = ()
    meaning: Any = field(default=None, compare=False)  # unit mean of their own papers' vectors

    def similarities(self, vector: Vector) -> tuple[float, float]:
        """Return (similarity to liked papers, similarity to disliked papers)."""
        return cosine(vector, self.liked), cosine(vector, self.disliked)

    @property
    def votes(self) -> int:
        """Return how many papers the reader voted on."""
        return len(self.liked_ids) + len(self.disliked_ids)

    @property
    def likes(self) -> int:
        """Return how many papers the reader liked, their own papers included."""
        return len(self.liked_ids) + len(self.seed_vectors)


def _centroid(vectors: Iterable[Vector]) -> Vector:
    total: defaultdict[str, float] = defaultdict(float)
    for vec in vectors:
        for term, weight in vec.items():
            total[term] += weight
    return _normalised(total, PROFILE_TERMS)


@dataclass(frozen=True)
class StoredInterests:
    """A reader's interests as stored: the text and its vector's model and bytes, if any."""

    text: str
    model: str | None
    vector: bytes | None


class ReaderSignals:
    """Every reader's votes and the vectors to compare papers with them, for one edition."""

    def __init__(
        self,
        votes: Mapping[int, list[tuple[int, int]]],
        texts: Mapping[int, tuple[str, str]],
        rules: Mapping[int, ReaderRules] | None = None,
        edition: EditionText | None = None,
        paper_topics: Mapping[int, tuple[int, ...]] | None = None,
        seeds: Mapping[int, list[Seed]] | None = None,
    ) -> None:
        self._votes = votes
        self._seeds = seeds or {}
        self._batch: frozenset[int] | None = None  # whose votes are loaded; None: everyone's
        self._since: datetime | None = None  # the oldest vote counted; None: every vote
        self._rules = rules or {}
        self._paper_topics = paper_topics or {}
        self.edition = edition
        self.titles = {pid: title for pid, (title, _) in texts.items()}
        self.vectors = TextVectors(texts)
        self._profiles: dict[int, ReaderProfile] = {}
        # The sentence vectors of the edition's papers, for readers' own papers to meet.
        self._meaning_ids: list[int] = []
        self._meaning: Any = None
        # The direction of each reader's own papers in meaning, loaded with their votes.
        self._own: dict[int, Any] = {}
        # Readers' interests, loaded with their votes (a batch's, or everyone's).
        self._interests: dict[int, StoredInterests] = {}
        self.has_interests = False  # whether any reader wrote interests

    @classmethod
    def load(
        cls,
        candidate_ids: Iterable[int],
        *,
        session: Session,
        threshold: float = 1.0,
        votes_per_batch: bool = False,
        now: datetime | None = None,
    ) -> ReaderSignals | None:
        """Load every reader's votes of the last PROFILE_DAYS, their own papers and their
        rules; None when nobody has any (nothing to do).

        With votes_per_batch, only which papers were voted on is read now (the vectors need
        them all), and the votes and own papers of each batch of readers come with load_votes.
        """
        since = (now or utcnow()) - timedelta(days=PROFILE_DAYS)
        if votes_per_batch:
            votes: dict[int, list[tuple[int, int]]] = {}
            recent = FeedbackVote.updated_at >= since
            voted = set(session.scalars(select(FeedbackVote.paper_id).where(recent).distinct()))
            seeds: dict[int, list[Seed]] = {}
            seeded = session.scalar(select(ReaderSeed.id).limit(1)) is not None
        else:
            votes = _votes_of(None, since, session=session)
            voted = {pid for pairs in votes.values() for pid, _ in pairs}
            seeds = seeds_of(None, session=session, with_vectors=False)
            seeded = bool(seeds)
        rules = _load_rules(session)
        interested = session.scalar(select(Subscriber.id).where(_HAS_INTERESTS).limit(1))
        if not voted and not rules and not seeded and interested is None:
            return None
        candidates = set(candidate_ids)
        wanted = candidates | voted
        papers = session.execute(
            select(
                Paper.id,
                Paper.title,
                Paper.abstract,
                Paper.keywords,
                Paper.categories,
                Paper.authors,
            ).where(Paper.id.in_(sorted(wanted)))
        ).all()
        texts = {p.id: (p.title or "", p.abstract or "") for p in papers}
        edition = None
        if rules:
            edition = EditionText(
                {
                    p.id: (
                        PaperText(
                            p.title or "", p.abstract or "", p.keywords or (), p.categories or ()
                        ),  # fmt: skip
                        tuple(p.authors or ()),
                    )
                    for p in papers
                    if p.id in candidates
                },
                threshold,
            )
        signals = cls(votes, texts, rules, edition, _topics_of(voted, session=session), seeds)
        if seeded and anyone_has_vectors(session=session):
            signals._meaning_ids, signals._meaning = _paper_vectors(candidates, session=session)
        signals._since = since
        signals.has_interests = interested is not None
        if votes_per_batch:
            signals._batch = frozenset()
        else:
            signals._own = own_directions(seeds, session=session)
            if signals.has_interests:
                signals._interests = _interests_of(None, session=session)
        return signals

    def has_votes_of(self, subscriber_ids: Iterable[int]) -> bool:
        """Tell whether the votes of these readers are loaded."""
        return self._batch is None or self._batch.issuperset(subscriber_ids)

    def load_votes(self, subscriber_ids: Iterable[int], *, session: Session) -> None:
        """Load these readers' votes and own papers in place of the batch before: memory
        flat in readers."""
        ids = sorted(set(subscriber_ids))
        votes: dict[int, list[tuple[int, int]]] = {}
        seeds: dict[int, list[Seed]] = {}
        interests: dict[int, StoredInterests] = {}
        for start in range(0, len(ids), VOTERS_PER_QUERY):
            chunk = ids[start : start + VOTERS_PER_QUERY]
            votes.update(_votes_of(chunk, self._since, session=session))
            seeds.update(seeds_of(chunk, session=session, with_vectors=False))
            if self.has_interests:
                interests.update(_interests_of(chunk, session=session))
        # The meaning of their own papers, as stored: one query for the batch.
        self._own = own_directions(seeds, session=session)
        self._votes, self._seeds, self._interests = votes, seeds, interests
        self._batch = frozenset(ids)

    def rules(self, subscriber_id: int) -> ReaderRules | None:
        """Return a reader's followed authors, muted words and keywords, if they set any."""
        return self._rules.get(subscriber_id)

    def meaning_likes(self, profile: ReaderProfile) -> dict[int, float]:
        """Return each edition paper's cosine in meaning to the reader's own papers ({}
        without vectors on either side)."""
        if profile.meaning is None or self._meaning is None:
            return {}
        cosines = self._meaning @ profile.meaning
        return dict(zip(self._meaning_ids, cosines.tolist(), strict=True))

    @property
    def has_meaning(self) -> bool:
        """Tell whether readers' own papers meet the edition's papers in meaning here."""
        return self._meaning is not None

    def seeds(self, subscriber_id: int) -> list[Seed]:
        """Return a reader's own papers (loaded with their votes)."""
        return self._seeds.get(subscriber_id, [])

    def interests(self, subscriber_id: int) -> StoredInterests | None:
        """Return a reader's interests in their own words, if they wrote any."""
        return self._interests.get(subscriber_id)

    def profile(self, subscriber_id: int) -> ReaderProfile | None:
        """Return a reader's profile, or None for a reader with no votes nor papers of
        their own."""
        profile = self._profiles.get(subscriber_id)
        if profile is None and self._batch is not None and subscriber_id not in self._batch:
            raise LookupError(f"the votes of reader {subscriber_id} are not loaded")
        if profile is None and (subscriber_id in self._votes or subscriber_id in self._seeds):
            pairs = self._votes.get(subscriber_id, [])
            liked = tuple(pid for pid, vote in pairs if vote > 0)
            disliked = tuple(pid for pid, vote in pairs if vote < 0)
            seeds = self._seeds.get(subscriber_id, [])
            seed_vectors = tuple(self.vectors.text_vector(s.title, s.abstract) for s in seeds)
            profile = ReaderProfile(
                _centroid([*(self.vectors.vector(p) for p in liked), *seed_vectors]),
                _centroid(self.vectors.vector(p) for p in disliked),
                liked,
                disliked,
                TopicLean.from_votes((self._paper_topics.get(p, ()), v > 0) for p, v in pairs),
                tuple(s.title for s in seeds),
                seed_vectors,
                self._own.get(subscriber_id),
            )
            if len(self._profiles) >= PROFILES_KEPT:
                self._profiles.pop(next(iter(self._profiles)), None)
            self._profiles[subscriber_id] = profile
        return profile


def _paper_vectors(paper_ids: set[int], *, session: Session) -> tuple[list[int], Any]:
    """Return the papers that have a sentence vector of the current model, and their vectors."""
    found: dict[int, bytes] = {}
    ids = sorted(paper_ids)
    for start in range(0, len(ids), 5000):  # bound the IN list
        query = select(PaperEmbedding.paper_id, PaperEmbedding.vector).where(
            PaperEmbedding.model == MODEL_ID, PaperEmbedding.paper_id.in_(ids[start : start + 5000])
        )
        found.update((pid, blob) for pid, blob in session.execute(query))
    if not found:
        return [], None
    kept = sorted(found)
    return kept, from_bytes([found[pid] for pid in kept])


def _topics_of(paper_ids: set[int], *, session: Session) -> dict[int, tuple[int, ...]]:
    """Return the topics the matcher gave each of these papers."""
    found: defaultdict[int, list[int]] = defaultdict(list)
    ids = sorted(paper_ids)
    for start in range(0, len(ids), 5000):  # bound the IN list whatever the votes
        chunk = ids[start : start + 5000]
        for pid, tid in session.execute(
            select(PaperTopic.paper_id, PaperTopic.topic_id).where(PaperTopic.paper_id.in_(chunk))
        ):
            found[pid].append(tid)
    return {pid: tuple(tids) for pid, tids in found.items()}


def _votes_of(
    subscriber_ids: Sequence[int] | None, since: datetime | None, *, session: Session
) -> dict[int, list[tuple[int, int]]]:
    """Return (paper id, vote) pairs per reader, of these readers or of all (None), cast or
    changed since a time (None: ever)."""
    query = select(FeedbackVote.subscriber_id, FeedbackVote.paper_id, FeedbackVote.vote)
    if since is not None:
        query = query.where(FeedbackVote.updated_at >= since)
    if subscriber_ids is not None:
        query = query.where(FeedbackVote.subscriber_id.in_(subscriber_ids))
    votes: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
    # In the order they were cast, however they are read: a profile sums them in this order.
    for sid, pid, vote in session.execute(query.order_by(FeedbackVote.id)):
        votes[sid].append((pid, vote))
    return dict(votes)


_HAS_INTERESTS = Subscriber.interests != ""


def _interests_of(
    subscriber_ids: Sequence[int] | None, *, session: Session
) -> dict[int, StoredInterests]:
    """Return the stored interests of these readers (or of all: None) who wrote any."""
    chosen = true() if subscriber_ids is None else Subscriber.id.in_(subscriber_ids)
    query = select(
        Subscriber.id, Subscriber.interests, Subscriber.interests_model, Subscriber.interests_vector
    ).where(_HAS_INTERESTS, chosen)
    return {
        sid: StoredInterests(text, model, bytes(vector) if vector is not None else None)
        for sid, text, model, vector in session.execute(query)
    }


def _load_rules(session: Session) -> dict[int, ReaderRules]:
    """Load the rules of the readers who set any (JSON arrays that are not empty)."""
    columns = (Subscriber.follow_authors, Subscriber.muted_words, Subscriber.personal_keywords)
    any_set = or_(*(func.json_array_length(c) > 0 for c in columns))
    return {
        sid: ReaderRules(
            tuple(clean_rules(follow or ())),
            tuple(clean_rules(muted or ())),
            tuple(clean_rules(keywords or ())),
        )
        for sid, follow, muted, keywords in session.execute(
            select(Subscriber.id, *columns).where(any_set)
        )
    }
