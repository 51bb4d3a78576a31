"""Choose which of an edition's papers each subscriber receives."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.digest import DigestPaper
from newsletter.content.templating import one_line
from newsletter.core.config import default
from newsletter.core.latex import readable
from newsletter.core.models import Paper, PaperTopic, Topic
from newsletter.matching.interests import WHY as CLOSE_TO_INTERESTS
from newsletter.matching.interests import InterestStandings
from newsletter.matching.personal import ReaderRules
from newsletter.matching.profiles import ReaderProfile, ReaderSignals
from newsletter.matching.seeds import Seed
from newsletter.papers.sources.common import normalise_title
from newsletter.papers.sources.registry import has_discussion_pages

DEFAULT_HF_URL = default("hf_url")  # where discussion pages live, unless configured
# A reader's votes: how far they move a paper, when one drops out, when others join.
PERSONAL_WEIGHT = 1.0  # a similarity gap of 1 moves a paper past all of today's others
DROP_SIMILARITY = 0.35  # this close to what they disliked (and closer than to any like): out
DISCOVERY_SIMILARITY = 0.3  # this close in words to what they liked: a paper joins
# By meaning, a paper joins when it stands out near a reader's own papers among the recent
# listings, as papers near their interests do: sentence vectors put all papers of one field
# close, more so in some fields than others. Chosen on the dev papers of the labelled sets
# (benchmarks/readers.py): below 3, more unwanted papers joined than wanted. Where too few
# papers are stored to judge a standing, a cosine cut decides (at the words' 0.3, likewise).
OWN_PAPERS_STANDING = 3.0
MEANING_DISCOVERY_SIMILARITY = 0.5
# The topics of what they voted on: how far the chance of a like moves a paper, and when a
# paper whose topics have mostly met "less like this" drops out.
TOPIC_WEIGHT = 2.0
DROP_CHANCE = 0.3  # less than this chance of a like (and its words no closer to a like): out
MIN_VOTES_TO_DROP = 3  # a few votes prove nothing about a topic
MIN_LIKES_FOR_DISCOVERY = 3
DISCOVERIES = 2
ROUNDING = 1e-9  # two sums of the same products in another order differ by less


class _PaperRow(NamedTuple):
    """The columns of a paper an edition reads (their names are Paper's).

    A plain tuple: every reader's ranking reads them many times, and an ORM attribute (or a
    Row's) costs a Python call each time.
    """

    id: int
    title: str
    authors: list[str]
    abstract: str
    summary: str | None
    url_abs: str | None
    url_pdf: str | None
    url_code: str | None
    url_journal: str | None
    upvotes: int | None
    source: str
    arxiv_id: str | None
    doi: str | None
    venue: str | None


@dataclass(eq=False)  # compared by identity: one object per paper of the edition
class _Candidate:
    paper: _PaperRow
    scores: dict[int, float] = field(default_factory=dict)  # topic id -> score
    evidence: dict[int, list[str]] = field(default_factory=dict)  # topic id -> what matched


class EditionPapers:
    """The papers of one listing date with their topic matches, loaded once per send."""

    def __init__(
        self,
        candidates: list[_Candidate],
        topic_names: dict[int, str],
        *,
        hf_url: str = DEFAULT_HF_URL,
    ) -> None:
        self._candidates = candidates
        self._hf_papers = hf_url.rstrip("/") + "/papers/"
        self._by_topic: dict[int, list[_Candidate]] = defaultdict(list)
        for cand in candidates:
            for topic_id in cand.scores:
                self._by_topic[topic_id].append(cand)
        # The most upvoted paper of each topic: "most upvoted in <topic>" says why it is there.
        self._top_of_topic = {
            topic_id: max(cands, key=lambda c: (c.paper.upvotes or 0, -c.paper.id)).paper.id
            for topic_id, cands in self._by_topic.items()
            if any(c.paper.upvotes for c in cands)
        }
        self.topic_names = topic_names
        self._cache: dict[tuple[tuple[int, ...], int, frozenset[int]], tuple[DigestPaper, ...]] = {}
        self._orders: dict[tuple[tuple[int, ...], frozenset[int]], list[_Candidate]] = {}
        self._ids = frozenset(c.paper.id for c in candidates)
        # One object per (paper, shown topics): thousands of topic sets share a few hundred.
        self._papers: dict[tuple[int, tuple[str, ...]], DigestPaper] = {}
        self._identities: dict[str, int] | None = None  # see papers_named

    def papers_named(self, seeds: Iterable[Seed]) -> frozenset[int]:
        """Return the edition's papers that are these seeds: the same arXiv id, DOI or title
        (as ingest tells one work from another)."""
        seeds = list(seeds)
        if not seeds:
            return frozenset()
        if self._identities is None:
            self._identities = {}
            for cand in self._candidates:
                p = cand.paper
                for key in (f"a:{p.arxiv_id or ''}", f"d:{p.doi or ''}"):
                    if len(key) > 2:
                        self._identities[key] = p.id
                self._identities[f"t:{normalise_title(p.title)}"] = p.id
        found: set[int] = set()
        for seed in seeds:
            keys = (f"a:{seed.arxiv_id}", f"d:{seed.doi}", f"t:{normalise_title(seed.title)}")
            found.update(self._identities[k] for k in keys if k in self._identities)
        return frozenset(found)

    @classmethod
    def load(
        cls,
        listing_date: date,
        *,
        session: Session,
        since: date | None = None,
        hf_url: str = DEFAULT_HF_URL,
    ) -> EditionPapers:
        """Load the papers listed from `since` (default: the same day) to listing_date."""
        in_range = Paper.listing_date.between(since or listing_date, listing_date)
        columns = [Paper.__table__.c[name] for name in _PaperRow._fields]
        papers = session.execute(select(*columns).where(in_range))
        by_id = {p.id: _Candidate(_PaperRow(*p)) for p in papers}
        rows = session.execute(
            select(PaperTopic.paper_id, PaperTopic.topic_id, PaperTopic.score, PaperTopic.evidence)
            .join(Paper, Paper.id == PaperTopic.paper_id)
            .where(in_range)
        )
        for paper_id, topic_id, score, evidence in rows:
            by_id[paper_id].scores[topic_id] = score
            by_id[paper_id].evidence[topic_id] = list(evidence or ())
        names = {tid: name for tid, name in session.execute(select(Topic.id, Topic.name))}
        return cls(list(by_id.values()), names, hf_url=hf_url)

    def __len__(self) -> int:
        return len(self._candidates)

    def paper_ids(self) -> list[int]:
        """Return the ids of the edition's papers."""
        return [c.paper.id for c in self._candidates]

    def all_papers(self, max_papers: int) -> tuple[DigestPaper, ...]:
        """Return the day's best papers across every topic (for test copies)."""
        return self.for_topics(list(self.topic_names), max_papers)

    def for_topics(
        self, topic_ids: Iterable[int], max_papers: int, exclude: frozenset[int] = frozenset()
    ) -> tuple[DigestPaper, ...]:
        """Return up to max_papers papers matching any of the topics, best first."""
        key = (tuple(sorted(set(topic_ids))), max_papers, exclude)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._select(key[0], max_papers, exclude)
            self._cache[key] = cached
        return cached

    def _select(
        self, topic_ids: tuple[int, ...], max_papers: int, exclude: frozenset[int]
    ) -> tuple[DigestPaper, ...]:
        chosen: dict[int, _Candidate] = {}
        for topic_id in topic_ids:
            for cand in self._by_topic.get(topic_id, ()):
                if cand.paper.id not in exclude:
                    chosen[cand.paper.id] = cand
        wanted = set(topic_ids)
        ranked = sorted(chosen.values(), key=lambda c: _rank(c, wanted))
        return tuple(self._digest_paper(c, wanted) for c in ranked[:max_papers])

    def for_reader(
        self,
        topic_ids: Iterable[int],
        max_papers: int,
        exclude: frozenset[int],
        profile: ReaderProfile | None,
        signals: ReaderSignals,
        rules: ReaderRules | None = None,
        close: Mapping[int, float] | None = None,
        standings: InterestStandings | None = None,
    ) -> tuple[DigestPaper, ...]:
        """Return a reader's papers, shaped by their votes and their own rules.

        Papers by followed authors come first, labelled; papers with a muted word never
        come; personal keywords match like one more topic. The papers `close` to the
        reader's interests (by paper id, their standing, by which they rank) alternate with
        the topics' ones: a standing and a keyword score are not on one scale. With votes,
        today's order is blended with what they liked, papers much like what they disliked
        drop out, and once they liked enough, up to DISCOVERIES papers from outside their
        topics that closely resemble liked ones join, each saying which liked paper it
        resembles.
        """
        wanted = set(topic_ids)
        muted = self._muted(rules, signals)
        inside = [c for c in self._in_order(wanted, exclude) if c.paper.id not in muted]
        # Beyond their topics: papers by keyword (naming it), then by interests (None).
        own: dict[_Candidate, str | None] = {}
        own.update(self._own_keyword_matches(rules, signals, inside, exclude | muted))
        if own:
            inside = sorted([*inside, *own], key=lambda c: _rank(c, wanted))
        near = self._close_to_interests(close or {}, inside, exclude | muted)
        if near:
            own.update(dict.fromkeys(near))
            inside = _alternate(inside, sorted(near, key=lambda c: _rank(c, wanted, close)))
        similar = _Similarities(profile, signals) if profile is not None else None
        ranked = self._ranked(inside, wanted, similar)
        pinned = self._followed(rules, signals, exclude | muted, wanted)
        pinned_ids = {p.paper_id for p in pinned}
        papers = pinned + [
            self._shown(c, wanted, own) for c in ranked if c.paper.id not in pinned_ids
        ]
        papers = papers[: max(max_papers, len(pinned))]
        if profile is not None and similar is not None:  # one is None only with the other
            extras = self._discoveries(
                inside, exclude | muted, profile, signals, similar, standings
            )
            if extras:
                papers = papers[: max(max_papers - len(extras), len(pinned))] + extras
        return tuple(papers)

    def _muted(self, rules: ReaderRules | None, signals: ReaderSignals) -> frozenset[int]:
        if not rules or not rules.muted_words or signals.edition is None:
            return frozenset()
        return frozenset().union(*(signals.edition.mentioning(w) for w in rules.muted_words))

    def _own_keyword_matches(
        self,
        rules: ReaderRules | None,
        signals: ReaderSignals,
        inside: list[_Candidate],
        skip: frozenset[int],
    ) -> dict[_Candidate, str]:
        """Return the papers a reader's own keywords match beyond their topics."""
        if not rules or not rules.personal_keywords or signals.edition is None:
            return {}
        taken = {c.paper.id for c in inside} | skip
        by_id = {c.paper.id: c for c in self._candidates}
        found: dict[_Candidate, str] = {}
        for keyword in rules.personal_keywords:
            for pid in sorted(signals.edition.matching(keyword)):
                if pid not in taken and pid in by_id and by_id[pid] not in found:
                    found[by_id[pid]] = keyword
        return found

    def _close_to_interests(
        self, close: Mapping[int, float], inside: list[_Candidate], skip: frozenset[int]
    ) -> list[_Candidate]:
        """Return the papers close to a reader's interests beyond their topics."""
        if not close:
            return []
        taken = {c.paper.id for c in inside} | skip
        return [c for c in self._candidates if c.paper.id in close and c.paper.id not in taken]

    def _in_order(self, wanted: set[int], exclude: frozenset[int]) -> list[_Candidate]:
        """Return the papers of any of these topics in today's order, sorted once per set."""
        key = (tuple(sorted(wanted)), exclude)
        found = self._orders.get(key)
        if found is None:
            found = sorted(self._matching(wanted, exclude), key=lambda c: _rank(c, wanted))
            self._orders[key] = found
        return found

    def _ranked(
        self,
        ranked: list[_Candidate],
        wanted: set[int],
        similar: _Similarities | None,
    ) -> list[_Candidate]:
        """Blend today's order (`ranked`) with the reader's votes, dropping the unwanted."""
        if similar is None:
            return ranked
        scored = []
        for position, cand in enumerate(ranked):
            like, dislike = similar(cand.paper.id)
            chance = similar.chance_of_like(cand)
            if similar.unwanted(like, dislike, chance):
                continue
            today = 1.0 - position / len(ranked)  # 1 for today's top paper
            personal = PERSONAL_WEIGHT * (like - dislike) + TOPIC_WEIGHT * (chance - 0.5)
            scored.append((-(today + personal), position, cand))
        scored.sort(key=lambda item: item[:2])
        return [c for _, _, c in scored]

    def _followed(
        self,
        rules: ReaderRules | None,
        signals: ReaderSignals,
        skip: frozenset[int],
        wanted: set[int],
    ) -> list[DigestPaper]:
        """Return the papers by authors a reader follows, most upvoted first, labelled."""
        if not rules or not rules.follow_authors or signals.edition is None:
            return []
        by_id = {c.paper.id: c for c in self._candidates}
        found = signals.edition.by_followed(rules.follow_authors)
        chosen = sorted(
            (by_id[pid] for pid in found if pid in by_id and pid not in skip),
            key=lambda c: _rank(c, wanted),
        )
        return [_followed_paper(self._digest_paper(c, wanted), found[c.paper.id]) for c in chosen]

    def _shown(
        self, cand: _Candidate, wanted: set[int], own: dict[_Candidate, str | None]
    ) -> DigestPaper:
        paper = self._digest_paper(cand, wanted)
        if cand in own:
            keyword = own[cand]
            why = f"matches your keyword \u201c{keyword}\u201d" if keyword else CLOSE_TO_INTERESTS
            return dataclasses.replace(paper, why=why)
        return paper

    def _matching(self, wanted: set[int], exclude: frozenset[int]) -> list[_Candidate]:
        chosen: dict[int, _Candidate] = {}
        for topic_id in wanted:
            for cand in self._by_topic.get(topic_id, ()):
                if cand.paper.id not in exclude:
                    chosen[cand.paper.id] = cand
        return list(chosen.values())

    def _discoveries(
        self,
        inside: list[_Candidate],
        exclude: frozenset[int],
        profile: ReaderProfile,
        signals: ReaderSignals,
        similar: _Similarities,
        standings: InterestStandings | None = None,
    ) -> list[DigestPaper]:
        if profile.likes < MIN_LIKES_FOR_DISCOVERY:
            return []
        meaning_cut = _meaning_cut(profile, standings)
        taken = {c.paper.id for c in inside} | set(exclude) | set(profile.liked_ids)
        # Most papers are far from every like: the likeness of all of them at once, through
        # an index of their words, rules those out before the exact pair of products.
        near = signals.vectors.products(profile.liked, self._ids)
        found = []
        for cand in self._candidates:
            if cand.paper.id in taken or cand.paper.id in profile.disliked_ids:
                continue
            words_far = near.get(cand.paper.id, 0.0) < DISCOVERY_SIMILARITY - ROUNDING
            meaning = similar.meaning(cand.paper.id)
            by_meaning = meaning > 0 and meaning >= meaning_cut
            if words_far and not by_meaning:
                continue
            like, dislike = similar(cand.paper.id)
            words, _ = profile.similarities(signals.vectors.vector(cand.paper.id))
            close = words >= DISCOVERY_SIMILARITY or by_meaning
            # Closer to a like than to any dislike: never unwanted.
            if close and like > dislike:
                found.append((like, cand))
        found.sort(key=lambda item: (-item[0], item[1].paper.id))
        extras = []
        for _, cand in found[:DISCOVERIES]:
            closest = signals.closest_like(profile, signals.vectors.vector(cand.paper.id))
            reason = _because(*closest) if closest else "Like papers you liked"
            extras.append(dataclasses.replace(self._digest_paper(cand, set()), reason=reason))
        return extras

    def _digest_paper(self, cand: _Candidate, wanted: set[int]) -> DigestPaper:
        p = cand.paper
        topics = tuple(sorted(self.topic_names[t] for t in cand.scores if t in wanted))
        shared = self._papers.get((p.id, topics))
        if shared is not None:
            return shared
        shared = self._papers[(p.id, topics)] = DigestPaper(
            paper_id=p.id,
            title=p.title,
            authors=tuple(p.authors or ()),
            abstract=p.abstract or "",
            url_abs=p.url_abs,
            url_pdf=p.url_pdf,
            url_code=p.url_code,
            upvotes=p.upvotes,
            topics=topics,
            summary=p.summary or None,
            url_discussion=self._discussion_url(p),
            why=self._why(cand, wanted),
            venue=p.venue or None,
            url_journal=p.url_journal if p.url_journal != p.url_abs else None,
        )
        return shared

    def _why(self, cand: _Candidate, wanted: set[int]) -> str | None:
        """Say in a few words why a paper is in a digest on these topics."""
        shown = sorted((t for t in cand.scores if t in wanted), key=lambda t: -cand.scores[t])
        for topic_id in shown:
            if self._top_of_topic.get(topic_id) == cand.paper.id:
                return f"most upvoted in {one_line(self.topic_names[topic_id])}"
        for topic_id in shown:
            reason = why_from_evidence(cand.evidence.get(topic_id, ()))
            if reason:
                return reason
        return None

    def _discussion_url(self, paper: _PaperRow) -> str | None:
        # Upvotes and summaries come only from Hugging Face: such a paper has a page there,
        # whichever source listed it first.
        on_hf = has_discussion_pages(paper.source) or paper.upvotes is not None
        return self._hf_papers + paper.arxiv_id if on_hf and paper.arxiv_id else None


class _Similarities:
    """A reader's similarities to each paper, computed once per selection."""

    def __init__(self, profile: ReaderProfile, signals: ReaderSignals) -> None:
        self._profile = profile
        self._signals = signals
        self._seen: dict[int, tuple[float, float]] = {}
        self._judge_topics = profile.votes >= MIN_VOTES_TO_DROP
        # Cosines in meaning to the reader's own papers, all of the edition's at once.
        self._meaning = signals.meaning_likes(profile)

    def meaning(self, paper_id: int) -> float:
        """Return a paper's cosine in meaning to the reader's own papers (0 without)."""
        return self._meaning.get(paper_id, 0.0)

    def chance_of_like(self, cand: _Candidate) -> float:
        """Return the chance of a like from the paper's topics (0.5 on too few votes)."""
        if not self._judge_topics:
            return 0.5
        return self._profile.topics.chance_of_like(cand.scores)

    def unwanted(self, like: float, dislike: float, chance: float) -> bool:
        """Say whether a paper is so like what the reader disliked that it should go."""
        if like > dislike:
            return False
        return dislike >= DROP_SIMILARITY or chance < DROP_CHANCE

    def __call__(self, paper_id: int) -> tuple[float, float]:
        """Return (like, dislike) similarities of a paper to the reader's profile: a like in
        words, or in meaning to their own papers, whichever is closer."""
        found = self._seen.get(paper_id)
        if found is None:
            like, dislike = self._profile.similarities(self._signals.vectors.vector(paper_id))
            found = self._seen[paper_id] = (max(like, self.meaning(paper_id)), dislike)
        return found



def _meaning_cut(profile: ReaderProfile, standings: InterestStandings | None) -> float:
    """Return the cosine to a reader's own papers from which a paper joins by meaning: where
    it stands OWN_PAPERS_STANDING out among the recent listings, as nearness to interests is
    judged; MEANING_DISCOVERY_SIMILARITY where that cannot be judged."""
    if profile.meaning is not None and standings is not None:
        found = standings.similarity_at(profile.meaning, OWN_PAPERS_STANDING)
        if found is not None:
            return found
    return MEANING_DISCOVERY_SIMILARITY


def _because(title: str, own: bool) -> str:
    """Say which liked paper, or which of the reader's own, a discovery resembles."""
    shown = one_line(readable(title))
    if not shown:
        return "Like papers you liked"
    said = "Like your paper" if own else "Because you liked"
    return f"{said} \u201c{shown}\u201d"
def _alternate(first: list[_Candidate], second: list[_Candidate]) -> list[_Candidate]:
    """Take from two rankings in turn, the first's best first, until both are spent."""
    merged = [c for pair in zip(first, second, strict=False) for c in pair]
    shorter = min(len(first), len(second))
    return merged + first[shorter:] + second[shorter:]


def _followed_paper(paper: DigestPaper, name: str) -> DigestPaper:
    """Label a followed author's paper and name them first: a card shows the first few."""
    others = tuple(a for a in paper.authors if a != name)
    return dataclasses.replace(
        paper, authors=(name, *others), reason=f"You follow {one_line(name)}"
    )


def _rank(
    cand: _Candidate, wanted: set[int], close: Mapping[int, float] | None = None
) -> tuple[int, float, str]:
    """Most upvoted first (the day's trend), then the strongest topic match (or standing
    against the reader's interests, `close`), then title."""
    best = max((s for t, s in cand.scores.items() if t in wanted), default=0.0)
    if close:
        best = max(best, close.get(cand.paper.id, 0.0))
    return (-(cand.paper.upvotes or 0), -best, cand.paper.title)


_EVIDENCE = re.compile(
    r'^(title|abstract|keywords?|category|meaning): "?(.+?)"?(?: x(\d+))?(?: \(.*\))?$'
)


def why_from_evidence(evidence: Iterable[str]) -> str | None:
    """Turn the matcher's strongest evidence into a short phrase ("title mentions LoRA")."""
    parsed = [m.groups() for m in map(_EVIDENCE.match, evidence) if m]
    for field_name in ("title", "abstract", "keyword", "keywords", "category", "meaning"):
        for where, what, times in parsed:
            if where != field_name:
                continue
            if where == "category":
                return f"listed in {what}"
            if where == "meaning":
                return "close in meaning to the topic"
            if where.startswith("keyword"):
                return f"tagged {what}"
            count = f" {times} times" if times and int(times) > 1 else ""
            return f"{where} mentions {what}{count}"
    return None
