"""Store paper records as papers: idempotent, one paper per work wherever it comes from.

A record is the stored paper of the same arXiv id (arXiv's own DOI included), else of the
same DOI, else of the same normalised title and first author: the same work from arXiv,
bioRxiv, a journal's feed and Hugging Face is one paper, filled in by each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter.core.identifiers import arxiv_id_of_doi, doi_link, doi_of, doi_of_link
from newsletter.core.models import Paper
from newsletter.core.wording import trim_text
from newsletter.matching.personal import author_key, same_author
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.common import TITLE_KEY_MAX, normalise_title

__all__ = [
    "IngestStats",
    "capped_record",
    "ingest_records",
    "merge_records",
    "normalise_title",
    "today_utc",
]

# Bound the IN lists: SQLite and PostgreSQL both cap the parameters of one statement.
KEY_CHUNK = 500
FILL_FIELDS = (
    "url_abs", "url_pdf", "url_code", "published_on", "summary", "doi", "venue", "url_journal",
)  # fmt: skip
UNION_FIELDS = ("keywords", "categories")
# What one paper may store, whatever its source says: roomy for real papers (arXiv caps an
# abstract at 1,920 characters, a TL;DR is a sentence), small enough that no source can
# make every digest, page and feed that shows the paper megabytes long.
TITLE_MAX = 500
ABSTRACT_MAX = 5_000
SUMMARY_MAX = 1_000
AUTHORS_MAX = 100
AUTHOR_MAX = 200
URL_MAX = 2_000
TERMS_MAX = 50  # keywords, categories
TERM_MAX = 100
VENUE_MAX = 300


@dataclass
class IngestStats:
    """What one ingest did: counts and the ids of every paper in the batch."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    paper_ids: list[int] = field(default_factory=list)
    listing_dates: list[date] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


def today_utc() -> date:
    """Return today's date in UTC: the default listing date."""
    return datetime.now(UTC).date()


def ingest_records(
    records: Iterable[PaperRecord], *, session: Session, listing_date: date | None = None
) -> IngestStats:
    """Insert new papers and fill in known ones; records without a date get listing_date.

    listing_date defaults to today in UTC. Does not commit.
    """
    batch = merge_records(records)
    index = _Index(_load_existing(session, batch), session)
    stats = IngestStats()
    papers = []
    for record in batch:
        paper = index.find(record)
        if paper is None:
            paper = _new_paper(record, index.free_key(record), listing_date or today_utc())
            session.add(paper)
            stats.inserted += 1
        elif _apply(paper, record):
            stats.updated += 1
        else:
            stats.unchanged += 1
        index.add(paper)
        papers.append(paper)
    session.flush()
    stats.paper_ids = [p.id for p in papers]
    stats.listing_dates = sorted({p.listing_date for p in papers})
    return stats


def capped_record(record: PaperRecord) -> PaperRecord:
    """Cut each field to what a paper may store: text at a word with "…", lists by count."""
    doi = doi_of(record.doi)
    arxiv_id = record.arxiv_id or arxiv_id_of_doi(doi)
    if arxiv_id_of_doi(doi):
        doi = None  # arXiv's DOI is its id: the paper's DOI is a journal's or a server's
    return dataclasses.replace(
        record,
        arxiv_id=arxiv_id,
        doi=doi,
        venue=trim_text(record.venue, VENUE_MAX) if record.venue else None,
        url_journal=_capped_url(record.url_journal),
        title=trim_text(record.title, TITLE_MAX),
        abstract=trim_text(record.abstract, ABSTRACT_MAX),
        summary=trim_text(record.summary, SUMMARY_MAX) if record.summary else record.summary,
        authors=[trim_text(name, AUTHOR_MAX) for name in record.authors[:AUTHORS_MAX]],
        url_abs=_capped_url(record.url_abs),
        url_pdf=_capped_url(record.url_pdf),
        url_code=_capped_url(record.url_code),
        keywords=[trim_text(term, TERM_MAX) for term in record.keywords[:TERMS_MAX]],
        categories=[trim_text(term, TERM_MAX) for term in record.categories[:TERMS_MAX]],
    )


def _capped_url(url: str | None) -> str | None:
    # A URL cut short leads somewhere else: drop one that is too long instead.
    return url if url is None or len(url) <= URL_MAX else None


def merge_records(records: Iterable[PaperRecord]) -> list[PaperRecord]:
    """Fold repeats of one paper in a batch into one record (by arXiv id, then by title).

    Every record is capped first (capped_record): whatever the source, nothing longer is stored.
    """
    by_key: dict[str, PaperRecord] = {}
    doi_owner: dict[str, str] = {}
    title_owner: dict[str, str] = {}
    pending = []
    key: str | None
    for record in map(capped_record, records):
        if not record.arxiv_id:
            pending.append(record)
            continue
        key = "id:" + record.arxiv_id
        by_key[key] = _combine(by_key[key], record) if key in by_key else record
        title_owner.setdefault(normalise_title(record.title), key)
        for doi in _dois(record):
            doi_owner.setdefault(doi, key)
    for record in pending:
        title = normalise_title(record.title)
        owners = [doi_owner.get(doi) for doi in _dois(record)]
        key = next((k for k in owners if k), None) or title_owner.get(title)
        if key is not None and not _same_work(by_key[key], record):
            key = None
        if key is None:
            key = "doi:" + record.doi if record.doi else "title:" + title
            if key in by_key:  # the title of another work: this one is told apart by author
                key += "|" + "|".join(record.authors[:1])
        by_key[key] = _combine(by_key[key], record) if key in by_key else record
        title_owner.setdefault(title, key)
        for doi in _dois(record):
            doi_owner.setdefault(doi, key)
    return list(by_key.values())


def journal_doi(item: PaperRecord | Paper) -> str | None:
    """Return the DOI of the journal version a preprint links to (a doi.org link), else None."""
    return doi_of_link(item.url_journal)


def _dois(item: PaperRecord | Paper) -> list[str]:
    """Return the DOIs that name the item: its own, and its journal version's."""
    return [doi for doi in (item.doi, journal_doi(item)) if doi]


def _is_journal_version_of(record: PaperRecord, paper: Paper) -> bool:
    return record.doi is not None and record.doi == journal_doi(paper)


def _journal_version(one: PaperRecord | Paper, other: PaperRecord | Paper) -> bool:
    """Tell whether one is the journal version the other, a preprint, links to (or back)."""
    linked = (journal_doi(one), journal_doi(other))
    return (linked[0] is not None and linked[0] == other.doi) or (
        linked[1] is not None and linked[1] == one.doi
    )


def _same_work(known: PaperRecord | Paper, record: PaperRecord) -> bool:
    """Tell whether a record found by DOI or title is the known paper, not another work.

    Another arXiv id or another DOI is another work; found by title alone, the first
    authors must agree too ("Introduction" by two people is two papers).
    """
    if record.arxiv_id and known.arxiv_id and record.arxiv_id != known.arxiv_id:
        return False
    if record.doi and known.doi:
        return record.doi == known.doi or _journal_version(known, record)
    return _same_first_author(known.authors or [], record.authors)


def _same_first_author(first: Sequence[str], other: Sequence[str]) -> bool:
    keys = [author_key(names[0]) if names else None for names in (first, other)]
    if keys[0] is None or keys[1] is None:
        return True  # a source without authors (the seed page) cannot say otherwise
    return same_author(keys[0], keys[1])


def _combine(first: PaperRecord, later: PaperRecord) -> PaperRecord:
    """Fill what the first record lacks from a later one; the earliest listing date wins."""
    values = {}
    for name in ("arxiv_id", "abstract", "authors", *FILL_FIELDS):
        values[name] = getattr(first, name) or getattr(later, name)
    for name in UNION_FIELDS:
        values[name] = _union(getattr(first, name), getattr(later, name))
    dates = [d for d in (first.listing_date, later.listing_date) if d is not None]
    values["listing_date"] = min(dates) if dates else None
    values["upvotes"] = later.upvotes if later.upvotes is not None else first.upvotes
    return dataclasses.replace(first, **values)


def _union(first: Sequence[str], later: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *later]))


def _load_existing(session: Session, batch: Sequence[PaperRecord]) -> list[Paper]:
    """Load, in a few queries, every stored paper that shares an arXiv id or title key."""
    ids = sorted({r.arxiv_id for r in batch if r.arxiv_id})
    dois = sorted({doi for r in batch for doi in _dois(r)})
    links = [doi_link(doi) for doi in dois]  # a preprint's journal version, stored as its link
    keys = sorted({normalise_title(r.title) for r in batch})
    found: dict[int, Paper] = {}
    for start in range(0, max(len(ids), len(dois), len(keys)), KEY_CHUNK):
        part = slice(start, start + KEY_CHUNK)
        query = select(Paper).where(
            or_(
                Paper.arxiv_id.in_(ids[part]),
                Paper.doi.in_(dois[part]),
                Paper.url_journal.in_(links[part]),
                Paper.title_key.in_(keys[part]),
            )
        )
        found.update((p.id, p) for p in session.scalars(query))
    return list(found.values())


class _Index:
    """Stored and new papers of a batch by arXiv id, by DOI and by title key."""

    def __init__(self, papers: Iterable[Paper], session: Session | None = None) -> None:
        self._session = session
        self.by_id: dict[str, Paper] = {}
        self.by_doi: dict[str, Paper] = {}  # by its own DOI and its journal version's
        self.by_title: dict[str, Paper] = {}
        for paper in papers:
            self.add(paper)

    def add(self, paper: Paper) -> None:
        if paper.arxiv_id:
            self.by_id[paper.arxiv_id] = paper
        if paper.doi:
            self.by_doi[paper.doi] = paper
        if (linked := journal_doi(paper)) is not None:
            self.by_doi.setdefault(linked, paper)  # a paper's own DOI comes first
        self.by_title[paper.title_key] = paper

    def find(self, record: PaperRecord) -> Paper | None:
        if record.arxiv_id and record.arxiv_id in self.by_id:
            return self.by_id[record.arxiv_id]
        for paper in (
            *(self.by_doi.get(doi) for doi in _dois(record)),
            self.by_title.get(normalise_title(record.title)),
        ):
            if paper is not None and _same_work(paper, record):
                return paper
        if normalise_title(record.title) in self.by_title:  # another work has the title
            return self._by_alternate_key(record)
        return None

    def _by_alternate_key(self, record: PaperRecord) -> Paper | None:
        # Rare (two works, one title): looked up one at a time, not loaded with the batch.
        key = _alternate_key(record)
        if key not in self.by_title and self._session is not None:
            stored = self._session.scalar(select(Paper).where(Paper.title_key == key))
            if stored is not None:
                self.add(stored)
        return self.by_title.get(key)

    def free_key(self, record: PaperRecord) -> str:
        """Return the record's title key, made unique when another work has the title."""
        key = normalise_title(record.title)
        return _alternate_key(record) if key in self.by_title else key


def _alternate_key(record: PaperRecord) -> str:
    """Return the title key of a work whose title another work has: told apart by its id."""
    own = record.arxiv_id or record.doi or "|".join(record.authors[:1]) or record.source
    suffix = f" {'arxiv' if record.arxiv_id else 'other'} {own}"[:100]
    return normalise_title(record.title)[: TITLE_KEY_MAX - len(suffix)] + suffix


def _new_paper(record: PaperRecord, title_key: str, default_date: date) -> Paper:
    return Paper(
        arxiv_id=record.arxiv_id,
        title_key=title_key,
        title=record.title,
        abstract=record.abstract,
        summary=record.summary,
        authors=list(record.authors),
        url_abs=record.url_abs,
        url_pdf=record.url_pdf,
        url_code=record.url_code,
        published_on=record.published_on,
        listing_date=record.listing_date or default_date,
        upvotes=record.upvotes,
        keywords=list(record.keywords),
        categories=list(record.categories),
        source=record.source,
        doi=record.doi,
        venue=record.venue,
        url_journal=record.url_journal,
    )


def _apply(paper: Paper, record: PaperRecord) -> bool:
    """Fill missing fields, take the newest upvotes, add new keywords; True if anything changed."""
    changes: dict[str, object] = {}
    for name in ("arxiv_id", "abstract", "authors", *FILL_FIELDS):
        new = getattr(record, name)
        if new and not getattr(paper, name):
            changes[name] = list(new) if isinstance(new, list) else new
    if record.upvotes is not None and record.upvotes != paper.upvotes:
        changes["upvotes"] = record.upvotes
    if record.venue and record.venue != paper.venue and _is_journal_version_of(record, paper):
        changes["venue"] = record.venue  # the journal version names its journal, not the server
    for name in UNION_FIELDS:
        merged = _union(getattr(paper, name) or [], getattr(record, name))
        if len(merged) != len(getattr(paper, name) or []):
            changes[name] = merged
    for name, value in changes.items():
        setattr(paper, name, value)
    return bool(changes)
