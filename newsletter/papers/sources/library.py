"""Readers' libraries: BibTeX, RIS and CSL-JSON files as Zotero, Mendeley and others export them.

Each entry comes out as its title, its abstract and the identifiers it names (an arXiv id from
an `eprint`, `arxivId`, arXiv link, `arXiv:` note or arXiv DOI; a DOI), for `papers.seeds`
to match against the store. The files are hostile: they are read within caps (MAX_BYTES,
MAX_ENTRIES, the seed's title and abstract lengths), by bibtexparser and rispy, and nothing
in them is run or expanded: BibTeX's `@string` abbreviations are left as written, its braces
dropped, and LaTeX shown as text as in the digest (`core.latex.readable`), never interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bibtexparser
import rispy
from bibtexparser.middlewares import RemoveEnclosingMiddleware
from bibtexparser.model import DuplicateBlockKeyBlock, Entry

from newsletter.core.errors import InputError
from newsletter.core.identifiers import arxiv_id_of_doi, doi_of
from newsletter.core.latex import readable
from newsletter.core.wording import trim_text
from newsletter.matching.examples_store import normalise_paper_ref
from newsletter.matching.seeds import ABSTRACT_MAX, MAX_SEEDS, TITLE_MAX
from newsletter.papers.sources.common import clean_text, decode_text, load_json

MAX_BYTES = 1024 * 1024  # a library of a few hundred papers is well under this
MAX_ENTRIES = MAX_SEEDS
FORMATS = ("bibtex", "ris", "csl-json")
# An arXiv id where a library writes one: a link to its page or PDF, or "arXiv:2306.06918".
_ARXIV_MENTION = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf)/|\barxiv:\s*)"
    r"(\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z-]*(?:\.[a-z]{2})?/\d{7}(?:v\d+)?)",
    re.IGNORECASE,
)
_BIBTEX_BLOCK = re.compile(r"@\s*[A-Za-z]+\s*[{(]")
_RIS_START = re.compile(r"^\s*TY  -", re.MULTILINE)
_BRACES = re.compile(r"(?<!\\)[{}]")


@dataclass(frozen=True)
class LibraryEntry:
    """One paper of a library file, or one identifier given on the command line."""

    where: str  # "entry 3 (line 41)", or the identifier as written
    title: str = ""
    abstract: str = ""
    arxiv_id: str | None = None  # without version
    doi: str | None = None  # lowercase, never arXiv's own


def read_library(data: bytes, name: str) -> list[LibraryEntry]:
    """Read a BibTeX, RIS or CSL-JSON file (told apart by content) into its entries.

    Raise InputError, naming the file, when it is too big, holds too many entries, is in none
    of these formats or holds no entry at all.
    """
    if len(data) > MAX_BYTES:
        raise InputError(f"{name}: larger than {MAX_BYTES // 1024} KB: export fewer papers")
    text = decode_text(data, name)
    kind = library_format(text, name)
    entries = {"csl-json": _csl_json, "ris": _ris, "bibtex": _bibtex}[kind](text, name)
    if not entries:
        raise InputError(f"{name}: no paper in this {kind} file")
    return entries


def library_format(text: str, name: str) -> str:
    """Tell a library's format from its first characters."""
    start = text.lstrip()[:1]
    if start in ("[", "{"):
        return "csl-json"
    if _RIS_START.search(text[:4096]):
        return "ris"
    if _BIBTEX_BLOCK.search(text):
        return "bibtex"
    raise InputError(f"{name}: not a BibTeX, RIS or CSL-JSON file")


def _too_many(count: int, name: str) -> InputError:
    return InputError(
        f"{name}: {count:,} entries, more than {MAX_ENTRIES}: export only your own papers"
    )


def _entry(
    where: str,
    title: Any,
    abstract: Any,
    ids: Iterable[Any],
    dois: Iterable[Any],
    *,
    bibtex: bool = False,
) -> LibraryEntry:
    """Build an entry from raw field values: text made readable, identifiers normalised."""
    arxiv_id, doi = None, None
    for value in dois:
        found = doi_of(str(value)) if value else None
        if found and arxiv_id_of_doi(found):
            arxiv_id = arxiv_id or _arxiv(arxiv_id_of_doi(found))
        elif found:
            doi = doi or found
    for value in ids:
        arxiv_id = arxiv_id or _arxiv(value)
    return LibraryEntry(
        where,
        _text(title, TITLE_MAX, bibtex=bibtex),
        _text(abstract, ABSTRACT_MAX, bibtex=bibtex),
        arxiv_id,
        doi,
    )


def _arxiv(value: Any) -> str | None:
    """Return the arXiv id a value is or mentions, without version; None if none."""
    text = clean_text(value)
    if not text:
        return None
    mention = _ARXIV_MENTION.search(text)
    try:
        return normalise_paper_ref(mention.group(1) if mention else text)
    except InputError:
        return None


def _text(value: Any, limit: int, *, bibtex: bool) -> str:
    """Return a field as readable text within limit characters (LaTeX shown, never run)."""
    text = clean_text(" ".join(value) if isinstance(value, list) else value)
    text = readable(trim_text(text, limit * 2))
    if bibtex:  # braces protect case in BibTeX: they are not part of the title
        text = clean_text(_BRACES.sub("", text))
    return trim_text(text, limit)


def _bibtex(text: str, name: str) -> list[LibraryEntry]:
    blocks = len(_BIBTEX_BLOCK.findall(text))
    if blocks > 2 * MAX_ENTRIES:  # before parsing: each block costs the parser a pass
        raise _too_many(blocks, name)
    # Only the enclosing braces are removed: @string abbreviations stay unexpanded.
    library = bibtexparser.parse_string(text, parse_stack=[RemoveEnclosingMiddleware()])
    entries: list[Entry] = list(library.entries)
    entries += [
        block.ignore_error_block
        for block in library.failed_blocks
        if isinstance(block, DuplicateBlockKeyBlock) and isinstance(block.ignore_error_block, Entry)
    ]
    if not entries and library.failed_blocks:
        line = library.failed_blocks[0].start_line or 0  # the parser sets it on every block
        raise InputError(f"{name}: not readable as BibTeX (the entry at line {line + 1})")
    if len(entries) > MAX_ENTRIES:
        raise _too_many(len(entries), name)
    return [_bibtex_entry(n, e) for n, e in enumerate(entries, 1)]


def _bibtex_entry(number: int, entry: Entry) -> LibraryEntry:
    fields = {key.lower(): str(f.value) for key, f in entry.fields_dict.items()}
    archive = (fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
    eprint = fields.get("eprint") if archive == "arxiv" else None
    mentions = [fields.get(k) for k in ("url", "note", "journal", "howpublished", "number")]
    return _entry(
        f"entry {number} (line {(entry.start_line or 0) + 1})",
        fields.get("title"),
        fields.get("abstract"),
        [eprint, fields.get("arxivid"), *(_mention(m) for m in mentions)],
        [fields.get("doi")],
        bibtex=True,
    )


def _mention(value: str | None) -> str | None:
    found = _ARXIV_MENTION.search(value or "")
    return found.group(1) if found else None


def _ris(text: str, name: str) -> list[LibraryEntry]:
    starts = len(_RIS_START.findall(text))
    if starts > MAX_ENTRIES:
        raise _too_many(starts, name)
    try:
        records = rispy.loads(text)
    except (OSError, ValueError, KeyError) as exc:  # rispy's own errors for a broken record
        raise InputError(f"{name}: not readable as RIS ({str(exc)[:80]})") from None
    return [_ris_entry(n, r) for n, r in enumerate(records, 1)]


def _ris_entry(number: int, record: dict[str, Any]) -> LibraryEntry:
    urls = record.get("urls") or []
    notes = record.get("notes") or []
    title = record.get("title") or record.get("primary_title") or record.get("translated_title")
    return _entry(
        f"entry {number}",
        title,
        record.get("abstract") or record.get("notes_abstract"),
        [_mention(str(u)) for u in [*urls, *notes]],
        [record.get("doi")],
    )


def _csl_json(text: str, name: str) -> list[LibraryEntry]:
    doc = load_json(text.encode("utf-8"), name)
    items = doc if isinstance(doc, list) else [doc]
    if len(items) > MAX_ENTRIES:
        raise _too_many(len(items), name)
    entries = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InputError(f"{name}: entry {number} is not a CSL-JSON object")
        entries.append(_csl_entry(number, item))
    return entries


def _csl_entry(number: int, item: dict[str, Any]) -> LibraryEntry:
    def text(key: str) -> str | None:
        value = item.get(key)
        return value if isinstance(value, str) else None

    archive = (text("archive") or text("publisher") or "").lower()
    number_id = text("number") if archive == "arxiv" else None
    return _entry(
        f"entry {number}",
        text("title"),
        text("abstract"),
        [number_id, _mention(text("URL")), _mention(text("note"))],
        [text("DOI")],
    )
