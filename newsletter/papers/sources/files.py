"""Paper files: the formats we read, detection by content, and parsing a file by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from newsletter.core.errors import InputError
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.arxiv import ATOM, parse_arxiv_atom, parse_arxiv_rss
from newsletter.papers.sources.common import decode_text, load_json, load_xml, local_name
from newsletter.papers.sources.hf import parse_hf_json
from newsletter.papers.sources.jsonfile import parse_json_papers
from newsletter.papers.sources.seedtext import parse_seed_text

Parser = Callable[..., list[PaperRecord]]
PARSERS: dict[str, Parser] = {
    "seed-text": parse_seed_text,
    "json": parse_json_papers,
    "hf-json": parse_hf_json,
    "arxiv-atom": parse_arxiv_atom,
    "arxiv-rss": parse_arxiv_rss,
}
FORMATS = ("auto", *PARSERS)


def detect_format(data: bytes, name: str) -> str:
    """Tell the format from the content: JSON shape, XML root element, else page text."""
    text = decode_text(data, name).lstrip()
    if text[:1] in ("[", "{"):
        return _json_format(data, name)
    if text[:1] == "<":
        return _xml_format(data, name)
    return "seed-text"


def _json_format(data: bytes, name: str) -> str:
    doc = load_json(data, name)
    if not isinstance(doc, list):
        raise InputError(f"{name}: expected a JSON array of papers, got a JSON object")
    first = doc[0] if doc else None
    return "hf-json" if isinstance(first, dict) and "paper" in first else "json"


def _xml_format(data: bytes, name: str) -> str:
    root = load_xml(data, name)
    if root.tag == ATOM + "feed":
        return "arxiv-atom"
    if root.tag == "rss":
        return "arxiv-rss"
    raise InputError(f"{name}: unknown XML document <{local_name(root.tag)}>: not Atom or RSS")


def parse_paper_bytes(
    data: bytes, *, name: str, fmt: str = "auto", listing_date: date | None = None
) -> list[PaperRecord]:
    """Parse one document in the given format (or the detected one)."""
    if fmt == "auto":
        fmt = detect_format(data, name)
    try:
        parser = PARSERS[fmt]
    except KeyError:
        raise InputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return parser(data, name=name, listing_date=listing_date)


def read_paper_file(
    path: str | Path, *, fmt: str = "auto", listing_date: date | None = None
) -> list[PaperRecord]:
    """Read and parse one paper file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_paper_bytes(data, name=str(path), fmt=fmt, listing_date=listing_date)
