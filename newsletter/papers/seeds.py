"""A reader's own papers from what they give: identifiers, or a library file they upload.

Each identifier or library entry becomes a seed (`matching.seeds`): the stored paper's text
when the store holds it (by arXiv id, whatever version, or DOI), else arXiv's answer to one
`id_list` look-up for the arXiv ids it lacks, else the entry's own title and abstract. An
identifier given alone that nothing finds is an error (`resolve_refs`); a library entry that
nothing finds and that has no title of its own is left out and named (`seeds_from_library`).
With `meaning`, each seed comes with its sentence vector (`matching.seeds.embedded`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.config import Settings
from newsletter.core.errors import InputError, SourceError, quoted
from newsletter.core.models import Paper
from newsletter.core.wording import trim_text
from newsletter.matching.examples_store import (
    EXAMPLE_FORMS,
    is_doi,
    normalise_paper_refs,
    resolve_paper_refs,
)
from newsletter.matching.seeds import (
    ABSTRACT_MAX,
    MAX_SEEDS,
    TITLE_MAX,
    Seed,
    checked_seeds,
    embedded,
)
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.arxiv import lookup_arxiv
from newsletter.papers.sources.http import RetryPolicy, make_source_client
from newsletter.papers.sources.library import LibraryEntry, read_library

# Looks papers up by arXiv id: the ids arXiv knows, each with its record.
Lookup = Callable[[Sequence[str]], dict[str, PaperRecord]]
_SEPARATORS = re.compile(r"[\s,;]+")


@dataclass
class SeedChoice:
    """The seeds a file or a list of identifiers gives, and the entries left out, and why."""

    seeds: list[Seed] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


@contextmanager
def arxiv_lookup(settings: Settings) -> Iterator[Lookup]:
    """Yield a look-up through the arXiv API at `arxiv_api_url`, polite as the fetcher is."""
    retry = RetryPolicy(tries=settings.http_retries, backoff=settings.http_backoff)
    with make_source_client(settings, retry=retry) as client:
        yield lambda ids: lookup_arxiv(
            ids,
            base_url=settings.arxiv_api_url,
            client=client,
            spacing=settings.arxiv_request_interval,
        )


def split_refs(value: str) -> list[str]:
    """Split "2507.01234, 10.1101/x hep-th/9901001v2" into normalised identifiers."""
    refs = normalise_paper_refs(part for part in _SEPARATORS.split(value) if part)
    if len(refs) > MAX_SEEDS:
        raise InputError(f"at most {MAX_SEEDS} papers of one's own, got {len(refs)}")
    return refs


def resolve_refs(
    refs: Sequence[str], *, session: Session, lookup: Lookup, meaning: bool = False
) -> list[Seed]:
    """Return a seed per identifier, or raise InputError naming the first nothing finds."""
    where = "--seed-papers"
    entries = [
        LibraryEntry(where, doi=ref) if is_doi(ref) else LibraryEntry(where, arxiv_id=ref)
        for ref in refs
    ]
    choice = _choose(entries, session=session, lookup=lookup)
    if choice.left_out:
        raise InputError(choice.left_out[0])
    return embedded(choice.seeds, enabled=meaning)


def seeds_from_library(
    data: bytes, name: str, *, session: Session, lookup: Lookup | None, meaning: bool = False
) -> SeedChoice:
    """Read a library file into seeds; raise InputError when the file gives none.

    Without `lookup` (or when arXiv cannot be reached), an entry the store lacks keeps its
    own text.
    """
    entries = read_library(data, name)
    choice = _choose(entries, session=session, lookup=lookup, quiet=True)
    if not choice.seeds:
        raise InputError(f"{name}: no entry with a title or an identifier that names a paper")
    choice.seeds = embedded(checked_seeds(choice.seeds), enabled=meaning)
    return choice


def _choose(
    entries: Iterable[LibraryEntry],
    *,
    session: Session,
    lookup: Lookup | None,
    quiet: bool = False,
) -> SeedChoice:
    entries = list(entries)
    stored = _stored(entries, session=session)
    wanted = [
        e.arxiv_id
        for e in entries
        if e.arxiv_id and _key(e) not in stored and not (e.title and e.abstract)
    ]
    found = _looked_up(list(dict.fromkeys(wanted)), lookup, quiet=quiet)
    choice = SeedChoice()
    for entry in entries:
        seed = stored.get(_key(entry)) or _from_record(entry, found.get(entry.arxiv_id or ""))
        if seed is None and entry.title:
            seed = Seed(entry.title, entry.abstract, entry.arxiv_id, entry.doi)
        if seed is None:
            choice.left_out.append(_not_found(entry))
        else:
            choice.seeds.append(seed)
    return choice


def _key(entry: LibraryEntry) -> str:
    return entry.arxiv_id or entry.doi or ""


def _stored(entries: list[LibraryEntry], *, session: Session) -> dict[str, Seed]:
    """Return a seed made of the stored paper, by each entry's identifier the store holds."""
    # The arXiv id first: a journal DOI may name another stored paper.
    refs = [ref for e in entries for ref in (e.arxiv_id, e.doi) if ref]
    ids = resolve_paper_refs(list(dict.fromkeys(refs)), session=session)
    if not ids:
        return {}
    rows = session.execute(
        select(Paper.id, Paper.title, Paper.abstract, Paper.arxiv_id, Paper.doi).where(
            Paper.id.in_(sorted(set(ids.values())))
        )
    )
    papers = {row.id: row for row in rows}
    found: dict[str, Seed] = {}
    for entry in entries:
        ref = next((r for r in (entry.arxiv_id, entry.doi) if r and r in ids), None)
        if ref is not None:
            p = papers[ids[ref]]
            found[_key(entry)] = Seed(
                trim_text(p.title, TITLE_MAX),
                trim_text(p.abstract or "", ABSTRACT_MAX),
                p.arxiv_id or entry.arxiv_id,
                p.doi or entry.doi,
            )
    return found


def _looked_up(
    arxiv_ids: list[str], lookup: Lookup | None, *, quiet: bool
) -> dict[str, PaperRecord]:
    if not arxiv_ids or lookup is None:
        return {}
    try:
        return lookup(arxiv_ids)
    except SourceError:
        if quiet:  # a library entry keeps its own title: arXiv's answer only fills it in
            return {}
        raise


def _from_record(entry: LibraryEntry, record: PaperRecord | None) -> Seed | None:
    if record is None:
        return None
    return Seed(
        trim_text(record.title, TITLE_MAX),
        trim_text(record.abstract, ABSTRACT_MAX),
        record.arxiv_id,
        entry.doi or record.doi,
    )


def _not_found(entry: LibraryEntry) -> str:
    if entry.arxiv_id:
        return f"{entry.where}: arXiv has no paper {quoted(entry.arxiv_id)}"
    if entry.doi:
        return (
            f"{entry.where}: no stored paper has the DOI {quoted(entry.doi)}, and a DOI "
            "cannot be looked up: give its arXiv id, or upload it in a library file with its "
            "title and abstract"
        )
    return f"{entry.where}: no title and no identifier ({EXAMPLE_FORMS})"
