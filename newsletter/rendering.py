"""Render digests: Jinja environments, CSS inlined once per distinct body, per-recipient fill-in."""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import jinja2
from markupsafe import escape
from premailer import Premailer

import newsletter
from newsletter import tokens
from newsletter.config import Settings

Kind = Literal["html", "text"]
CACHE_SIZE = 4096
ABSTRACT_CHARS = 350
AUTHORS_SHOWN = 3
SUBJECT_MAX = 100
DISPLAY_MAX = 120  # longest name or topic list shown back to a reader
DEFAULT_LIST_NAME = "Daily Papers"
# Per-recipient values: the body is rendered and inlined once with placeholders in their place.
SLOTS = ("name", "greeting", "email", "topics", "unsubscribe_url", "manage_url")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class DigestPaper:
    """One paper as a subscriber sees it; topics are the subscriber's topics it matched."""

    paper_id: int
    title: str
    authors: tuple[str, ...]
    abstract: str
    url_abs: str | None
    url_pdf: str | None
    url_code: str | None
    upvotes: int | None
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Recipient:
    """Who a digest is for; topics are the names of the topics they follow."""

    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class EditionInfo:
    """The edition a digest belongs to."""

    listing_date: date
    kind: str = "daily"


@dataclass(frozen=True)
class Filled:
    """A body as its cached literals with the per-recipient values that go between them."""

    literals: tuple[str, ...]
    values: tuple[str, ...]

    def join(self) -> str:
        """Return the whole body."""
        parts = [self.literals[0]]
        for value, literal in zip(self.values, self.literals[1:], strict=True):
            parts.append(value)
            parts.append(literal)
        return "".join(parts)


@dataclass(frozen=True)
class RenderedDigest:
    """The three rendered parts of one recipient's email.

    text_parts and html_parts, when present, let build_message reuse the encoding of the
    shared literals; they always join to text and html.
    """

    subject: str
    text: str
    html: str
    text_parts: Filled | None = field(default=None, repr=False, compare=False)
    html_parts: Filled | None = field(default=None, repr=False, compare=False)


@dataclass
class RenderStats:
    """Counters that show the cache at work: inlines is how often premailer ran."""

    inlines: int = 0
    hits: int = 0
    misses: int = 0


def shipped_templates_dir() -> Path:
    """Return the templates folder of the installed package or of the source checkout."""
    package = Path(newsletter.__file__).parent
    wheel_data = package / "_data" / "templates"
    return wheel_data if wheel_data.is_dir() else package.parent / "templates"


def make_jinja_env(settings: Settings, kind: Kind) -> jinja2.Environment:
    """Build the HTML (autoescaped) or plain-text environment; operator templates win."""
    if kind not in ("html", "text"):
        raise ValueError(f"unknown template kind: {kind!r}")
    folders = [settings.templates_dir] if settings.templates_dir else []
    folders.append(str(shipped_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(f) for f in folders]),
        autoescape=kind == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(
        authors_short=authors_short,
        trim_abstract=trim_abstract,
        safe_url=safe_url,
        long_date=long_date,
        short_date=short_date,
        one_line=one_line,
    )
    return env


def authors_short(authors: Sequence[str], shown: int = AUTHORS_SHOWN) -> str:
    """Return "A, B, C et al." for long author lists, all names for short ones."""
    names = [one_line(a) for a in authors if one_line(a)]
    if len(names) > shown + 1:
        return ", ".join(names[:shown]) + " et al."
    return ", ".join(names)


def trim_abstract(text: str, limit: int = ABSTRACT_CHARS) -> str:
    """Cut a text at a word boundary near limit characters and mark the cut with an ellipsis."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-—(") + "…"


def safe_url(url: str | None) -> str | None:
    """Return an http(s) URL unchanged, or None for anything else (javascript:, data:, junk)."""
    if not url:
        return None
    url = url.strip()
    if _CONTROL.search(url) or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def long_date(day: date) -> str:
    """Format a date as "Thursday, 27 November 2025"."""
    return f"{day:%A}, {day.day} {day:%B %Y}"


def short_date(day: date) -> str:
    """Format a date as "Nov 27"."""
    return f"{day:%b} {day.day}"


def one_line(value: object) -> str:
    """Collapse control characters and whitespace runs (CR and LF included) into single spaces."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-—") + "…"


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes, keeping media queries in a <style> block."""
    return Premailer(
        html,
        keep_style_tags=False,  # leftover rules (media queries, :hover) stay in a new <style>
        strip_important=False,  # media queries need !important to beat the inlined styles
        remove_classes=False,  # media queries select by class
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


@dataclass(frozen=True)
class _Split:
    """A rendered body cut at its placeholders: literals[0] slot[0] literals[1] ..."""

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> Filled:
        return Filled(self.literals, tuple(values[slot] for slot in self.slots))


@dataclass(frozen=True)
class _Body:
    subject: str
    text: _Split
    html: _Split


@dataclass
class _Placeholders:
    """What templates see as the recipient: opaque markers, replaced after rendering."""

    name: str
    greeting: str
    email: str
    topics: str
    unsubscribe_url: str
    manage_url: str


@dataclass
class DigestRenderer:
    """Renders digests; bodies are cached so a recipient costs only string substitution."""

    settings: Settings
    html_env: jinja2.Environment
    text_env: jinja2.Environment
    inline: Callable[[str], str] = inline_css
    cache_size: int = CACHE_SIZE
    stats: RenderStats = field(default_factory=RenderStats)

    def __post_init__(self) -> None:
        # Random per instance: paper text cannot contain it by accident or on purpose.
        token = "dpn" + secrets.token_hex(8)
        self._placeholders = _Placeholders(*(f"{token}x{slot}x" for slot in SLOTS))
        self._split_re = re.compile(f"{token}x({'|'.join(SLOTS)})x")
        self._cache: OrderedDict[tuple[object, ...], _Body] = OrderedDict()
        self._lock = threading.Lock()
        self._list_name = parseaddr(self.settings.from_address)[0] or DEFAULT_LIST_NAME

    def render(
        self, edition: EditionInfo, papers: Sequence[DigestPaper], recipient: Recipient
    ) -> RenderedDigest:
        """Render one recipient's digest of papers."""
        if not papers:
            raise ValueError("a digest needs at least one paper; use render_empty")
        return self._render("digest", edition, tuple(papers), recipient)

    def render_empty(self, edition: EditionInfo, recipient: Recipient) -> RenderedDigest:
        """Render the short "nothing on your topics today" note."""
        return self._render("empty", edition, (), recipient)

    def _render(
        self, name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...], recipient: Recipient
    ) -> RenderedDigest:
        body = self._body(name, edition, papers)
        text_values = self._recipient_values(recipient)
        html_values = {slot: str(escape(value)) for slot, value in text_values.items()}
        text = body.text.fill(text_values)
        html = body.html.fill(html_values)
        return RenderedDigest(body.subject, text.join(), html.join(), text, html)

    def _body(self, name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> _Body:
        key = (name, edition, tuple((p.paper_id, p.topics) for p in papers))
        # Senders may share one renderer between threads; rendering itself runs unlocked.
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self.stats.hits += 1
                self._cache.move_to_end(key)
                return body
            self.stats.misses += 1
        body = self._render_body(name, edition, papers)
        with self._lock:
            self._cache[key] = body
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return body

    def _render_body(
        self, name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...]
    ) -> _Body:
        context = self._context(edition, papers)
        subject = self.text_env.get_template(f"email/{name}.subject.txt").render(context)
        text = self.text_env.get_template(f"email/{name}.txt").render(context)
        html = self.html_env.get_template(f"email/{name}.html").render(context)
        html = self.inline(html)
        with self._lock:
            self.stats.inlines += 1
        return _Body(_shorten(one_line(subject), SUBJECT_MAX), self._split(text), self._split(html))

    def _context(self, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> dict[str, object]:
        return {
            "edition": edition,
            "papers": papers,
            "recipient": self._placeholders,
            "list_name": self._list_name,
            "archive_url": tokens.archive_url(self.settings, edition.listing_date),
            "postal_address": self.settings.postal_address,
            "base_url": self.settings.base_url,
        }

    def _split(self, rendered: str) -> _Split:
        parts = self._split_re.split(rendered)
        return _Split(tuple(parts[0::2]), tuple(parts[1::2]))

    def _recipient_values(self, recipient: Recipient) -> dict[str, str]:
        name = _shorten(one_line(recipient.name), DISPLAY_MAX)
        topics = _shorten(", ".join(one_line(t) for t in recipient.topics), DISPLAY_MAX * 2)
        return {
            "name": name,
            "greeting": f"Hi {name}," if name else "Hello,",
            "email": one_line(recipient.email),
            "topics": topics or "no topics yet",
            "unsubscribe_url": tokens.unsubscribe_url(self.settings, recipient.subscriber_id),
            "manage_url": tokens.manage_url(self.settings, recipient.subscriber_id),
        }


def make_renderer(settings: Settings) -> DigestRenderer:
    """Build a renderer with its own Jinja environments and body cache."""
    return DigestRenderer(
        settings, make_jinja_env(settings, "html"), make_jinja_env(settings, "text")
    )
