"""The text of the Hugging Face Daily Papers web page: title, blank line, abstract, repeated."""

from __future__ import annotations

import re
from datetime import date

from newsletter.core.errors import InputError
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.common import clean_text, decode_text, no_listing

SOURCE = "hf-page"
# The page chrome above the first paper, compared casefolded.
HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "daily papers",
        "by ak and the research community",
    }
)
# A real title is one line; longer lines are abstracts (a sign of a shifted or cut text).
TITLE_MAX_CHARS = 400
_BLANK_LINES = re.compile(r"\n[ \t]*\n")


def parse_seed_text(
    data: bytes, *, name: str, listing_date: date | None = None
) -> list[PaperRecord]:
    """Parse the page text into records keyed by title (it holds no arXiv ids)."""
    text = decode_text(data, name).replace("\r\n", "\n")
    if text.lstrip()[:1] in ("[", "{", "<"):
        raise InputError(f"{name}: looks like JSON or XML, not the Daily Papers page text")
    blocks = _blocks(text)
    while blocks and blocks[0][1].casefold() in HEADER_LINES:
        blocks.pop(0)
    if not blocks:
        raise no_listing(name, listing_date)
    if len(blocks) % 2:
        line, title = blocks[-1]
        raise InputError(f"{name}: line {line}: title {title[:60]!r} has no abstract (truncated?)")
    records = []
    for (line, title), (_, abstract) in zip(blocks[::2], blocks[1::2], strict=True):
        if "\n" in title or len(title) > TITLE_MAX_CHARS:
            raise InputError(f"{name}: line {line}: expected a one-line title, found a paragraph")
        records.append(
            PaperRecord(
                title=clean_text(title),
                abstract=clean_text(abstract),
                source=SOURCE,
                listing_date=listing_date,
            )
        )
    return records


def _blocks(text: str) -> list[tuple[int, str]]:
    """Split text at blank lines into (first line number, block) pairs."""
    blocks = []
    line = 1
    pos = 0
    for match in [*_BLANK_LINES.finditer(text), None]:
        end = match.start() if match else len(text)
        chunk = text[pos:end]
        stripped = chunk.strip()
        if stripped:
            lead = len(chunk) - len(chunk.lstrip())
            blocks.append((line + chunk[:lead].count("\n"), stripped))
        if match:
            line += text[pos : match.end()].count("\n")
            pos = match.end()
    return blocks
