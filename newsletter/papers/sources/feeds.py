"""Any journal's feed: RSS 0.9x/1.0/2.0 and Atom read by feedparser, JSON Feed read here.

XML is walked once with defusedxml (no entities, no external references) before feedparser
sees it; that walk also refuses a document that is not a feed and counts its items, stopping
at the cap, so a hostile feed is refused in one line without being built in memory.
"""

from __future__ import annotations

import dataclasses
import email.utils
import io
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import feedparser
from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden

from newsletter.core.errors import InputError, NoListing, SourceError, quoted
from newsletter.core.wording import trim_text
from newsletter.papers.sources import FetchOptions, PaperRecord, Source
from newsletter.papers.sources.common import (
    arxiv_id_of,
    clean_text,
    load_json,
    local_name,
    no_listing,
    parse_day,
)
from newsletter.papers.sources.http import SourceClient

NAME = "feed"
log = logging.getLogger(__name__)
# A journal's table of contents lists tens to a few hundred items; more is a fault or an
# attack, refused before feedparser builds anything.
MAX_FEED_ITEMS = 2_000
# Markup is stripped from at most this much of one field: the cleaned text is far shorter,
# and a megabyte-long description must not cost a megabyte of parsing per item.
MAX_RAW_FIELD = 100_000
TEXT_MAX = 20_000  # characters of a title or abstract kept (ingest trims further)
NAME_MAX = 300
AUTHORS_MAX = 200
VENUE_MAX = 300
URL_MAX = 2_000
DOI_MAX = 300
JSON_FEED_VERSION = "https://jsonfeed.org/version/"
FEED_ROOTS = frozenset({"rss", "RDF", "feed"})
ITEM_TAGS = frozenset({"item", "entry"})
DOI_HOSTS = frozenset({"doi.org", "dx.doi.org", "www.doi.org"})
_DOI = re.compile(r"10\.\d{4,9}/[^\s\"'<>]+")
_DOI_END = re.compile(r"[#?].*$|[.,;:)\]}]+$")
_HTML_PAGE = re.compile(rb"\A\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_NAME_SEPARATORS = re.compile(r"\s*;\s*|\s*\n\s*|\s+and\s+|\s*&\s*", re.I)
_INITIALS = re.compile(r"(?:[A-Z][a-z]?\.?[\s-]*)+")
_BOM = b"\xef\xbb\xbf"


@dataclass
class _Extras:
    """What the defused walk saw in one item that feedparser keeps only partly."""

    identifiers: list[str] = field(default_factory=list)  # every dc:identifier, prism:doi
    authors: list[str] = field(default_factory=list)  # <author><given_name>… (JOSS)


def parse_feed(data: bytes, *, name: str, day: date | None = None) -> list[PaperRecord]:
    """Parse a feed; with a day, keep the items published that day and the undated ones.

    An item without a date of its own cannot be placed on any other day: a feed without
    dates is a current table of contents, so its items are listed on the day asked for.
    """
    body = _strip_prelude(data)
    if not body:
        raise InputError(f"{name}: the answer is empty, not a feed")
    if _HTML_PAGE.match(body[:4096]):
        raise InputError(f"{name}: an HTML page, not a feed")
    if body[:1] == b"<":
        records = _parse_xml(body, name)
    elif body[:1] in (b"{", b"["):
        records = _parse_json_feed(body, name)
    else:
        raise InputError(f"{name}: neither XML nor JSON, not a feed")
    records = _on_day(_unique(records), day)
    if not records:
        raise no_listing(name, day)
    return records


def fetch_feed(
    url: str,
    day: date | None,
    *,
    client: SourceClient,
    on_page: Callable[[int], None] | None = None,
) -> list[PaperRecord]:
    """Fetch one feed and return its papers (those of the day, when a day is given)."""
    _check_url(url)
    # No content-type check: journals serve feeds as rss+xml, xml, text/plain and worse;
    # the body itself says what it is, and an error page is refused by its content.
    response = client.get(url)
    try:
        records = parse_feed(response.content, name=url, day=day)
    except InputError as exc:  # the network, not the user, sent a bad document
        raise SourceError(str(exc)) from exc
    if on_page:
        on_page(len(records))
    return records


def fetch_day(day: date, options: FetchOptions, client: SourceClient) -> list[PaperRecord]:
    """Fetch the day's items of the feed given (`--url`), else of each `scheduler_feed_urls`.

    A feed that fails is logged and the others still come in; only when every one fails
    does the fetch fail. Each item's link is its journal version's page.
    """
    urls = [options.url] if options.url else list(options.settings.scheduler_feed_urls)
    if not urls:
        raise InputError("the feed source needs --url URL, or feeds in scheduler_feed_urls")
    records: list[PaperRecord] = []
    failures: list[Exception] = []
    for url in urls:
        try:
            records += fetch_feed(url, day, client=client, on_page=options.on_page)
        except NoListing:
            continue
        except (SourceError, InputError) as exc:
            if len(urls) == 1:
                raise
            log.warning("feed %s: %s", url, exc)
            failures.append(exc)
    if not records:
        if failures and len(failures) == len(urls):
            raise SourceError(f"every feed failed; the first: {failures[0]}")
        raise no_listing(", ".join(urls), day)
    return [dataclasses.replace(r, url_journal=r.url_journal or r.url_abs) for r in records]


SOURCE = Source(
    name=NAME,
    label="A journal's table-of-contents feed (RSS, Atom, JSON Feed), with DOIs",
    fetch=fetch_day,
    settings=("scheduler_feed_urls",),
    needs_url=True,
)


def _check_url(url: str) -> None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"not an http(s) feed address: {quoted(url)}")


def _strip_prelude(data: bytes) -> bytes:
    """Drop a byte-order mark and leading blank lines (WordPress feeds start with one)."""
    body = data.lstrip()
    return body[len(_BOM) :].lstrip() if body.startswith(_BOM) else body


# --- RSS and Atom ---------------------------------------------------------------------


def _parse_xml(body: bytes, name: str) -> list[PaperRecord]:
    extras = _walk_defused(body, name)
    # A stream, not bytes: feedparser opens a bytes argument as a file path if it can.
    parsed = feedparser.parse(io.BytesIO(body))
    entries = parsed.entries
    if len(entries) != len(extras):  # feedparser merged or dropped one: match nothing
        extras = [_Extras() for _ in entries]
    venue = _feed_venue(_plain(parsed.feed))
    records = []
    for entry, extra in zip(entries, extras, strict=True):
        record = _entry_record(_plain(entry), extra, venue)
        if record is not None:
            records.append(record)
    return records


def _plain(parsed: Any) -> dict[str, Any]:
    """Return feedparser's dict as stored: its own get() maps and warns about some keys."""
    return dict(dict.items(parsed))


def _walk_defused(body: bytes, name: str) -> list[_Extras]:
    """Check the XML is safe and is a feed; return what each item holds beyond feedparser."""
    extras: list[_Extras] = []
    events = SafeET.iterparse(
        io.BytesIO(body),
        events=("start", "end"),
        forbid_dtd=False,
        forbid_entities=True,
        forbid_external=True,
    )
    root: Element | None = None
    try:
        for event, element in events:
            if root is None:  # the first event opens the root element
                root = element
                _check_root(element, name)
            if event == "end" and local_name(element.tag) in ITEM_TAGS:
                extras.append(_item_extras(element))
                element.clear()  # keep memory flat on a long feed
                if len(extras) > MAX_FEED_ITEMS:
                    raise InputError(f"{name}: more than {MAX_FEED_ITEMS:,} items in one feed")
    except (EntitiesForbidden, ExternalReferenceForbidden) as exc:
        raise InputError(f"{name}: XML entities are not allowed ({_refused(exc)})") from None
    except DefusedXmlException as exc:
        raise InputError(f"{name}: unsafe XML refused ({exc})") from None
    except ParseError as exc:
        line, column = exc.position
        raise InputError(
            f"{name}: truncated or invalid XML at line {line} column {column + 1}"
        ) from None
    return extras


def _check_root(element: Element, name: str) -> None:
    root = local_name(element.tag)
    if root.lower() == "html":
        raise InputError(f"{name}: an HTML page, not a feed")
    if root not in FEED_ROOTS:
        raise InputError(f"{name}: XML with a <{root[:40]}> root, not an RSS or Atom feed")


def _refused(exc: DefusedXmlException) -> str:
    if isinstance(exc, EntitiesForbidden):
        return f"entity {exc.name!r}"
    return f"external reference {getattr(exc, 'sysid', None)!r}"


def _item_extras(item: Element) -> _Extras:
    extra = _Extras()
    for child in item.iter():
        tag = local_name(child.tag)
        if tag in ("identifier", "doi") and child.text:
            extra.identifiers.append(child.text[:DOI_MAX])
        elif tag == "author" and len(extra.authors) < AUTHORS_MAX:
            parts = [_child_text(child, n) for n in ("given_name", "middle_name", "last_name")]
            if any(parts):
                extra.authors.append(" ".join(p for p in parts if p))
    return extra


def _child_text(element: Element, tag: str) -> str:
    for child in element:
        if local_name(child.tag) == tag:
            return clean_text((child.text or "")[:NAME_MAX])
    return ""


def _feed_venue(feed: Any) -> str | None:
    return _first_text(feed.get("prism_publicationname"), feed.get("title"), limit=VENUE_MAX)


def _entry_record(entry: Any, extra: _Extras, feed_venue: str | None) -> PaperRecord | None:
    title = _text(entry.get("title"))
    if not title:
        return None  # a note or a notice, not a paper
    url = _http_url(entry.get("link")) or _http_url(entry.get("prism_url"))
    doi = _doi(
        [entry.get("prism_doi"), entry.get("dc_identifier"), *extra.identifiers],
        [entry.get("link"), entry.get("id"), *(link.get("href") for link in _links(entry))],
    )
    source = entry.get("source")
    venue = _first_text(
        entry.get("prism_publicationname"),
        entry.get("dc_source"),
        source.get("title") if isinstance(source, dict) else None,
        limit=VENUE_MAX,
    )
    published = _first_day(
        entry.get("prism_publicationdate"), entry.get("published"), entry.get("updated")
    ) or _struct_day(entry.get("published_parsed") or entry.get("updated_parsed"))
    return PaperRecord(
        title=title,
        source=NAME,
        abstract=_text(entry.get("summary")) or _text(_content(entry)),
        arxiv_id=_arxiv_id(doi, url),
        authors=_authors(entry.get("authors"), extra.authors),
        url_abs=url,
        published_on=published,
        listing_date=published,
        doi=doi,
        venue=venue or feed_venue,
    )


def _links(entry: Any) -> list[dict[str, Any]]:
    links = entry.get("links")
    return [link for link in links if isinstance(link, dict)] if isinstance(links, list) else []


def _content(entry: Any) -> str | None:
    content = entry.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("value")
    return None


def _authors(found: Any, extra: list[str]) -> list[str]:
    names = [a.get("name") for a in found if isinstance(a, dict)] if isinstance(found, list) else []
    return _names(names) or _names(extra)


def _struct_day(value: Any) -> date | None:
    try:
        return date(value.tm_year, value.tm_mon, value.tm_mday) if value else None
    except (AttributeError, ValueError):
        return None


# --- JSON Feed -------------------------------------------------------------------------


def _parse_json_feed(body: bytes, name: str) -> list[PaperRecord]:
    doc = load_json(body, name)
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION):
        what = "JSON without a JSON Feed version" if isinstance(doc, dict) else _json_kind(doc)
        raise InputError(f"{name}: {what}, not a feed")
    items = doc.get("items")
    if not isinstance(items, list):
        raise InputError(f'{name}: a JSON Feed whose "items" is not a list')
    if len(items) > MAX_FEED_ITEMS:
        raise InputError(f"{name}: more than {MAX_FEED_ITEMS:,} items in one feed")
    venue = _first_text(doc.get("title"), limit=VENUE_MAX)
    feed_authors = _json_authors(doc)
    records = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InputError(f"{name}: item {n} is a JSON {_json_kind(item)}, not an object")
        record = _json_record(item, venue, feed_authors)
        if record is not None:
            records.append(record)
    return records


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return "a JSON " + kinds.get(type(value), "number" if value is not None else "null")


def _json_record(
    item: dict[str, Any], venue: str | None, feed_authors: list[str]
) -> PaperRecord | None:
    title = _text(item.get("title"))
    if not title:
        return None  # JSON Feed items may be untitled notes
    url = _http_url(item.get("url")) or _http_url(item.get("external_url"))
    published = _first_day(item.get("date_published"), item.get("date_modified"))
    doi = _doi([], [item.get("url"), item.get("external_url"), item.get("id")])
    abstract = _text(item.get("summary")) or _text(item.get("content_text"))
    return PaperRecord(
        title=title,
        source=NAME,
        abstract=abstract or _text(item.get("content_html")),
        arxiv_id=_arxiv_id(doi, url),
        authors=_json_authors(item) or feed_authors,
        url_abs=url,
        published_on=published,
        listing_date=published,
        doi=doi,
        venue=venue,
    )


def _json_authors(holder: dict[str, Any]) -> list[str]:
    """Read JSON Feed 1.1's "authors" list, else 1.0's single "author" object."""
    found = holder.get("authors")
    if not isinstance(found, list):
        found = [holder.get("author")]
    return _names(a.get("name") for a in found[:AUTHORS_MAX] if isinstance(a, dict))


# --- fields shared by both -------------------------------------------------------------


class _TextOnly(HTMLParser):
    """Collect the text of an HTML fragment: entities decoded, scripts and styles dropped."""

    SKIPPED = frozenset({"script", "style", "template"})
    BLOCKS = frozenset(
        "p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote tr td th table pre figure "
        "figcaption section article hr dt dd".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self._skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_markup(value: Any) -> str:
    """Return the text of an HTML fragment on one line, its entities decoded."""
    if not isinstance(value, str):
        return ""
    parser = _TextOnly()
    parser.feed(value[:MAX_RAW_FIELD])
    parser.close()
    return clean_text("".join(parser.parts))


def _text(value: Any, limit: int = TEXT_MAX) -> str:
    return trim_text(strip_markup(value), limit)


def _first_text(*values: Any, limit: int) -> str | None:
    for value in values:
        text = _text(value, limit)
        if text:
            return text
    return None


def _names(values: Iterable[Any]) -> list[str]:
    names: list[str] = []
    for value in values:
        names += split_names(strip_markup(value))
    return list(dict.fromkeys(trim_text(n, NAME_MAX) for n in names))[:AUTHORS_MAX]


def split_names(text: str) -> list[str]:
    """Split "A. Smith, B. Jones and C. Wu" or "Smith, A.; Jones, B." into one name each.

    A lone "Smith, John" and runs of "Surname, Initials" stay paired; a comma between names
    that each have a space splits them.
    """
    names: list[str] = []
    for chunk in _NAME_SEPARATORS.split(text):
        pieces = [p.strip() for p in chunk.split(",") if p.strip()]
        if len(pieces) > 1 and not all(" " in p for p in pieces) and _paired(pieces):
            names += [f"{pieces[i]}, {pieces[i + 1]}" for i in range(0, len(pieces), 2)]
        else:
            names += pieces
    return names


def _paired(pieces: list[str]) -> bool:
    """Tell "Powell, W., Yan, N." (surname, initials, ...) from a list of full names."""
    givens = pieces[1::2]
    return len(pieces) % 2 == 0 and all(_INITIALS.fullmatch(g) or " " not in g for g in givens)


def _doi(identifiers: Iterable[Any], links: Iterable[Any]) -> str | None:
    """Find the DOI in identifiers ("doi:10…", "10…", a DOI link) or in doi.org links."""
    for value in identifiers:
        if isinstance(value, str):
            text = value.strip()
            if text.lower().startswith(("doi:", "10.", "info:doi/")) or _is_doi_link(text):
                found = _doi_in(text)
                if found:
                    return found
    for value in links:
        if isinstance(value, str) and (_is_doi_link(value) or value.startswith("info:doi/")):
            found = _doi_in(value)
            if found:
                return found
    return None


def _is_doi_link(value: str) -> bool:
    return urlsplit(value.strip()).hostname in DOI_HOSTS


def _doi_in(text: str) -> str | None:
    match = _DOI.search(unquote(text[: DOI_MAX * 2]))
    if match is None:
        return None
    doi = _DOI_END.sub("", match.group(0))
    return doi if "/" in doi and doi.split("/", 1)[1] and len(doi) <= DOI_MAX else None


def _http_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    url = value.strip()
    parts = urlsplit(url)
    ok = parts.scheme in ("http", "https") and parts.netloc and len(url) <= URL_MAX
    return url if ok else None


def _arxiv_id(doi: str | None, url: str | None) -> str | None:
    if doi and doi.lower().startswith("10.48550/arxiv."):
        return arxiv_id_of(doi)
    host = urlsplit(url).hostname if url else None
    return arxiv_id_of(url) if host and host.endswith("arxiv.org") else None


def _first_day(*values: Any) -> date | None:
    """Read the first date: ISO 8601 (prism, dc:date, Atom, JSON Feed) or RFC 822 (pubDate).

    The day is the one written, in the writer's own time zone, not converted to UTC.
    """
    for value in values:
        if not isinstance(value, str) or not value.strip():
            continue
        day = parse_day(value)
        if day is None:
            try:
                day = email.utils.parsedate_to_datetime(value.strip()).date()
            except (TypeError, ValueError, IndexError):
                day = None
        if day is not None:
            return day
    return None


def _unique(records: list[PaperRecord]) -> list[PaperRecord]:
    """Keep the first of items a feed lists twice (same DOI, else same link, else title)."""
    seen: set[str] = set()
    out = []
    for record in records:
        key = (record.doi or "").casefold() or record.url_abs or record.title.casefold()
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def _on_day(records: list[PaperRecord], day: date | None) -> list[PaperRecord]:
    if day is None:
        return records
    kept = [r for r in records if r.published_on in (None, day)]
    for record in kept:
        record.listing_date = day
    return kept


__all__ = ["MAX_FEED_ITEMS", "fetch_feed", "parse_feed", "split_names", "strip_markup"]
