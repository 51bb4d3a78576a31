"""bioRxiv and medRxiv: their public API's details by date interval, paged by its cursor.

`GET {api}/details/{server}/{from}/{to}/{cursor}` answers `{"messages": [...], "collection":
[...]}`: the messages say how many rows the interval holds (`total`), the collection holds
one row per posted version of a preprint, and the cursor (the last path segment) is an
offset into those rows. Both servers share the API, its format and its DOI prefix.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from newsletter.core.errors import InputError, SourceError
from newsletter.core.identifiers import doi_link, doi_of
from newsletter.core.taxonomy import PREPRINT_SUBJECTS, closest_subject, subject_code, subject_slug
from newsletter.papers.ingest import capped_record
from newsletter.papers.sources import FetchDay, FetchOptions, PaperRecord, Source
from newsletter.papers.sources.common import (
    MAX_ITEMS,
    bounded_int,
    capped_items,
    clean_text,
    load_json,
    no_listing,
    parse_day,
)
from newsletter.papers.sources.http import SourceClient

SERVERS: dict[str, str] = {"biorxiv": "bioRxiv", "medrxiv": "medRxiv"}  # name -> venue
SITES = {"biorxiv": "https://www.biorxiv.org", "medrxiv": "https://www.medrxiv.org"}
# A day holds a few hundred rows and the API serves 30 to 100 a call: more pages than this
# is a server that pages forever.
MAX_PAGES = 50
REQUEST_SPACING = 1.0  # seconds between pages: the API asks for no rate, so we keep a polite one
JSON_TYPES = ("application/json", "text/json", "text/plain")
EMPTY_STATUSES = frozenset({"no posts found"})  # a valid answer holding no rows
_DOI = re.compile(r"10\.\d{4,9}/\S+")
# bioRxiv writes the structure of an abstract as markers glued to the text: section titles
# (O_ST_ABS ... C_ST_ABS), list items (O_LI ... C_LI), boxes, figures, tables. Small caps
# (O_SCPLOW) sit inside words, so they go without a space.
_BLOCK_MARKS = re.compile(r"[OC]_(?:ST_ABS|TEXTBOX|FIG_DISPLAY|FIG|TBL|FLOATNO|LINKGRAPHICAL|LI)")
_INLINE_MARKS = re.compile(r"[OC]_(?:SCPLOW|SCPCAP)")
# Tags only by name, with a few short attributes: "p < 0.05 and q > 1" stays text, and
# each try at a "<" looks a bounded way ahead, so a hostile field cannot make it quadratic.
_VALUE = r"""(?:"[^"<>]{0,400}"|'[^'<>]{0,400}'|[^\s<>"']{1,400})"""
_ATTRS = rf"(?:\s{{1,9}}[\w:-]{{1,40}}(?:={_VALUE})?){{0,9}}\s{{0,9}}/?>"
_BLOCK_TAG = re.compile(rf"</?(?:p|br|div|li|ul|ol){_ATTRS}", re.I)
_INLINE_TAG = re.compile(
    rf"</?(?:a|b|i|u|em|strong|sup|sub|sc|span|italic|bold|underline|jats:[\w-]+){_ATTRS}", re.I
)
_BRACKETED_ENTITY = re.compile(r"\[(&#?\w+;)\]")  # "[&ge;]": bioRxiv's way to write a symbol


@dataclass(frozen=True)
class _Row:
    doi: str
    version: int
    fields: dict[str, Any]
    where: str  # "URL: item 3", for messages


@dataclass(frozen=True)
class _Page:
    rows: list[_Row]
    total: int | None  # rows the whole interval holds, if the messages say


def parse_biorxiv_json(
    data: bytes, *, name: str, server: str, listing_date: date | None = None
) -> list[PaperRecord]:
    """Parse one details response: a record per preprint (its latest version), in API order."""
    records = _records(_parse_page(data, name).rows, server_name(server), listing_date)
    if not records:
        raise no_listing(name, listing_date)
    return records


def _parse_page(data: bytes, name: str) -> _Page:
    """Check the document's shape, status and rows; return them and the interval's total."""
    doc = load_json(data, name)
    if not isinstance(doc, dict) or not isinstance(doc.get("collection", []), list):
        raise InputError(f"{name}: expected a JSON object with a 'collection' list of preprints")
    messages = doc.get("messages")
    message = messages[0] if isinstance(messages, list) and messages else {}
    if not isinstance(message, dict):
        raise InputError(f"{name}: 'messages' is not a list of objects")
    status = clean_text(message.get("status", "ok"))
    if status.lower() != "ok" and status.lower() not in EMPTY_STATUSES:
        raise InputError(f"{name}: the API answered {status[:200]!r}")
    items = capped_items(doc.get("collection", []), name)
    rows = [_row(item, f"{name}: item {n}") for n, item in enumerate(items, 1)]
    return _Page(rows, _count(message.get("total")))


def _row(item: Any, where: str) -> _Row:
    if not isinstance(item, dict):
        raise InputError(f"{where}: not an object (not a bioRxiv details row)")
    doi = _doi(item.get("doi"))
    if doi is None:
        raise InputError(f"{where}: no DOI (expected e.g. 10.1101/2024.05.01.592000)")
    return _Row(doi, _version(item.get("version")), item, where)


def _count(value: Any) -> int | None:
    """Read the messages' total (the API sends a string or a number); anything else: unknown."""
    text = str(value).strip() if isinstance(value, str | int) and value is not True else ""
    # ASCII only and bounded: int() refuses other digits and numbers of 4,300 digits.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _records(rows: Iterable[_Row], server: str, listing_date: date | None) -> list[PaperRecord]:
    """Build one record per DOI from its highest version, where the DOI first appears."""
    latest: _Latest = {}
    _keep_latest(latest, rows, server, listing_date)
    return [record for _, record in latest.values()]


_Latest = dict[str, tuple[int, PaperRecord]]  # DOI -> (version, record)


def _keep_latest(latest: _Latest, rows: Iterable[_Row], server: str, day: date | None) -> None:
    for row in rows:
        held = latest.get(row.doi)
        if held is None or row.version >= held[0]:
            latest[row.doi] = (row.version, _record(row, server, day))  # keeps its place


def _record(row: _Row, server: str, day: date | None) -> PaperRecord:
    fields = row.fields
    title = strip_markup(fields.get("title"))
    if not title:
        raise InputError(f"{row.where}: the preprint {row.doi} has no title")
    site = SITES[server]
    category = subject_slug(_text(fields.get("category")))
    posted = parse_day(fields.get("date"))  # the day this version was posted
    return capped_record(  # each field cut as storing would cut it
        PaperRecord(
            title=title,
            source=server,
            abstract=strip_markup(fields.get("abstract")),
            authors=split_authors(fields.get("authors")),
            url_abs=f"{site}/content/{row.doi}",
            url_pdf=f"{site}/content/{row.doi}v{max(row.version, 1)}.full.pdf",
            published_on=posted,
            listing_date=day or posted,
            categories=[category] if category else [],
            doi=row.doi,
            venue=SERVERS[server],
            url_journal=_journal_link(fields.get("published")),
        )
    )


def _journal_link(value: Any) -> str | None:
    """Return the doi.org link of the journal version a row says was published ("NA": none)."""
    doi = doi_of(_doi(value))  # lowercase, as a journal's record of it is stored
    return doi_link(doi) if doi else None


def _doi(value: Any) -> str | None:
    match = _DOI.fullmatch(_text(value))
    return match.group(0) if match else None


def _version(value: Any) -> int:
    """Read a row's version ("2"); one that is not a small count ranks lowest."""
    text = _text(value)
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None
    return bounded_int(number) or 0


def _text(value: Any) -> str:
    return unicodedata.normalize("NFC", clean_text(value)) if isinstance(value, str) else ""


def strip_markup(value: Any) -> str:
    """Return a title or abstract as plain text: no tags or bioRxiv markers, entities decoded."""
    text = value if isinstance(value, str) else ""
    text = _INLINE_MARKS.sub("", _BLOCK_MARKS.sub(" ", text))
    text = _INLINE_TAG.sub("", _BLOCK_TAG.sub(" ", text))
    return _text(html.unescape(_BRACKETED_ENTITY.sub(r"\1", text)))


def split_authors(value: Any) -> list[str]:
    """Split "Surname, I.; Surname, I." into names as cards show them ("I. Surname")."""
    names = []
    for part in _text(value).split(";"):
        surname, _, given = part.partition(",")
        name = f"{given.strip()} {surname.strip()}".strip()
        if name:
            names.append(name)
    return names


def server_name(server: str) -> str:
    """Return the API's name of a server ("bioRxiv" -> "biorxiv"), or raise InputError."""
    name = server.strip().lower()
    if name not in SERVERS:
        raise InputError(f"not a preprint server: {server!r} (expected biorxiv or medrxiv)")
    return name


def subject_codes(categories: Iterable[str], server: str) -> list[str]:
    """Return the server's subject codes of the categories, or raise InputError on one it lacks."""
    codes = []
    for category in categories:
        code = subject_code(category, server)
        if code is None:
            closest = closest_subject(category, server)
            hint = f"did you mean {closest}?" if closest else "expected e.g. neuroscience"
            raise InputError(f"not a {SERVERS[server]} subject: {category!r} ({hint})")
        codes.append(code)
    return list(dict.fromkeys(codes))


def fetch_biorxiv(
    day: date,
    *,
    server: str,
    categories: Sequence[str] = (),
    base_url: str,
    client: SourceClient,
    on_page: Callable[[int, int | None], None] | None = None,
    spacing: float = REQUEST_SPACING,
    max_pages: int = MAX_PAGES,
) -> list[PaperRecord]:
    """Fetch the preprints a server posted on the day, of the categories if any are given.

    One category is asked of the API (`?category=`); the rows are filtered here as well,
    since the API answers an unknown one with every subject.
    """
    server = server_name(server)
    wanted = subject_codes(categories, server)
    params = {"category": _api_category(wanted[0], server)} if len(wanted) == 1 else None
    start = f"{base_url.rstrip('/')}/details/{server}/{day.isoformat()}/{day.isoformat()}"
    latest: _Latest = {}
    fetched = 0  # rows so far: the cursor of the next page
    for _ in range(max_pages):
        url = f"{start}/{fetched}"
        response = client.get(url, params=params, accept=JSON_TYPES, min_interval=spacing)
        try:
            page = _parse_page(response.content, url)
            # Rows become capped records at once: a hostile server cannot pile up raw pages.
            _keep_latest(latest, page.rows, server, day)
        except InputError as exc:  # the network, not the user, sent a bad document
            raise SourceError(str(exc)) from exc
        fetched += len(page.rows)
        if fetched > MAX_ITEMS:
            raise SourceError(f"{url}: more than {MAX_ITEMS:,} rows for one day")
        if on_page:
            on_page(fetched, page.total)
        if not page.rows or page.total is None or fetched >= page.total:
            break
    records = [r for _, r in latest.values() if not wanted or set(r.categories) & set(wanted)]
    if not records:
        raise no_listing(None, day)
    return records


def _api_category(code: str, server: str) -> str:
    """Spell a subject as the API's `category` parameter takes it: "cell_biology"."""
    return PREPRINT_SUBJECTS[server][code].replace(" ", "_")


__all__ = ["SERVERS", "fetch_biorxiv", "parse_biorxiv_json", "split_authors", "strip_markup"]


def _fetch_day_of(server: str) -> FetchDay:
    def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
        """Fetch the preprints the server posted that day, of the asked-for subjects."""
        base_url = options.url or options.settings.biorxiv_api_url
        return fetch_biorxiv(
            day,
            server=server,
            categories=options.categories,
            base_url=base_url,
            client=client,
            on_page=options.on_page,
        )

    return fetch_day


BIORXIV_SOURCE = Source(
    name="biorxiv",
    label="bioRxiv: the day's biology preprints, any subject collection (neuroscience, ...)",
    fetch=_fetch_day_of("biorxiv"),
    settings=("biorxiv_api_url",),
    takes_categories=True,
    check_categories=lambda categories: subject_codes(categories, "biorxiv"),
)
MEDRXIV_SOURCE = Source(
    name="medrxiv",
    label="medRxiv: the day's health-sciences preprints, any subject collection",
    fetch=_fetch_day_of("medrxiv"),
    settings=("biorxiv_api_url",),
    takes_categories=True,
    check_categories=lambda categories: subject_codes(categories, "medrxiv"),
)
