"""Our own JSON format: an array of objects named like PaperRecord fields."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from newsletter.core.errors import InputError
from newsletter.core.models import xml_safe
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.common import (
    INT_FIELD_MAX,
    arxiv_id_of,
    bounded_int,
    clean_text,
    load_json_array,
    no_listing,
)

SOURCE = "json"
RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(PaperRecord))
# Written by `papers list --json` next to the record fields; read back and ignored.
OUTPUT_ONLY_FIELDS = frozenset({"id", "topics", "created_at", "updated_at", "likes", "dislikes"})
LIST_FIELDS = ("authors", "keywords", "categories")
TEXT_FIELDS = ("url_abs", "url_pdf", "url_code", "summary", "doi", "venue", "url_journal")
DATE_FIELDS = ("published_on", "listing_date")


def parse_json_papers(
    data: bytes, *, name: str, listing_date: date | None = None
) -> list[PaperRecord]:
    """Parse a JSON array of paper objects; listing_date, when given, overrides theirs."""
    items = load_json_array(data, name)
    if not items:
        raise no_listing(name, listing_date)
    return [_record(item, f"{name}: item {n}", listing_date) for n, item in enumerate(items, 1)]


def _record(item: Any, where: str, listing_date: date | None) -> PaperRecord:
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object, got {type(item).__name__}")
    if "paper" in item:
        raise InputError(f"{where}: has a 'paper' object: this is hf-json, not json")
    unknown = sorted(set(item) - RECORD_FIELDS - OUTPUT_ONLY_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}")
    title = clean_text(_text(item, "title", where))
    if not title:
        raise InputError(f"{where}: 'title' is required")
    values: dict[str, Any] = {
        "title": title,
        "source": clean_text(_text(item, "source", where)) or SOURCE,
        "abstract": clean_text(_text(item, "abstract", where)),
        "arxiv_id": arxiv_id_of(_text(item, "arxiv_id", where)),
        "upvotes": _int(item, "upvotes", where),
    }
    for key in TEXT_FIELDS:
        values[key] = _text(item, key, where) or None
    for key in LIST_FIELDS:
        values[key] = _strings(item, key, where)
    for key in DATE_FIELDS:
        values[key] = _date(item, key, where)
    if listing_date is not None:
        values["listing_date"] = listing_date
    return PaperRecord(**values)


def _text(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: {key!r} must be a string")
    return xml_safe(value).strip()


def _int(item: dict[str, Any], key: str, where: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    number = bounded_int(value)
    if number is None:
        raise InputError(f"{where}: {key!r} must be a whole number from 0 to {INT_FIELD_MAX}")
    return number


def _strings(item: dict[str, Any], key: str, where: str) -> list[str]:
    value = item.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {key!r} must be a list of strings")
    return [clean_text(v) for v in value if clean_text(v)]


def _date(item: dict[str, Any], key: str, where: str) -> date | None:
    value = item.get(key)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InputError(f"{where}: {key!r} must be a date YYYY-MM-DD, got {value!r}") from None
