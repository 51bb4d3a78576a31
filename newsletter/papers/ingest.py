"""Store paper records as papers: idempotent, keyed by arXiv id, else by normalised title."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from newsletter.core.models import Paper
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.common import TITLE_KEY_MAX, normalise_title, trim_text

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
FILL_FIELDS = ("url_abs", "url_pdf", "url_code", "published_on", "summary")
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
    index = _Index(_load_existing(session, batch))
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
    return dataclasses.replace(
        record,
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
    title_owner: dict[str, str] = {}
    pending = []
    for record in map(capped_record, records):
        if not record.arxiv_id:
            pending.append(record)
            continue
        key = "id:" + record.arxiv_id
        by_key[key] = _combine(by_key[key], record) if key in by_key else record
        title_owner.setdefault(normalise_title(record.title), key)
    for record in pending:
        title = normalise_title(record.title)
        key = title_owner.setdefault(title, "title:" + title)
        by_key[key] = _combine(by_key[key], record) if key in by_key else record
    return list(by_key.values())


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
    keys = sorted({normalise_title(r.title) for r in batch})
    found: dict[int, Paper] = {}
    for start in range(0, max(len(ids), len(keys)), KEY_CHUNK):
        id_part, key_part = ids[start : start + KEY_CHUNK], keys[start : start + KEY_CHUNK]
        query = select(Paper).where(or_(Paper.arxiv_id.in_(id_part), Paper.title_key.in_(key_part)))
        found.update((p.id, p) for p in session.scalars(query))
    return list(found.values())


class _Index:
    """Stored and new papers of a batch by arXiv id and by title key."""

    def __init__(self, papers: Iterable[Paper]) -> None:
        self.by_id: dict[str, Paper] = {}
        self.by_title: dict[str, Paper] = {}
        for paper in papers:
            self.add(paper)

    def add(self, paper: Paper) -> None:
        if paper.arxiv_id:
            self.by_id[paper.arxiv_id] = paper
        self.by_title[paper.title_key] = paper

    def find(self, record: PaperRecord) -> Paper | None:
        if record.arxiv_id and record.arxiv_id in self.by_id:
            return self.by_id[record.arxiv_id]
        paper = self.by_title.get(normalise_title(record.title))
        # The same title under another arXiv id is another paper, not this one.
        if paper is not None and record.arxiv_id and paper.arxiv_id not in (None, record.arxiv_id):
            return None
        return paper

    def free_key(self, record: PaperRecord) -> str:
        """Return the record's title key, made unique with its arXiv id when the title is taken."""
        key = normalise_title(record.title)
        if key in self.by_title and record.arxiv_id:
            suffix = f" arxiv {record.arxiv_id}"
            key = key[: TITLE_KEY_MAX - len(suffix)] + suffix
        return key


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
    for name in UNION_FIELDS:
        merged = _union(getattr(paper, name) or [], getattr(record, name))
        if len(merged) != len(getattr(paper, name) or []):
            changes[name] = merged
    for name, value in changes.items():
        setattr(paper, name, value)
    return bool(changes)
