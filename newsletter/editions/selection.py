"""Choose which of an edition's papers each subscriber receives, as paper cards.

The edition's papers and their topic matches are loaded once per send; each reader's order
and the reasons for each paper come from `ranking.rank`, the one place that ranks, and are
turned into the cards a digest shows here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import date
from typing import Any, NamedTuple

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
from newsletter.ranking.inputs import (
    NO_RULES,
    Candidate,
    Candidates,
    EditionRules,
    Pick,
    Taste,
    Why,
    rules_on,
)
from newsletter.ranking.rank import rank
from newsletter.ranking.weights import RankingWeights

DEFAULT_HF_URL = default("hf_url")  # where discussion pages live, unless configured


class _PaperRow(NamedTuple):
    """The columns of a paper an edition reads (their names are Paper's).

    A plain tuple: every reader's cards read them many times, and an ORM attribute (or a
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


class EditionPapers:
    """The papers of one listing date with their topic matches, loaded once per send."""

    def __init__(
        self,
        rows: list[_PaperRow],
        matches: dict[int, dict[int, tuple[float, list[str]]]],
        topic_names: dict[int, str],
        *,
        hf_url: str = DEFAULT_HF_URL,
        weights: RankingWeights | None = None,
    ) -> None:
        """`matches`: per paper id, its topics' (score, evidence)."""
        self._rows = {row.id: row for row in rows}
        self._evidence = {
            pid: {t: evidence for t, (_, evidence) in found.items()}
            for pid, found in matches.items()
        }
        self.candidates = Candidates(
            Candidate(row.id, row.title, row.upvotes,
                      {t: score for t, (score, _) in matches.get(row.id, {}).items()})
            for row in rows
        )  # fmt: skip
        self.weights = weights or RankingWeights()
        self._hf_papers = hf_url.rstrip("/") + "/papers/"
        # The most upvoted paper of each topic: "most upvoted in <topic>" says why it is there.
        self._top_of_topic = {
            topic_id: max(cands, key=lambda c: (c.upvotes or 0, -c.paper_id)).paper_id
            for topic_id, cands in self.candidates.by_topic.items()
            if any(c.upvotes for c in cands)
        }
        self.topic_names = topic_names
        self._cache: dict[tuple[tuple[int, ...], int, frozenset[int]], tuple[DigestPaper, ...]] = {}
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
            for p in self._rows.values():
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
        weights: RankingWeights | None = None,
    ) -> EditionPapers:
        """Load the papers listed from `since` (default: the same day) to listing_date."""
        in_range = Paper.listing_date.between(since or listing_date, listing_date)
        columns = [Paper.__table__.c[name] for name in _PaperRow._fields]
        rows = [_PaperRow(*p) for p in session.execute(select(*columns).where(in_range))]
        matches: dict[int, dict[int, tuple[float, list[str]]]] = {}
        found = session.execute(
            select(PaperTopic.paper_id, PaperTopic.topic_id, PaperTopic.score, PaperTopic.evidence)
            .join(Paper, Paper.id == PaperTopic.paper_id)
            .where(in_range)
        )
        for paper_id, topic_id, score, evidence in found:
            matches.setdefault(paper_id, {})[topic_id] = (score, list(evidence or ()))
        names = {tid: name for tid, name in session.execute(select(Topic.id, Topic.name))}
        return cls(rows, matches, names, hf_url=hf_url, weights=weights)

    def __len__(self) -> int:
        return len(self._rows)

    def paper_ids(self) -> list[int]:
        """Return the ids of the edition's papers."""
        return list(self._rows)

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
            cached = self._cache[key] = self._chosen(Taste(frozenset(key[0]), max_papers, exclude))
        return cached

    def for_reader(
        self,
        topic_ids: Iterable[int],
        max_papers: int,
        exclude: frozenset[int],
        profile: ReaderProfile | None,
        signals: ReaderSignals,
        rules: ReaderRules | None = None,
        interests: Any = None,
        standings: InterestStandings | None = None,
    ) -> tuple[DigestPaper, ...]:
        """Return a reader's papers, shaped by their votes, their own papers and rules, and
        their interests (`interests`: its unit vector; `standings`: the edition's papers
        against the recent window, by which it and their own papers are judged)."""
        taste = Taste(
            frozenset(topic_ids),
            max_papers,
            exclude,
            profile,
            signals.vectors if profile is not None else None,
            signals.titles,
            signals.meaning_likes(profile) if profile is not None else {},
            interests,
            standings,
        )
        return self._chosen(taste, rules_on(rules, signals.edition))

    def _chosen(self, taste: Taste, rules: EditionRules = NO_RULES) -> tuple[DigestPaper, ...]:
        """Rank a reader's papers (the one call of `rank`) and turn the picks into cards."""
        picks = rank(self.candidates, taste, rules, self.weights)
        return tuple(self._card(pick, taste.topic_ids) for pick in picks)

    def _card(self, pick: Pick, wanted: frozenset[int]) -> DigestPaper:
        """Return a pick's card: its topics among the reader's, and why it is there."""
        first = pick.reasons[0]
        if pick.discovery:  # from outside their topics: none of theirs to show
            paper = self._digest_paper(pick.paper_id, frozenset())
            return dataclasses.replace(paper, reason=_because(first.detail, first.kind))
        paper = self._digest_paper(pick.paper_id, wanted)
        if first.kind is Why.FOLLOWED:
            return _followed_paper(paper, first.detail)
        if first.kind is Why.KEYWORD:
            why = f"matches your keyword \u201c{first.detail}\u201d"
            return dataclasses.replace(paper, why=why)
        if first.kind is Why.INTERESTS:
            return dataclasses.replace(paper, why=CLOSE_TO_INTERESTS)
        return paper

    def _digest_paper(self, paper_id: int, wanted: frozenset[int]) -> DigestPaper:
        p = self._rows[paper_id]
        scores = self.candidates.by_id[paper_id].scores
        topics = tuple(sorted(self.topic_names[t] for t in scores if t in wanted))
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
            why=self._why(paper_id, scores, wanted),
            venue=p.venue or None,
            url_journal=p.url_journal if p.url_journal != p.url_abs else None,
        )
        return shared

    def _why(self, paper_id: int, scores: dict[int, float], wanted: frozenset[int]) -> str | None:
        """Say in a few words why a paper is in a digest on these topics."""
        shown = sorted((t for t in scores if t in wanted), key=lambda t: -scores[t])
        for topic_id in shown:
            if self._top_of_topic.get(topic_id) == paper_id:
                return f"most upvoted in {one_line(self.topic_names[topic_id])}"
        evidence = self._evidence.get(paper_id, {})
        for topic_id in shown:
            reason = why_from_evidence(evidence.get(topic_id, ()))
            if reason:
                return reason
        return None

    def _discussion_url(self, paper: _PaperRow) -> str | None:
        # Upvotes and summaries come only from Hugging Face: such a paper has a page there,
        # whichever source listed it first.
        on_hf = has_discussion_pages(paper.source) or paper.upvotes is not None
        return self._hf_papers + paper.arxiv_id if on_hf and paper.arxiv_id else None


def _because(title: str, kind: Why) -> str:
    """Say which liked paper, or which of the reader's own, a discovery resembles."""
    shown = one_line(readable(title))
    if not shown:
        return "Like papers you liked"
    said = "Like your paper" if kind is Why.OWN_PAPER else "Because you liked"
    return f"{said} \u201c{shown}\u201d"


def _followed_paper(paper: DigestPaper, name: str) -> DigestPaper:
    """Label a followed author's paper and name them first: a card shows the first few."""
    others = tuple(a for a in paper.authors if a != name)
    return dataclasses.replace(
        paper, authors=(name, *others), reason=f"You follow {one_line(name)}"
    )


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
