"""Each reader's papers of one edition: the one selection behind every digest.

The send, the workers, the scheduler, `preview`, `send --to` and `send --dry-run` all ask
`ReaderSelection.papers_for`, so a reader's papers and their order are the same wherever they
are shown: shaped by their votes, their own papers, followed authors, muted words,
keywords and interests in their own words, and never one they already received nor one of
their own. An empty answer is what skips a reader (or sends them the note); planning skips
ahead of it only readers it can give nothing (see `plan_edition`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.digest import DigestPaper
from newsletter.core.models import Edition, Subscriber, Subscription
from newsletter.editions.planning import edition_first_day, sent_paper_ids
from newsletter.editions.selection import DEFAULT_HF_URL, EditionPapers
from newsletter.matching.interests import InterestStandings, load_standings, reader_vector
from newsletter.matching.profiles import ReaderSignals
from newsletter.ranking.weights import RankingWeights

PERSONAL_MEMO = 2048  # personal selections kept: the batches in flight (send_batch_size 500)
# Loads the votes of a batch of readers into the signals (in a session of its own).
VotesLoader = Callable[[ReaderSignals, Iterable[int]], None]


@dataclass(frozen=True)
class Reader:
    """Whom a selection is for: a subscriber, their topics and how many papers they want.

    subscriber_id 0 is anyone (a test copy to an address that is not a subscriber).
    """

    subscriber_id: int
    topic_ids: tuple[int, ...]
    max_papers: int


def load_reader(subscriber: Subscriber, *, session: Session) -> Reader:
    """Return the reader a subscriber is, with their topics in a stable order."""
    topic_ids = session.scalars(
        select(Subscription.topic_id).where(Subscription.subscriber_id == subscriber.id)
    )
    return Reader(subscriber.id, tuple(sorted(topic_ids)), subscriber.max_papers)


class ReaderSelection:
    """Chooses each reader's papers of one edition, once per reader however often asked."""

    def __init__(
        self,
        papers: EditionPapers,
        signals: ReaderSignals | None = None,
        *,
        sent: Mapping[int, frozenset[int]] | None = None,
        load_votes: VotesLoader | None = None,
        standings: InterestStandings | None = None,
    ) -> None:
        self.papers = papers
        # Readers' votes and rules; None when nobody has any.
        self.signals = signals
        # Per subscriber, the papers of these dates they already received: never repeated.
        self.sent = sent or {}
        # Loads the votes of a batch of readers into signals, when they come per batch.
        self._load_votes = load_votes
        # The edition's papers against the recent window, for readers' interests and own
        # papers (None: no reader has either, or meaning cannot be judged here).
        self._standings = standings
        # Personal selections of recent readers: a batch is asked for twice (warm, build).
        self._personal: dict[Reader, tuple[DigestPaper, ...]] = {}
        self._lock = threading.Lock()
        self._topic_names: dict[tuple[int, ...], tuple[str, ...]] = {}

    @classmethod
    def load(
        cls,
        edition: Edition,
        *,
        session: Session,
        threshold: float,
        hf_url: str = DEFAULT_HF_URL,
        subscriber_ids: Iterable[int] | None = None,
        load_votes: VotesLoader | None = None,
        weights: RankingWeights | None = None,
    ) -> ReaderSelection:
        """Load an edition's papers (a week's for weekly), readers' signals and what they had.

        With load_votes, votes are read per batch of readers (memory flat in readers);
        without, everyone's now. subscriber_ids limits what they had to these readers
        (default: those the edition owes). `weights` ranks them (default: the defaults').
        """
        since = edition_first_day(edition.kind, edition.listing_date)
        papers = EditionPapers.load(edition.listing_date, session=session, since=since,
                                    hf_url=hf_url, weights=weights)  # fmt: skip
        ids = None if subscriber_ids is None else sorted(set(subscriber_ids))
        sent = sent_paper_ids(edition, session=session, subscriber_ids=ids)
        signals = ReaderSignals.load(
            papers.paper_ids(), session=session, threshold=threshold,
            votes_per_batch=load_votes is not None,
        )  # fmt: skip
        loader = load_votes if signals is not None else None
        standings = None
        if signals is not None and (signals.has_interests or signals.has_meaning):
            standings = load_standings(papers.paper_ids(), session=session)
        return cls(papers, signals, sent=sent, load_votes=loader, standings=standings)

    def topic_names(self, topic_ids: tuple[int, ...]) -> tuple[str, ...]:
        """Return the sorted names of these topics (a few thousand sets among many readers)."""
        names = self._topic_names.get(topic_ids)
        if names is None:
            names = tuple(sorted(self.papers.topic_names[t] for t in topic_ids))
            self._topic_names[topic_ids] = names
        return names

    def have_votes_of(self, subscriber_ids: Iterable[int]) -> None:
        """Load the votes of these readers unless they are at hand (a batch's, at once)."""
        if self.signals is None or self._load_votes is None:
            return
        wanted = set(subscriber_ids)
        if not self.signals.has_votes_of(wanted):
            self._load_votes(self.signals, wanted)

    def papers_for(self, reader: Reader) -> tuple[DigestPaper, ...]:
        """Return a reader's papers, best first: the digest they get (empty: nothing)."""
        sent = self.sent.get(reader.subscriber_id, frozenset())
        signals = self.signals
        if signals is not None:
            self.have_votes_of((reader.subscriber_id,))  # loaded with its batch, unless alone
            sid = reader.subscriber_id
            profile = signals.profile(sid)
            if profile is not None or signals.rules(sid) or signals.interests(sid):
                own = self.papers.papers_named(signals.seeds(sid))
                # A paper they rated (in their first round, say) they have seen: not again.
                rated = frozenset(profile.liked_ids + profile.disliked_ids) if profile else own
                return self._personal_choice(signals, reader, sent | own | rated)
        return self.papers.for_topics(reader.topic_ids, reader.max_papers, sent)

    def _personal_choice(
        self, signals: ReaderSignals, reader: Reader, sent: frozenset[int]
    ) -> tuple[DigestPaper, ...]:
        with self._lock:
            papers = self._personal.get(reader)
        if papers is None:
            sid = reader.subscriber_id
            papers = self.papers.for_reader(
                reader.topic_ids, reader.max_papers, sent,
                signals.profile(sid), signals, signals.rules(sid),
                self._interests(signals, sid), self._standings,
            )  # fmt: skip
            with self._lock:
                if len(self._personal) >= PERSONAL_MEMO:  # bounded: memory flat in readers
                    del self._personal[next(iter(self._personal))]
                self._personal[reader] = papers
        return papers

    def _interests(self, signals: ReaderSignals, subscriber_id: int) -> Any:
        """Return a reader's interests vector, where it can be judged here (else None)."""
        stored = signals.interests(subscriber_id)
        if stored is None or self._standings is None:
            return None
        return reader_vector(stored.text, stored.model, stored.vector)
