"""What every parser shares: text clean-up, title keys, arXiv ids, safe JSON and XML loading."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from newsletter.core.errors import InputError, NoListing
from newsletter.core.models import xml_safe

TITLE_KEY_MAX = 512  # the width of papers.title_key
# The widest integer any field can use: PostgreSQL's INTEGER (SQLite's is wider).
INT_FIELD_MAX = 2**31 - 1
# Longer integers are read as floats: Python refuses int() of over 4,300 digits, and no
# field holds more than ten anyway, so the field's own check reports them.
JSON_INT_MAX_DIGITS = 20
# A day's listing has a few thousand papers at most: more in one document is a fault, and
# refusing it before the records are built keeps a hostile source from filling memory.
MAX_ITEMS = 10_000
# Control characters go with whitespace: a NUL cannot be stored in PostgreSQL text.
_WS = re.compile(r"[\s\x00-\x1f\x7f]+")
# New-style ids (2606.00467) and old-style ones (math/0601001, hep-th/9901001v2).
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z][a-z.-]*/\d{7})(v\d+)?", re.IGNORECASE)


def clean_text(value: Any) -> str:
    """Collapse runs of whitespace and control characters (NUL included) into single spaces.

    What XML 1.0 cannot hold otherwise (U+FFFE, U+FFFF, lone surrogates) is dropped.
    """
    if value is None:
        return ""
    return xml_safe(_WS.sub(" ", str(value))).strip()


def normalise_title(title: str) -> str:
    """Return the identity key of a title: NFKC, casefolded, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", title).casefold()
    # Punctuation and symbols become spaces so "Graph-LSTMs" and "Graph LSTMs" agree.
    kept = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    key = clean_text(kept) or clean_text(text)
    return key[:TITLE_KEY_MAX]


def split_arxiv_id(value: str) -> tuple[str, str | None] | None:
    """Split "http://arxiv.org/abs/2202.12139v2" into ("2202.12139", "v2"); None if no id."""
    match = _ARXIV_ID.search(value.strip())
    if match is None:
        return None
    return match.group(1), match.group(2)


def arxiv_id_of(value: str | None) -> str | None:
    """Return the arXiv id in a URL or string, without its version suffix."""
    if not value:
        return None
    parts = split_arxiv_id(value)
    return parts[0] if parts else None


def arxiv_urls(arxiv_id: str) -> tuple[str, str]:
    """Return the canonical abstract and PDF URLs of an arXiv id."""
    return f"https://arxiv.org/abs/{arxiv_id}", f"https://arxiv.org/pdf/{arxiv_id}"


def parse_day(value: Any) -> date | None:
    """Read the date part of an ISO date or timestamp ("2026-06-12T00:00:00.000Z")."""
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
    except ValueError:
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None


def decode_text(data: bytes, name: str) -> str:
    """Decode UTF-8 (with or without BOM) or raise an InputError naming the file."""
    if not data.strip():
        raise InputError(f"{name}: file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def load_json(data: bytes, name: str) -> Any:
    """Parse JSON or raise an InputError with the line and column of the problem."""
    text = decode_text(data, name)
    try:
        return json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name}: truncated or invalid JSON at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError(f"{name}: JSON nested too deeply to be a paper listing") from None


def _json_int(digits: str) -> int | float:
    return int(digits) if len(digits.lstrip("-")) <= JSON_INT_MAX_DIGITS else float(digits)


def bounded_int(value: Any, low: int = 0, high: int = INT_FIELD_MAX) -> int | None:
    """Return value if it is an integer from low to high (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def load_json_array(data: bytes, name: str) -> list[Any]:
    """Parse a JSON document that must be a top-level array."""
    doc = load_json(data, name)
    if not isinstance(doc, list):
        raise InputError(f"{name}: expected a JSON array of papers, got a JSON {_kind(doc)}")
    return capped_items(doc, name)


def capped_items(items: list[Any], name: str) -> list[Any]:
    """Return the items of one document, or refuse more than MAX_ITEMS of them."""
    if len(items) > MAX_ITEMS:
        raise InputError(f"{name}: {len(items):,} papers in one document, more than {MAX_ITEMS:,}")
    return items


def _kind(value: Any) -> str:
    return {dict: "object", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def load_xml(data: bytes, name: str) -> Element:
    """Parse XML refusing DTDs, entities and external references (entity bombs, XXE)."""
    if not data.strip():
        raise InputError(f"{name}: file is empty")
    try:
        return SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (EntitiesForbidden, ExternalReferenceForbidden, DTDForbidden) as exc:
        raise InputError(f"{name}: XML entities are not allowed ({_what(exc)})") from None
    except DefusedXmlException as exc:
        raise InputError(f"{name}: unsafe XML refused ({exc})") from None
    except ParseError as exc:
        line, column = exc.position
        raise InputError(
            f"{name}: truncated or invalid XML at line {line} column {column + 1}"
        ) from None


def _what(exc: DefusedXmlException) -> str:
    if isinstance(exc, EntitiesForbidden):
        return f"entity {exc.name!r}"
    if isinstance(exc, ExternalReferenceForbidden):
        return f"external reference {exc.sysid!r}"
    return "DTD"


def local_name(tag: str) -> str:
    """Return an element tag without its {namespace}."""
    return tag.rsplit("}", 1)[-1]


def no_listing(name: str | None, day: date | None) -> NoListing:
    """Build the error for a valid listing that holds no papers."""
    when = f" for {day.isoformat()} (weekend or holiday)" if day else ""
    return NoListing(f"{name + ': ' if name else ''}no papers listed{when}")
