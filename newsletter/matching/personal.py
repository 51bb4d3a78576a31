"""A reader's own rules: authors they follow, words they muted, keywords of their own.

Author names match across sources: accents, case, initials and "Last, First" order do not
matter ("Doe, Jane", "J. Doe" and "Jane Doe" are one author). Muted words and personal
keywords match like a topic's keywords (whole words, inflections, acronyms), so "agent"
also mutes "agents". Each distinct word, and each distinct list of followed authors, is
matched against an edition's papers once, however many readers chose it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from newsletter.matching.scoring import PaperText, TopicMatcher

MAX_RULES = 50  # per reader and kind: enough for anyone, bounded for the sender
MAX_RULE_LENGTH = 100
FOLLOWED_KEPT = 4096  # distinct lists of followed authors remembered per edition
_NAME_PARTS = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def author_key(name: str) -> tuple[str, str] | None:
    """Return (last name, first name or initial) of an author's name, or None for no name."""
    name = _plain(name).strip()
    if "," in name:  # "Doe, Jane" -> "Jane Doe"
        last, _, first = name.partition(",")
        name = f"{first} {last}"
    parts = [p for p in _NAME_PARTS.findall(name) if p not in _SUFFIXES]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0], ""
    return parts[-1], parts[0]


def same_author(key: tuple[str, str], other: tuple[str, str]) -> bool:
    """Tell whether two author keys name one person: "J" matches "Jane", "Jane" not "John"."""
    if key[0] != other[0]:
        return False
    first, second = key[1], other[1]
    if not first or not second:
        return True
    if len(first) == 1 or len(second) == 1:
        return first[0] == second[0]
    return first == second


def clean_rules(values: Iterable[str]) -> list[str]:
    """Return a reader's rules stripped, without blanks or repeats, bounded in number and size."""
    seen: dict[str, str] = {}
    for value in values:
        text = " ".join(str(value).split())[:MAX_RULE_LENGTH]
        if text and text.casefold() not in seen:
            seen[text.casefold()] = text
    return list(seen.values())[:MAX_RULES]


@dataclass(frozen=True)
class ReaderRules:
    """One reader's followed authors, muted words and personal keywords."""

    follow_authors: tuple[str, ...] = ()
    muted_words: tuple[str, ...] = ()
    personal_keywords: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.follow_authors or self.muted_words or self.personal_keywords)


class EditionText:
    """An edition's papers as the matcher reads them, with word matches shared by readers."""

    def __init__(
        self, papers: Mapping[int, tuple[PaperText, Sequence[str]]], threshold: float
    ) -> None:
        self._papers = papers
        self._threshold = threshold
        self._mentions: dict[str, frozenset[int]] = {}
        self._matches: dict[str, frozenset[int]] = {}
        self._followed: dict[tuple[str, ...], dict[int, str]] = {}
        self._authors = {
            pid: [(a, author_key(a)) for a in authors] for pid, (_, authors) in papers.items()
        }

    def mentioning(self, word: str) -> frozenset[int]:
        """Return the papers that mention a word anywhere (for muting)."""
        key = word.casefold()
        if key not in self._mentions:
            self._mentions[key] = self._scan(word, 0.0)
        return self._mentions[key]

    def matching(self, keyword: str) -> frozenset[int]:
        """Return the papers a keyword matches as a topic would (for personal keywords)."""
        key = keyword.casefold()
        if key not in self._matches:
            self._matches[key] = self._scan(keyword, self._threshold)
        return self._matches[key]

    def _scan(self, word: str, threshold: float) -> frozenset[int]:
        matcher = TopicMatcher.compile("reader", [word])
        found = set()
        for pid, (text, _) in self._papers.items():
            score, _ = matcher.score(text)
            if score > threshold or (threshold and score >= threshold):
                found.add(pid)
        return frozenset(found)

    def by_followed(self, followed: Sequence[str]) -> dict[int, str]:
        """Return the papers by any followed author, with the name as the paper spells it.

        The mapping is shared by the readers who follow the same authors: read it, never change it.
        """
        key = tuple(followed)
        found = self._followed.get(key)
        if found is None:
            if len(self._followed) >= FOLLOWED_KEPT:  # bounded: memory flat in readers
                del self._followed[next(iter(self._followed))]
            found = self._followed[key] = self._by_followed(key)
        return found

    def _by_followed(self, followed: Sequence[str]) -> dict[int, str]:
        keys = [k for k in map(author_key, followed) if k is not None]
        found: dict[int, str] = {}
        for pid, authors in self._authors.items():
            for name, key in authors:
                if key is not None and any(same_author(key, k) for k in keys):
                    found[pid] = name
                    break
        return found
