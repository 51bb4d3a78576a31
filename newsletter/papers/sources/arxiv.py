"""arXiv: the API's Atom feed (both backends), the RSS listing, and the API fetcher."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from xml.etree.ElementTree import Element

from newsletter.core.errors import InputError, SourceError, quoted
from newsletter.core.taxonomy import ARCHIVES, canonical_code, closest_code, subject_classes
from newsletter.papers.sources import FetchOptions, PaperRecord, Source
from newsletter.papers.sources.common import (
    arxiv_id_of,
    arxiv_urls,
    capped_items,
    clean_text,
    load_xml,
    local_name,
    no_listing,
    parse_day,
)
from newsletter.papers.sources.http import SourceClient

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
DC = "{http://purl.org/dc/elements/1.1/}"
SOURCE = "arxiv"
DEFAULT_CATEGORIES = ("cs.AI", "cs.CL", "cs.CV", "cs.LG")
REQUEST_SPACING = 3.0  # arXiv's terms: no more than one request every three seconds
PAGE_SIZE = 500
LOOKUP_BATCH = 200  # ids in one `id_list` look-up: a reader's papers in one request
MAX_PAGES = 20
XML_TYPES = ("application/atom+xml", "application/rss+xml", "application/xml", "text/xml")
# Replacements re-announce papers listed before: they are not new papers of the day.
SKIPPED_ANNOUNCEMENTS = frozenset({"replace", "replace-cross"})
_ANNOUNCE = re.compile(r"Announce Type:\s*([\w-]+)", re.IGNORECASE)
_ABSTRACT = re.compile(r"\bAbstract:\s*", re.IGNORECASE)
_AUTHOR_SPLIT = re.compile(r",\s*|\s+and\s+")


def parse_arxiv_atom(
    data: bytes, *, name: str, listing_date: date | None = None
) -> list[PaperRecord]:
    """Parse an arXiv API response; a paper is listed on its submission day unless told."""
    records, _total = _parse_atom(data, name=name, listing_date=listing_date)
    if not records:
        raise no_listing(name, listing_date)
    return records


def _parse_atom(
    data: bytes, *, name: str, listing_date: date | None
) -> tuple[list[PaperRecord], int | None]:
    root = load_xml(data, name)
    if root.tag != ATOM + "feed":
        raise InputError(f"{name}: expected an Atom <feed> root, found <{local_name(root.tag)}>")
    records = [
        _atom_record(entry, f"{name}: entry {n}", listing_date)
        for n, entry in enumerate(capped_items(list(root.iter(ATOM + "entry")), name), 1)
    ]
    return records, _total_results(root.findtext(OPENSEARCH + "totalResults"))


def _total_results(text: str | None) -> int | None:
    """Read the feed's result count; one that is not a plain count is unknown."""
    digits = (text or "").strip()
    # ASCII only and bounded: int() refuses other digits and numbers of 4,300 digits.
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 10):
        return None
    return int(digits)


def _atom_record(entry: Element, where: str, listing_date: date | None) -> PaperRecord:
    entry_id = clean_text(entry.findtext(ATOM + "id"))
    if "/api/errors" in entry_id:  # the API reports a bad query as a one-entry feed
        reason = clean_text(entry.findtext(ATOM + "summary"))
        raise InputError(f"{where}: arXiv API error: {reason}")
    arxiv_id = arxiv_id_of(entry_id)
    title = clean_text(entry.findtext(ATOM + "title"))
    if not arxiv_id or not title:
        raise InputError(f"{where}: missing {'arXiv id' if not arxiv_id else 'title'}")
    published = parse_day(entry.findtext(ATOM + "published"))
    url_abs, url_pdf = arxiv_urls(arxiv_id)
    return PaperRecord(
        title=title,
        source=SOURCE,
        abstract=clean_text(entry.findtext(ATOM + "summary")),
        arxiv_id=arxiv_id,
        authors=[clean_text(a.findtext(ATOM + "name")) for a in entry.iter(ATOM + "author")],
        url_abs=url_abs,
        url_pdf=url_pdf if _has_pdf_link(entry) else None,
        published_on=published,
        listing_date=listing_date or published,
        categories=_atom_categories(entry),
    )


def _has_pdf_link(entry: Element) -> bool:
    return any(
        link.get("title") == "pdf" or link.get("type") == "application/pdf"
        for link in entry.iter(ATOM + "link")
    )


def _atom_categories(entry: Element) -> list[str]:
    """Return the primary category first, then the others, each once."""
    primary = entry.find(ARXIV + "primary_category")
    terms = [primary.get("term", "")] if primary is not None else []
    terms += [c.get("term", "") for c in entry.iter(ATOM + "category")]
    return _unique(t.strip() for t in terms if t and t.strip())


def parse_arxiv_rss(
    data: bytes,
    *,
    name: str,
    listing_date: date | None = None,
    include_replacements: bool = False,
) -> list[PaperRecord]:
    """Parse the arXiv RSS listing; replacement announcements are skipped unless asked for."""
    day, records = read_arxiv_rss(
        data, name=name, listing_date=listing_date, include_replacements=include_replacements
    )
    if not records:
        raise no_listing(name, day)
    return records


def read_arxiv_rss(
    data: bytes,
    *,
    name: str,
    listing_date: date | None = None,
    include_replacements: bool = False,
) -> tuple[date | None, list[PaperRecord]]:
    """Return the listing's announcement day (None if it gives none) and its records."""
    root = load_xml(data, name)
    channel = root.find("channel")
    if root.tag != "rss" or channel is None:
        raise InputError(f"{name}: expected an RSS <rss><channel>, found <{local_name(root.tag)}>")
    day = listing_date or _rss_day(channel.findtext("pubDate"))
    records = []
    for n, item in enumerate(capped_items(list(channel.iter("item")), name), 1):
        record, kind = _rss_record(item, f"{name}: item {n}", day)
        if include_replacements or kind not in SKIPPED_ANNOUNCEMENTS:
            records.append(record)
    return day, records


def _rss_record(item: Element, where: str, day: date | None) -> tuple[PaperRecord, str]:
    description = item.findtext("description") or ""
    head, abstract, *_ = [*_ABSTRACT.split(description, maxsplit=1), ""]
    arxiv_id = arxiv_id_of(head) or arxiv_id_of(item.findtext("link"))
    title = clean_text(item.findtext("title"))
    if not arxiv_id or not title:
        raise InputError(f"{where}: missing {'arXiv id' if not arxiv_id else 'title'}")
    kind = clean_text(item.findtext(ARXIV + "announce_type"))
    if not kind:
        match = _ANNOUNCE.search(head)
        kind = match.group(1) if match else "new"
    url_abs, url_pdf = arxiv_urls(arxiv_id)
    record = PaperRecord(
        title=title,
        source=SOURCE,
        abstract=clean_text(abstract),
        arxiv_id=arxiv_id,
        authors=_rss_authors(item),
        url_abs=url_abs,
        url_pdf=url_pdf,
        listing_date=_rss_day(item.findtext("pubDate")) if day is None else day,
        categories=_unique(clean_text(c.text) for c in item.iter("category") if c.text),
    )
    return record, kind.lower()


def _rss_authors(item: Element) -> list[str]:
    names: list[str] = []
    for creator in item.iter(DC + "creator"):
        names += [clean_text(n) for n in _AUTHOR_SPLIT.split(creator.text or "") if n.strip()]
    return names


def _rss_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value.strip()).date()
    except (TypeError, ValueError):
        return parse_day(value)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def arxiv_query(day: date, categories: Sequence[str]) -> str:
    """Build the search_query for papers in the categories submitted on the day.

    An archive ("cond-mat") asks for each of its subject classes.
    """
    expanded = [
        category
        for code in arxiv_codes(categories)
        for category in (subject_classes(code) if code in ARCHIVES else (code,))
    ]
    cats = " OR ".join(f"cat:{c}" for c in _unique(expanded))
    stamp = day.strftime("%Y%m%d")
    return f"({cats}) AND submittedDate:[{stamp}0000 TO {stamp}2359]"


def arxiv_codes(categories: Sequence[str]) -> list[str]:
    """Return the categories and archives in arXiv's spelling, each once.

    Raise InputError on none, or on a name that is not in arXiv's taxonomy.
    """
    if not categories:
        raise InputError("give at least one arXiv category, e.g. cs.LG")
    codes = []
    for category in categories:
        code = canonical_code(category)
        if code is None:
            closest = closest_code(category)
            hint = f"did you mean {closest}?" if closest else "expected e.g. cs.LG or cond-mat"
            raise InputError(f"not an arXiv category: {quoted(category)} ({hint})")
        codes.append(code)
    return _unique(codes)


def categories_to_fetch(options: FetchOptions) -> list[str]:
    """Return the categories asked for, else the configured ones, else the default, checked."""
    asked = options.categories or options.settings.scheduler_arxiv_categories
    return arxiv_codes(asked or DEFAULT_CATEGORIES)


def fetch_arxiv(
    day: date,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    *,
    base_url: str,
    client: SourceClient,
    spacing: float = REQUEST_SPACING,
    page_size: int = PAGE_SIZE,
    on_page: Callable[[int, int | None], None] | None = None,
) -> list[PaperRecord]:
    """Fetch the papers submitted on the day, page by page, one request per `spacing` seconds."""
    url = base_url.rstrip("/") + "/api/query"
    params = {
        "search_query": arxiv_query(day, categories),
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "max_results": page_size,
    }
    records: list[PaperRecord] = []
    for page in range(MAX_PAGES):
        start = page * page_size
        response = client.get(
            url, params={**params, "start": start}, accept=XML_TYPES, min_interval=spacing
        )
        try:
            batch, total = _parse_atom(response.content, name=url, listing_date=day)
        except InputError as exc:  # the network, not the user, sent a bad document
            raise SourceError(str(exc)) from exc
        records.extend(batch)
        if on_page:
            on_page(len(records), total)
        if len(batch) < page_size or (total is not None and start + len(batch) >= total):
            break
    if not records:
        raise no_listing(None, day)
    return unique_records(records)


def lookup_arxiv(
    arxiv_ids: Sequence[str],
    *,
    base_url: str,
    client: SourceClient,
    spacing: float = REQUEST_SPACING,
) -> dict[str, PaperRecord]:
    """Look papers up by arXiv id (`id_list`), LOOKUP_BATCH a request; return those found.

    An id arXiv does not know is left out of the answer; a bad answer raises SourceError.
    """
    url = base_url.rstrip("/") + "/api/query"
    found: dict[str, PaperRecord] = {}
    for start in range(0, len(arxiv_ids), LOOKUP_BATCH):
        batch = list(arxiv_ids[start : start + LOOKUP_BATCH])
        params = {"id_list": ",".join(batch), "max_results": len(batch)}
        response = client.get(url, params=params, accept=XML_TYPES, min_interval=spacing)
        try:
            records, _total = _parse_atom(response.content, name=url, listing_date=None)
        except InputError as exc:  # the network, not the user, sent a bad document
            raise SourceError(str(exc)) from exc
        found.update((r.arxiv_id, r) for r in records if r.arxiv_id in batch)
    return found


def unique_records(records: list[PaperRecord]) -> list[PaperRecord]:
    by_id = {r.arxiv_id: r for r in reversed(records)}
    return [r for r in records if by_id.get(r.arxiv_id) is r]


def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
    """Fetch from the arXiv API the papers of the categories submitted on the day."""
    return fetch_arxiv(
        day,
        categories_to_fetch(options),
        base_url=options.url or options.settings.arxiv_api_url,
        client=client,
        spacing=options.settings.arxiv_request_interval,
        on_page=options.on_page,
    )


# Listed by submission day, not as announced: for past days and look-ups, not the daily list.
API_SOURCE = Source(
    name="arxiv-api",
    label="arXiv API: the papers submitted on the day (for past days)",
    fetch=fetch_day,
    settings=("arxiv_api_url", "arxiv_request_interval", "scheduler_arxiv_categories"),
    takes_categories=True,
    arxiv_categories=True,
    check_categories=arxiv_codes,
)


__all__ = [
    "API_SOURCE",
    "DEFAULT_CATEGORIES",
    "arxiv_codes",
    "arxiv_query",
    "categories_to_fetch",
    "fetch_arxiv",
    "lookup_arxiv",
    "parse_arxiv_atom",
    "parse_arxiv_rss",
    "read_arxiv_rss",
    "unique_records",
]
