"""The recent papers no topic matched, with the words that set them apart.

What an admin reads to see which topic or keyword is missing. Each paper of the window that
no topic took (as `matched` defines it) comes with its terms that are rarest in the window
(its words and two-word phrases, weighed by tf-idf over the window's papers); across them,
the terms and arXiv categories the unmatched papers share far more often than the window's
other papers: a group of them that a new topic, a keyword or a category would take.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.models import Paper
from newsletter.matching.matched import MATCH_DAYS, listed_count, unmatched_ids
from newsletter.matching.matches import recent_paper_rows
from newsletter.matching.text import FUNCTION_WORDS, WORD, is_acronym, stem
from newsletter.matching.wordlists import GENERIC_WORDS

TERMS_PER_PAPER = 5  # shown for each paper
SHARED_TERMS = 10
SHARED_CATEGORIES = 8
MIN_SHARED = 2  # a term or category of fewer unmatched papers names no group of them
MIN_LETTERS = 3  # shorter words ("x", "of", "2d") are not terms
TITLE_WEIGHT = 2  # a word of the title says more about the paper than one of the abstract
# Words of any abstract in any field: what a paper does, not what it is about.
FILLER = frozenset(
    """
    show shows shown present propose proposed find found obtain obtained give given provide
    allow allows result results paper papers here however well case cases first second two
    one three several various different recent recently known previous previously
    particular general certain study studied consider considered demonstrate demonstrated
    investigate investigated describe described discuss discussed report reported use used
    using obtain obtained derive derived introduce introduced develop developed establish
    established prove proved main due therefore thus further order also only very much many
    some other such same whose which there their them they these this those while whereas
    has have had was were can could would should will non make made way ways effect effects
    property properties respect terms term number numbers form forms part parts
    """.split()
)
# LaTeX commands whose backslash a source dropped ("mathcal{O}"): markup, not words.
LATEX_WORDS = frozenset(
    "mathcal mathbb mathrm mathbf mathfrak mathit mathsf frac sqrt left right cdot ldots "
    "textit textbf emph langle rangle".split()
)
TOP_TERMS = 10  # a paper's most distinctive terms, from which the shared ones are counted
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")  # \mathbb, \sqrt: markup, not words
_CHUNK = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]*")  # a run of words no punctuation breaks
_SKIPPED = frozenset(stem(w) for w in FUNCTION_WORDS | FILLER | GENERIC_WORDS | LATEX_WORDS)


@dataclass(frozen=True)
class SharedTerm:
    """A term that unmatched papers share: in how many of them, and of all the window's."""

    term: str
    unmatched: int
    listed: int


@dataclass(frozen=True)
class SharedCategory:
    """An arXiv category unmatched papers are listed in: how many of them, and of all."""

    category: str
    unmatched: int
    listed: int


@dataclass(frozen=True)
class UnmatchedPaper:
    """A recent paper no topic matched, with the terms that set it apart from the window."""

    paper_id: int
    arxiv_id: str | None
    title: str
    listing_date: date
    categories: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Unmatched:
    """The window's papers that no topic matched, and what they have in common."""

    days: int
    papers: int  # listed in the window
    unmatched: list[UnmatchedPaper]
    terms: list[SharedTerm]
    categories: list[SharedCategory]


def unmatched_papers(*, session: Session, days: int = MATCH_DAYS) -> Unmatched:
    """Return the papers of the last `days` days of listings that no topic matched, newest
    first, each with its most distinctive terms, and the terms and categories they share."""
    rows = _rows(unmatched_ids(session=session, days=days), session=session)
    found = {row[0]: _terms(row[2], row[3]) for row in rows}
    sample = recent_paper_rows(session=session, days=days)  # at most the newest 10,000
    sampled = {row[0] for row in sample}
    window = [_terms(row[1], row[2]) for row in sample]
    window += [terms for pid, terms in found.items() if pid not in sampled]
    df = Counter(key for terms in window for key in terms.counts)
    written = _written(window)
    top = {pid: _distinctive(terms, df, len(window)) for pid, terms in found.items()}
    papers = [
        UnmatchedPaper(
            paper_id=pid,
            arxiv_id=arxiv_id,
            title=title,
            listing_date=listed,
            categories=list(categories or ()),
            terms=[written[k] for k in top[pid][:TERMS_PER_PAPER]],
        )
        for pid, arxiv_id, title, _, listed, categories in rows
    ]
    return Unmatched(
        days=days,
        papers=listed_count(session=session, days=days),
        unmatched=papers,
        terms=_shared_terms(top, found, df, written),
        categories=_shared_categories(rows, sample),
    )


def _rows(ids: list[int], *, session: Session) -> list[Any]:
    """Return (id, arxiv id, title, abstract, listing date, categories) of the papers, in order."""
    by_id: dict[int, Any] = {}
    columns = (Paper.id, Paper.arxiv_id, Paper.title, Paper.abstract, Paper.listing_date,
               Paper.categories)  # fmt: skip
    for n in range(0, len(ids), 500):  # bounded IN lists, as SQLite wants
        query = select(*columns).where(Paper.id.in_(ids[n : n + 500]))
        by_id.update((row[0], row) for row in session.execute(query))
    return [by_id[i] for i in ids]


@dataclass(frozen=True)
class _Terms:
    """A paper's terms by key (their stems): weighted and plain counts, first written form."""

    counts: Counter[str]
    times: Counter[str]
    forms: dict[str, str]


def _terms(title: str | None, abstract: str | None) -> _Terms:
    """Read a paper's terms: its content words and the two-word phrases they make."""
    terms = _Terms(Counter(), Counter(), {})
    for text, weight in ((title or "", TITLE_WEIGHT), (abstract or "", 1)):
        for chunk in _CHUNK.findall(_LATEX_COMMAND.sub(" ", text)):
            words = WORD.findall(chunk)
            keys = [_word_key(w) for w in words]
            for i, key in enumerate(keys):
                if key is None:
                    continue
                _count(terms, key, _form(words[i]), weight)
                if i and keys[i - 1] is not None:
                    pair = f"{keys[i - 1]} {key}"
                    _count(terms, pair, f"{_form(words[i - 1])} {_form(words[i])}", weight)
    return terms


def _word_key(word: str) -> str | None:
    """Return the stem a word counts under, or None for a word that is no term."""
    if len(word) < MIN_LETTERS or not re.search("[A-Za-z]", word):
        return None
    key = stem(word)
    return None if key in _SKIPPED or word.lower() in _SKIPPED else key


def _form(word: str) -> str:
    return word if is_acronym(word) else word.lower()


def _count(terms: _Terms, key: str, form: str, weight: int) -> None:
    terms.counts[key] += weight
    terms.times[key] += 1
    terms.forms.setdefault(key, form)


def _written(papers: Iterable[_Terms]) -> dict[str, str]:
    """Return the form each term is most often written in across the papers."""
    seen: dict[str, Counter[str]] = {}
    for terms in papers:
        for key, form in terms.forms.items():
            seen.setdefault(key, Counter())[form] += 1
    return {key: forms.most_common(1)[0][0] for key, forms in seen.items()}


def _distinctive(terms: _Terms, df: Counter[str], total: int) -> list[str]:
    """Return a paper's TOP_TERMS terms that weigh most by tf-idf over the window.

    A two-word phrase counts when the paper repeats it or another paper has it too: once
    in one paper, it is more often two words side by side ("lattice equals") than a term.
    """
    candidates = [k for k in terms.counts if " " not in k or terms.times[k] >= 2 or df[k] >= 2]
    idf = {k: math.log((total + 1) / (df[k] + 1)) for k in candidates}
    ranked = sorted(candidates, key=lambda k: (-terms.counts[k] * idf[k], k))
    return _apart(ranked, terms.counts, TOP_TERMS)


def _apart(ranked: Sequence[str], counts: Mapping[str, float], limit: int) -> list[str]:
    """Keep the first terms of a ranking so that each says something the others do not.

    A term whose words a kept one holds goes ("spin" after "spin liquid"); a phrase that
    holds a kept word takes its place where it stands for most of its uses ("quantum dot"
    for "dot").
    """
    kept: list[str] = []
    for key in ranked:
        words = set(key.split())
        held = [k for k in kept if set(k.split()) <= words]
        if any(words <= set(k.split()) for k in kept):
            continue
        if held:
            if all(counts[key] * 2 >= counts[k] for k in held):
                kept = [key if k == held[0] else k for k in kept if k == held[0] or k not in held]
            continue
        kept.append(key)
        if len(kept) == limit:
            break
    return kept


def _shared_terms(
    top: Mapping[int, list[str]],
    found: Mapping[int, _Terms],
    df: Counter[str],
    written: Mapping[str, str],
) -> list[SharedTerm]:
    """Return the terms that set apart most unmatched papers: among the most distinctive
    terms of at least MIN_SHARED of them, the most often so first, then those the window's
    matched papers have least."""
    votes = Counter(k for terms in top.values() for k in terms)
    holders = Counter(k for terms in found.values() for k in terms.counts)
    shared = [k for k, n in votes.items() if n >= MIN_SHARED]
    ranked = sorted(shared, key=lambda k: (-votes[k], -holders[k] / df[k], k))
    return [SharedTerm(written[k], holders[k], df[k]) for k in _apart(ranked, votes, SHARED_TERMS)]


def _shared_categories(rows: list[Any], sample: list[Any]) -> list[SharedCategory]:
    """Return the categories unmatched papers are listed in most, with the window's counts."""
    unmatched = Counter(c for row in rows for c in set(row[5] or ()))
    listed = Counter(c for row in sample for c in set(row[4] or ()))
    common = [(c, n) for c, n in unmatched.most_common() if n >= MIN_SHARED]
    return [SharedCategory(c, n, max(listed[c], n)) for c, n in common[:SHARED_CATEGORIES]]
