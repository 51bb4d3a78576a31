"""What a digest is made of: the papers as a reader sees them, the recipient, the edition,
and the rendered email (its parts whole, or as shared literals with a recipient's values).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from newsletter.core.latex import readable


@dataclass(frozen=True)
class DigestPaper:
    """One paper as a subscriber sees it; topics are the subscriber's topics it matched."""

    paper_id: int
    title: str
    authors: tuple[str, ...]
    abstract: str
    url_abs: str | None
    url_pdf: str | None
    url_code: str | None
    upvotes: int | None
    topics: tuple[str, ...]
    summary: str | None = None  # a one-line TL;DR (Hugging Face's ai_summary)
    url_discussion: str | None = None  # the paper's Hugging Face page, with its comments
    reason: str | None = None  # why a paper outside the reader's topics is in their digest
    why: str | None = None  # why the matcher put it on the reader's topics, in a few words
    venue: str | None = None  # the journal (or preprint server) it appeared in
    url_journal: str | None = None  # the journal version, beside the preprint

    def __hash__(self) -> int:
        # Hashed once: a paper is part of the key of every card and digest it is in.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.paper_id, self.title, self.topics, self.reason, self.why))
            object.__setattr__(self, "_hash", cached)
        return cached


@lru_cache(maxsize=4096)  # a paper is in many digests of an edition: made readable once
def readable_paper(paper: DigestPaper) -> DigestPaper:
    """Return the paper with its title, authors, TL;DR and abstract as text, without LaTeX."""
    return dataclasses.replace(
        paper,
        title=readable(paper.title),
        authors=tuple([readable(a) for a in paper.authors]),
        abstract=readable(paper.abstract),
        summary=readable(paper.summary) if paper.summary else paper.summary,
    )


@dataclass(frozen=True)
class Recipient:
    """Who a digest is for; topics are the names of the topics they follow."""

    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]
    link_key: str = "none"  # the subscriber's key in link tokens (see newsletter.core.tokens)


@dataclass(frozen=True)
class EditionInfo:
    """The edition a digest belongs to."""

    listing_date: date
    kind: str = "daily"


@dataclass(frozen=True)
class Filled:
    """A body as its cached literals with the per-recipient values that go between them."""

    literals: tuple[str, ...]
    values: tuple[str, ...]

    def join(self) -> str:
        """Return the whole body."""
        parts = [self.literals[0]]
        for value, literal in zip(self.values, self.literals[1:], strict=True):
            parts.append(value)
            parts.append(literal)
        return "".join(parts)


class RenderedDigest:
    """The three rendered parts of one recipient's email.

    text_parts and html_parts, when present, let build_message_data reuse the encoding of the
    shared literals; they always join to text and html, which are joined only when read.
    """

    __slots__ = ("subject", "_text", "_html", "text_parts", "html_parts")

    def __init__(
        self,
        subject: str,
        text: str | None = None,
        html: str | None = None,
        text_parts: Filled | None = None,
        html_parts: Filled | None = None,
    ) -> None:
        if (text is None and text_parts is None) or (html is None and html_parts is None):
            raise ValueError("a digest needs its text and html, whole or in parts")
        self.subject = subject
        self._text = text
        self._html = html
        self.text_parts = text_parts
        self.html_parts = html_parts

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.text_parts.join()  # type: ignore[union-attr]  # text or its parts
        return self._text

    @property
    def html(self) -> str:
        if self._html is None:
            self._html = self.html_parts.join()  # type: ignore[union-attr]  # html or its parts
        return self._html

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderedDigest):
            return NotImplemented
        return (self.subject, self.text, self.html) == (other.subject, other.text, other.html)

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed has a method there

    def __repr__(self) -> str:
        return f"RenderedDigest(subject={self.subject!r}, text={self.text!r}, html={self.html!r})"
