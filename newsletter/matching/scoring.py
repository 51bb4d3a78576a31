"""Score a paper's text against topics: which keywords it mentions, where, and what that says.

Keywords compile (`keywords`) to token sequences of the same forms as a paper's words (`text`),
so finding them is one dictionary look-up per token whatever the number of topics (TopicIndex).
On the score scale, 1.0 (the default threshold) means "one clear, specific signal": a keyword
in the title or in the paper's own keywords, a specific keyword in the abstract's opening or
repeated, or two distinct ones. A single mention late in the abstract counts little; generic
words, partial phrases and the topic's description add to other evidence. How much a keyword
says comes from how common it is among recent papers (`specificity`), with the word lists of
`wordlists` as the prior.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from copy import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from newsletter.core.taxonomy import covered_categories
from newsletter.matching.keywords import (
    Keyword,
    Seq,
    compile_description,
    compile_keywords,
    keyword_key,
    match_at,
    unique_terms,
    variants,
)
from newsletter.matching.specificity import NO_PAPERS, DocumentFrequencies
from newsletter.matching.text import (
    FUNCTION_WORDS,
    WORD,
    PaperText,
    Tokens,
    acronym_form,
    tokenize,
)
from newsletter.matching.wordlists import FALSE_FRIENDS

TITLE_WEIGHT = 1.0
PAPER_KEYWORD_WEIGHT = 0.8  # HF ai_keywords: chosen for the paper, but many and loose
LEAD_WEIGHT = 1.0  # a first mention in the abstract's opening: what the paper is about
LATE_WEIGHT = 0.5  # a first mention later in the abstract: often a passing remark
ABSTRACT_REPEAT = 0.5  # each further mention in the abstract, up to ABSTRACT_MAX
ABSTRACT_MAX = 1.0
LEAD_SENTENCES = 2
SECONDARY_SHARE = 0.3  # a keyword also seen in another field (title and abstract) adds this share
SINGLE_WORD_FACTOR = 0.7  # outside a title, one ordinary word is vaguer than a phrase
DECAY = 0.7  # the n-th distinct keyword adds DECAY**n of its weight: diminishing returns
CATEGORY_PRIMARY = 0.6
CATEGORY_CROSS = 0.3
# A paper of a whole-category topic's categories is in it on that alone: at least the
# threshold, and this much before its other evidence adds to its rank.
CATEGORY_MEMBER = 1.0
DESCRIPTION_WORD = 0.1
DESCRIPTION_CAP = 0.3
GAP_SHARE = 0.8  # a phrase with one extra word inside ("graph convolutional neural network")


class Span(NamedTuple):
    """One place a keyword matched: field, token range, sentence and share of a full match."""

    field: str
    start: int
    end: int
    sentence: int
    share: float
    text: str


@dataclass(frozen=True)
class TopicMatcher:
    """A topic compiled for scoring: its keywords, description words and categories."""

    slug: str
    keywords: tuple[Keyword, ...]
    description: tuple[Keyword, ...] = ()
    # Every category a paper may carry that the topic's take: an archive's subject classes,
    # aliases (math.IT for cs.IT) included; see `taxonomy.covered_categories`.
    categories: frozenset[str] = field(default_factory=frozenset)
    # Phrases in which the topic's keywords mean something else ("accretion disc corona" for
    # a topic on the Sun): the admin's own false friends, for fields no built-in list knows.
    exclude: tuple[str, ...] = ()
    whole_categories: bool = False  # every paper of its categories belongs to it

    @classmethod
    def compile(
        cls,
        slug: str,
        keywords: Iterable[str] = (),
        description: str = "",
        categories: Iterable[str] = (),
        *,
        name: str = "",
        exclude: Iterable[str] = (),
        whole_categories: bool = False,
    ) -> TopicMatcher:
        """Compile a topic's keywords (plus the parts of its name), description and categories."""
        compiled = compile_keywords(keywords, name=name)
        return cls(
            slug=slug,
            keywords=compiled,
            description=compile_description(description, compiled),
            categories=covered_categories(c.strip() for c in categories if c.strip()),
            exclude=tuple(unique_terms(p for p in exclude if WORD.search(p))),
            whole_categories=whole_categories,
        )

    @cached_property
    def index(self) -> TopicIndex:
        """This topic alone as an index."""
        return TopicIndex([self])

    def score(self, paper: PaperText) -> tuple[float, list[str]]:
        """Score one paper against this topic and say why."""
        for _, value, evidence in self.index.score(paper, threshold=0.0):
            return value, evidence
        return 0.0, []


# What a sequence of the index stands for: topic number (_FRIEND for a false friend), keyword
# number and its share of a full match.
_Target = tuple[int, int, float]
_FRIEND = -1
_Hits = dict[int, list[Span]]  # keyword number -> where it matched
_Found = tuple[dict[int, _Hits], list[tuple[int, Span]]]  # hits by topic, false friends' hits
Scored = tuple[int, float, list[str]]  # topic number, score, evidence


def _keyword_factors(topic: TopicMatcher, frequencies: DocumentFrequencies) -> list[float]:
    """Return the weight each keyword of a topic keeps, given how common it is."""
    return [frequencies.factor(kw.key, generic=kw.generic) for kw in topic.keywords]


class TopicIndex:
    """Topics compiled into one table from a token form to the sequences that start with it.

    Each keyword's weight is scaled by how common it is among recent papers (`frequencies`);
    a topic whose keywords are all common is judged against its best keyword, so that its
    strongest papers still match.
    """

    def __init__(
        self, topics: Sequence[TopicMatcher], frequencies: DocumentFrequencies = NO_PAPERS
    ) -> None:
        self.topics = list(topics)
        self.frequencies = frequencies
        self._factors = [_keyword_factors(t, frequencies) for t in self.topics]
        self._starts: dict[str, dict[Seq, list[_Target]]] = {}
        for t, topic in enumerate(self.topics):
            for k, kw in enumerate(topic.keywords):
                self._add(kw.sequences, t, k)
        phrases = list(FALSE_FRIENDS)
        # A topic's excluded phrases are false friends of all its keywords, numbered after
        # the built-in ones (one number per distinct phrase, whichever topics share it).
        numbers: dict[str, int] = {}
        for topic in self.topics:
            for phrase in topic.exclude:
                if keyword_key(phrase) not in numbers:
                    numbers[keyword_key(phrase)] = len(phrases)
                    phrases.append(phrase)
        self._excluded = [
            frozenset(numbers[keyword_key(p)] for p in t.exclude) for t in self.topics
        ]
        self._whole = [t for t, topic in enumerate(self.topics) if topic.whole_categories]
        if numbers or any(kw.friends for topic in self.topics for kw in topic.keywords):
            for n, phrase in enumerate(phrases):
                plain = phrase.replace("[", "").replace("]", "")
                self._add(tuple((seq, 1.0) for seq in variants(plain)), _FRIEND, n)

    def _add(self, sequences: Iterable[tuple[Seq, float]], topic: int, keyword: int) -> None:
        for seq, share in sequences:
            self._starts.setdefault(seq[0], {}).setdefault(seq, []).append((topic, keyword, share))

    def with_frequencies(self, frequencies: DocumentFrequencies) -> TopicIndex:
        """Return this index weighing keywords by other document frequencies."""
        other = copy(self)
        other.frequencies = frequencies
        other._factors = [_keyword_factors(t, frequencies) for t in self.topics]
        return other

    def score(self, paper: PaperText, threshold: float = 1.0) -> list[Scored]:
        """Return (topic number, score, evidence) of each topic scoring at least threshold."""
        return self._score_found(paper, self._find(paper), threshold, threshold)

    def score_listing(
        self,
        papers: Sequence[PaperText],
        threshold: float = 1.0,
        *,
        background: Iterable[PaperText] = (),
        counted: Callable[[int], bool] | None = None,
        members_at: float | None = None,
    ) -> list[list[Scored]]:
        """Score papers with keyword weights counted over the recent listings.

        Those are the papers scored (or those whose number `counted` accepts) and the
        background: the rest of the recent listings, counted but not scored. A paper of a
        whole-category topic's categories scores at least `members_at` for it (by default
        the threshold; a caller that keeps weaker pairs gives the real one).
        """
        floor = threshold if members_at is None else members_at
        found = [self._find(p) for p in papers]
        counts: Counter[str] = Counter()
        seen = 0
        for n, (paper, hits) in enumerate(zip(papers, found, strict=True)):
            if counted is None or counted(n):
                counts.update(self._keys_found(paper, hits))
                seen += 1
        for paper in background:
            counts.update(self._keys_found(paper, self._find(paper)))
            seen += 1
        index = self.with_frequencies(DocumentFrequencies(seen, counts))
        return [
            index._score_found(p, h, threshold, floor) for p, h in zip(papers, found, strict=True)
        ]

    def count_keywords(self, papers: Iterable[PaperText]) -> DocumentFrequencies:
        """Count the papers in which each keyword of the index is found."""
        counts: Counter[str] = Counter()
        seen = 0
        for paper in papers:
            counts.update(self._keys_found(paper, self._find(paper)))
            seen += 1
        return DocumentFrequencies(seen, counts)

    def mentions(self, paper: PaperText) -> dict[str, set[str]]:
        """Return the key of each keyword found in a paper with the phrases its mentions
        stand in: the mention with the word before it ("accretion disc corona" -> "disc
        corona"), lowercased; an empty set when no mention has such a word.

        What an admin reads to see where a keyword is misread or which phrase to write.
        """
        found, friends = self._find(paper)
        out: dict[str, set[str]] = {}
        for t, by_keyword in found.items():
            for k, spans in by_keyword.items():
                kw = self.topics[t].keywords[k]
                for span in _valid(kw, spans, friends, paper, self._excluded[t]):
                    phrases = out.setdefault(kw.key, set())
                    tokens = paper.fields[span.field]
                    if span.start > 0 and tokens.joined[span.start]:
                        before = tokens.span_text(span.start - 1, span.start)
                        if before.lower() not in FUNCTION_WORDS:
                            phrases.add(tokens.span_text(span.start - 1, span.end).lower())
        return out

    def _keys_found(self, paper: PaperText, hits: _Found) -> set[str]:
        found, friends = hits
        return {
            self.topics[t].keywords[k].key
            for t, by_keyword in found.items()
            for k, spans in by_keyword.items()
            if _valid(self.topics[t].keywords[k], spans, friends, paper, self._excluded[t])
        }

    def _score_found(
        self, paper: PaperText, hits: _Found, threshold: float, floor: float
    ) -> list[Scored]:
        found, friends = hits
        members = {t for t in self._whole if _in_categories(self.topics[t], paper)}
        out = []
        for t in sorted(found.keys() | members):
            value, evidence = _score_topic(
                self.topics[t], found.get(t, {}), friends, paper, self._factors[t],
                self._excluded[t],
            )  # fmt: skip
            if t in members:
                value = max(value, floor)
            if value > 0 and value >= threshold:
                out.append((t, value, evidence))
        return out

    def _find(self, paper: PaperText) -> _Found:
        """Find every sequence of the index in the paper; group the hits by topic and keyword."""
        found: dict[int, _Hits] = {}
        friends: list[tuple[int, Span]] = []
        for name, tokens in paper.fields.items():
            for span, targets in self._matches(name, tokens):
                for t, k, share in targets:
                    hit = span if share == 1.0 else span._replace(share=span.share * share)
                    if t == _FRIEND:
                        friends.append((k, hit))
                    else:
                        found.setdefault(t, {}).setdefault(k, []).append(hit)
        return found, friends

    def _matches(self, name: str, tokens: Tokens) -> Iterator[tuple[Span, list[_Target]]]:
        """Yield each place where a sequence of the index matches one field, with its targets."""
        starts, gaps = self._starts, GAP_SHARE > 0
        wanted = tokens.vocabulary & starts.keys()
        if not wanted:
            return  # most topics' words are absent from most papers
        forms = tokens.forms
        for i in [i for i, fs in enumerate(forms) if not wanted.isdisjoint(fs)]:
            for form in wanted.intersection(forms[i]):
                for seq, targets in starts[form].items():
                    end, gapped = match_at(tokens, i, seq, gaps) if len(seq) > 1 else (i + 1, False)
                    if end > 0:
                        text = tokens.span_text(i, end)
                        share = GAP_SHARE if gapped else 1.0
                        yield Span(name, i, end, tokens.sentence(i), share, text), targets


def _score_topic(
    topic: TopicMatcher,
    hits: _Hits,
    friends: list[tuple[int, Span]],
    paper: PaperText,
    factors: Sequence[float],
    excluded: frozenset[int] = frozenset(),
) -> tuple[float, list[str]]:
    """Score one topic from its hits in a paper; return the score and the evidence."""
    kept = {}
    for k, spans in hits.items():
        if spans := _valid(topic.keywords[k], spans, friends, paper, excluded):
            kept[k] = _outermost(spans)
    weighed = sorted(
        (_keyword_weight(topic.keywords[k], s, factors[k]) for k, s in _drop_nested(kept).items()),
        key=lambda w: -w[0],
    )
    score = sum(weight * DECAY**i for i, (weight, _) in enumerate(weighed))
    if factors and (best := max(factors)) < 1.0:
        score /= best  # all its keywords are common: the strongest evidence still places a paper
    evidence = [label for _, label in weighed]
    score += _category_score(topic, paper, evidence)
    if score > 0:
        score += _description_score(topic, paper, evidence)
    return round(score, 3), evidence


def _valid(
    kw: Keyword,
    spans: list[Span],
    friends: list[tuple[int, Span]],
    paper: PaperText,
    excluded: frozenset[int] = frozenset(),
) -> list[Span]:
    """Drop hits inside a false friend ("search" in "neural architecture search") or one of
    the topic's excluded phrases, or of an acronym the paper redefines."""
    if kw.friends or excluded:
        masks = [f for n, f in friends if n in kw.friends or n in excluded]
        spans = [s for s in spans if not any(_inside(s, m) for m in masks)]
    if spans and kw.meanings and _redefined(kw, paper):
        return []
    return spans


def _inside(span: Span, outer: Span) -> bool:
    return span.field == outer.field and outer.start <= span.start and span.end <= outer.end


def _outermost(spans: list[Span]) -> list[Span]:
    """Keep one span per place: a full match over a partial one inside it."""
    if len(spans) == 1:
        return spans
    spans = sorted(spans, key=lambda s: (s.field, s.start, -(s.end - s.start), -s.share))
    out: list[Span] = []
    for s in spans:
        if not any(_inside(s, o) for o in out):
            out.append(s)
    return out


def _drop_nested(kept: dict[int, list[Span]]) -> dict[int, list[Span]]:
    """Drop keywords found only inside a longer keyword's hits ("language model" in "large ...")."""
    if len(kept) < 2:
        return kept
    return {
        k: spans
        for k, spans in kept.items()
        if not all(
            any(
                _inside(s, o) and o.end - o.start > s.end - s.start
                for j, os in kept.items()
                if j != k
                for o in os
            )
            for s in spans
        )
    }


def _redefined(kw: Keyword, paper: PaperText) -> bool:
    """Tell whether the paper spells the acronym out as something else: "attack ... (ASR)"."""
    core = acronym_form(kw.acronym)[1:]
    pattern = re.compile(r"\(\s*" + re.escape(core) + r"s?\s*[);,]")
    for text in (paper.title, paper.abstract):
        for m in pattern.finditer(text):
            before = tokenize(text[max(0, m.start() - 80) : m.start()])
            if not any(
                seq[0] in forms and match_at(before, i, seq, gaps=False)[0] > 0
                for seq in kw.meanings
                for i, forms in enumerate(before.forms)
            ):
                return True
    return False


def _keyword_weight(kw: Keyword, spans: list[Span], factor: float) -> tuple[float, str]:
    """Weigh one keyword's hits across title, paper keywords and abstract; label the best."""
    # A single ordinary word in a title still names the subject; elsewhere it is vaguer.
    vague = SINGLE_WORD_FACTOR if kw.single_word else 1.0
    by_field: dict[str, list[Span]] = {}
    for s in spans:
        by_field.setdefault(s.field, []).append(s)
    weights = {}
    for name, found in by_field.items():
        share = max(s.share for s in found)
        if name == "title":
            weights[name] = TITLE_WEIGHT * share
        elif name == "keyword":
            weights[name] = PAPER_KEYWORD_WEIGHT * vague * share
        else:
            first = LEAD_WEIGHT if found[0].sentence < LEAD_SENTENCES else LATE_WEIGHT
            weight = min(first + ABSTRACT_REPEAT * (len(found) - 1), ABSTRACT_MAX)
            weights[name] = weight * vague * share
    best = max(weights, key=weights.__getitem__)
    total = weights[best] + SECONDARY_SHARE * (sum(weights.values()) - weights[best])
    total *= factor  # a keyword most recent papers mention says little about this one
    shown = max(by_field[best], key=lambda s: s.share)
    label = f'{best}: "{shown.text}"'
    if best == "abstract" and len(by_field[best]) > 1:
        label += f" x{len(by_field[best])}"
    if shown.share < 1.0:
        label += f" (partial: {kw.text})"
    return total, label


def _category_score(topic: TopicMatcher, paper: PaperText, evidence: list[str]) -> float:
    for i, cat in enumerate(paper.categories):
        if cat in topic.categories:
            evidence.append(f"category: {cat}")
            if topic.whole_categories:
                return CATEGORY_MEMBER
            return CATEGORY_PRIMARY if i == 0 else CATEGORY_CROSS
    return 0.0


def _in_categories(topic: TopicMatcher, paper: PaperText) -> bool:
    return not topic.categories.isdisjoint(paper.categories)


def _description_score(topic: TopicMatcher, paper: PaperText, evidence: list[str]) -> float:
    """Add a little for each description word in the title or abstract (not alone)."""
    fields = [f for name, f in paper.fields.items() if name != "keyword"]
    found = [kw.text for kw in topic.description if any(_mentions(f, kw) for f in fields)]
    if not found:
        return 0.0
    evidence.append("description: " + ", ".join(found[:4]))
    return min(DESCRIPTION_WORD * len(found), DESCRIPTION_CAP)


def _mentions(tokens: Tokens, kw: Keyword) -> bool:
    """Tell whether a field mentions a keyword, checking the cheap vocabulary first."""
    return any(
        seq[0] in tokens.vocabulary
        and (
            len(seq) == 1
            or any(
                seq[0] in fs and match_at(tokens, i, seq, False)[0] > 0
                for i, fs in enumerate(tokens.forms)
            )
        )
        for seq, _ in kw.sequences
    )
