"""Render digests: Jinja environments, CSS inlined once per distinct body, per-recipient fill-in."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape
from premailer import Premailer

from newsletter.content.layouts import Layout, LayoutPart, NoLayout, SlotRecorder, StandIns
from newsletter.core import identity, tokens
from newsletter.core.config import Settings
from newsletter.core.latex import readable
from newsletter.core.resources import shipped_dir

Kind = Literal["html", "text"]
CACHE_SIZE = 8192  # digests: each is a few hundred bytes of references to shared parts
BODY_CACHE_BYTES = 32 << 20
PART_CACHE_SIZE = 8192  # skeletons and fragments, inlined and cut at the placeholders
PART_CACHE_BYTES = 96 << 20
LAYOUT_CACHE_SIZE = 256  # per template, edition and number of papers: a few dozen are used
CARD_CACHE_SIZE = 16384  # a fragment's output per arguments: a few per paper and edition
CARD_CACHE_BYTES = 48 << 20
FILTER_CACHE_SIZE = 4096
STYLE_CACHE_SIZE = 64  # distinct <style> blocks whose rules are kept
ABSTRACT_CHARS = 350
# Under a TL;DR the abstract is a taste, not the main text.
ABSTRACT_UNDER_SUMMARY_CHARS = 200
AUTHORS_SHOWN = 3
SUBJECT_MAX = 100
DISPLAY_MAX = 120  # longest name or topic list shown back to a reader
# Per-recipient values: the body is rendered and inlined once with placeholders in their place.
SLOTS = ("name", "greeting", "email", "topics", "unsubscribe_url", "manage_url")
VOTE_SLOT = "vote"  # followed by a paper id: the recipient's signed vote link for that paper

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
    summary: str | None = None  # a one-line TL;DR (Hugging Face's ai_summary)
    url_discussion: str | None = None  # the paper's Hugging Face page, with its comments
    reason: str | None = None  # why a paper outside the reader's topics is in their digest
    why: str | None = None  # why the matcher put it on the reader's topics, in a few words
    venue: str | None = None  # the journal (or preprint server) it appeared in
    url_journal: str | None = None  # the journal version, beside the preprint

    def __hash__(self) -> int:
        # Hashed once: a paper is part of the key of every card and digest it is in.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.paper_id, self.title, self.topics, self.reason, self.why))
            object.__setattr__(self, "_hash", cached)
        return cached


@lru_cache(maxsize=4096)  # a paper is in many digests of an edition: made readable once
def readable_paper(paper: DigestPaper) -> DigestPaper:
    """Return the paper with its title, authors, TL;DR and abstract as text, without LaTeX."""
    return dataclasses.replace(
        paper,
        title=readable(paper.title),
        authors=tuple([readable(a) for a in paper.authors]),
        abstract=readable(paper.abstract),
        summary=readable(paper.summary) if paper.summary else paper.summary,
    )


@dataclass(frozen=True)
class Recipient:
    """Who a digest is for; topics are the names of the topics they follow."""

    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]
    link_key: str = "none"  # the subscriber's key in link tokens (see newsletter.core.tokens)


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


class RenderedDigest:
    """The three rendered parts of one recipient's email.

    text_parts and html_parts, when present, let build_message_data reuse the encoding of the
    shared literals; they always join to text and html, which are joined only when read.
    """

    __slots__ = ("subject", "_text", "_html", "text_parts", "html_parts")

    def __init__(
        self,
        subject: str,
        text: str | None = None,
        html: str | None = None,
        text_parts: Filled | None = None,
        html_parts: Filled | None = None,
    ) -> None:
        if (text is None and text_parts is None) or (html is None and html_parts is None):
            raise ValueError("a digest needs its text and html, whole or in parts")
        self.subject = subject
        self._text = text
        self._html = html
        self.text_parts = text_parts
        self.html_parts = html_parts

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.text_parts.join()  # type: ignore[union-attr]  # text or its parts
        return self._text

    @property
    def html(self) -> str:
        if self._html is None:
            self._html = self.html_parts.join()  # type: ignore[union-attr]  # html or its parts
        return self._html

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RenderedDigest):
            return NotImplemented
        return (self.subject, self.text, self.html) == (other.subject, other.text, other.html)

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed has a method there

    def __repr__(self) -> str:
        return f"RenderedDigest(subject={self.subject!r}, text={self.text!r}, html={self.html!r})"


@dataclass
class RenderStats:
    """Counters that show the caches at work.

    inlines: premailer runs; hits, misses: digests found or not among those made; whole:
    digests rendered by running their whole template; cards: fragment macros run for a layout.
    """

    inlines: int = 0
    hits: int = 0
    misses: int = 0
    whole: int = 0
    cards: int = 0


def template_loader(settings: Settings) -> jinja2.BaseLoader:
    """Return a loader of the operator's `templates_dir` first, then the shipped templates."""
    folders = [settings.templates_dir] if settings.templates_dir else []
    folders.append(str(shipped_dir("templates")))
    return jinja2.ChoiceLoader([jinja2.FileSystemLoader(f) for f in folders])


def make_jinja_env(settings: Settings, kind: Kind) -> jinja2.Environment:
    """Build the HTML (autoescaped) or plain-text environment; operator templates win."""
    if kind not in ("html", "text"):
        raise ValueError(f"unknown template kind: {kind!r}")
    env = jinja2.Environment(
        loader=template_loader(settings),
        autoescape=kind == "html",
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    # A digest renders the same few dozen papers thousands of times: remember filter results.
    env.filters.update(
        authors_short=_memoized(authors_short),
        trim_abstract=_memoized(shorten),
        safe_url=_memoized(safe_url),
        long_date=long_date,
        short_date=short_date,
        one_line=_memoized(one_line),
        titles_line=titles_line,
        wordwrap=jinja2.pass_environment(_memoized(env.filters["wordwrap"])),
    )
    return env


def _memoized(func: Callable[..., object]) -> Callable[..., object]:
    """Wrap a filter in a bounded cache; unhashable arguments skip it."""
    cached = lru_cache(maxsize=FILTER_CACHE_SIZE, typed=True)(func)

    @functools.wraps(func)
    def memoized(*args: object, **kwargs: object) -> object:
        try:
            return cached(*args, **kwargs)
        except TypeError:
            return func(*args, **kwargs)

    return memoized


def authors_short(authors: Sequence[str], shown: int = AUTHORS_SHOWN) -> str:
    """Return "A, B, C et al." for long author lists, all names for short ones."""
    names = [one_line(a) for a in authors if one_line(a)]
    if len(names) > shown + 1:
        return ", ".join(names[:shown]) + " et al."
    return ", ".join(names)


def titles_line(papers: Iterable[DigestPaper], separator: str) -> str:
    """Join the papers' titles, each on one line, with separator (a digest's preheader)."""
    # As papers|map(attribute="title")|map("one_line")|join(separator), at a tenth of the cost.
    return separator.join([one_line(paper.title) for paper in papers])


def shorten(text: object, limit: int = ABSTRACT_CHARS, *, short: bool = False) -> str:
    """Make text one line of at most limit characters, cut at a word and marked with "…".

    `short` keeps only a taste of an abstract, for a paper whose TL;DR is shown above.
    """
    if short:
        limit = min(limit, ABSTRACT_UNDER_SUMMARY_CHARS)
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:  # a word boundary, unless it would lose much of the text
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
    # Printable text has no whitespace but the space: nothing to do without a double or
    # an outer one (the common case: names, titles, topics).
    if type(value) is str and value.isprintable() and "  " not in value:
        if value[:1] != " " and value[-1:] != " ":
            return value
    return _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()


class _Premailer(Premailer):
    """premailer, turning each distinct <style> block into rules once per process.

    A send inlines a few dozen documents of one stylesheet, and reading the rules again took
    most of each run. Valid for the options inline_css passes, which are always the same.
    """

    _rules: ClassVar[dict[tuple[str, int], tuple[list, list]]] = {}
    _leftover_css: ClassVar[dict[int, str]] = {}  # id of a cached leftover list -> its CSS

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list, list]:
        key = (css_body, ruleset_index)
        parsed = self._rules.get(key)
        if parsed is None:
            if len(self._rules) >= STYLE_CACHE_SIZE:  # operators' templates: a handful
                self._rules.clear()
                self._leftover_css.clear()
            parsed = self._rules[key] = super()._parse_style_rules(css_body, ruleset_index)
        return parsed

    def _css_rules_to_string(self, rules: list) -> str:
        css = self._leftover_css.get(id(rules))
        if css is None:
            css = super()._css_rules_to_string(rules)
            # Only a list the cache keeps alive has an id no other list can take.
            if any(rules is leftover for _, leftover in list(self._rules.values())):
                self._leftover_css[id(rules)] = css
        return css


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes, keeping media queries in a <style> block."""
    inlined = _Premailer(
        html,
        keep_style_tags=False,  # leftover rules (media queries, :hover) stay in a new <style>
        strip_important=False,  # media queries need !important to beat the inlined styles
        remove_classes=False,  # media queries select by class
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)  # pretty printing would depend on a node's neighbours
    return inlined if inlined.endswith("\n") else inlined + "\n"


_V = TypeVar("_V")


class _Lru(Generic[_V]):
    """A least-recently-used map bounded by entry count and by an estimate of bytes."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[object, tuple[_V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: object) -> _V | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        self._data.move_to_end(key)
        return entry[0]

    def put(self, key: object, value: _V, size: int) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._data[key] = (value, size)
        self.bytes += size
        while len(self._data) > self.max_items or (
            self.bytes > self.max_bytes and len(self._data) > 1
        ):
            _, (_, dropped) = self._data.popitem(last=False)
            self.bytes -= dropped


@dataclass(frozen=True, slots=True)
class _Split:
    """Text cut at its recipient placeholders: literals[0] slots[0] literals[1] ...

    An empty slot name stands for nothing: it only keeps two shared literals apart.
    """

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> Filled:
        return Filled(self.literals, tuple([values[slot] for slot in self.slots]))


def _compose(pieces: Sequence[_Split]) -> _Split:
    """Join splits into one, keeping each literal a separate (shared) string."""
    literals: list[str] = []
    slots: list[str] = []
    for piece in pieces:
        if literals:
            slots.append("")
        literals.extend(piece.literals)
        slots.extend(piece.slots)
    return _Split(tuple(literals), tuple(slots))


@dataclass(frozen=True, slots=True)
class _Cut:
    """A rendered document with its fragments taken out and a slot marker in each place."""

    skeleton: str
    fragments: tuple[tuple[str, str], ...]  # (name, rendered text), in document order


@dataclass(frozen=True, slots=True)
class _Draft:
    subject: str
    text: _Cut
    html: _Cut


@dataclass(frozen=True, slots=True)
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
    marker: str = ""

    def vote_url(self, paper_id: int) -> str:
        """Return the marker of this recipient's vote link for one paper (append /more, /less)."""
        return f"{self.marker}x{VOTE_SLOT}{int(paper_id)}x"


class _RecipientValues(dict[str, str]):
    """The values of a recipient's slots; vote links are signed when a body asks for them."""

    def __init__(
        self, values: dict[str, str], vote_url: Callable[[int], str], escape_links: bool
    ) -> None:
        super().__init__(values)
        self._vote_url = vote_url
        self._escape = escape_links

    def __missing__(self, slot: str) -> str:
        if not slot.startswith(VOTE_SLOT):
            raise KeyError(slot)
        url = self._vote_url(int(slot.removeprefix(VOTE_SLOT)))
        value = self[slot] = str(escape(url)) if self._escape else url
        return value


@dataclass
class DigestRenderer:
    """Renders digests from shared parts so a recipient costs only string substitution.

    Templates mark the parts that vary between digests with `fragment(name, macro, args...)`
    (or a `{% call fragment(name) %}` block). premailer inlines each distinct skeleton (the
    document without its fragments) and each distinct fragment once, many of them per run; a
    digest is a tuple of references to them. A template whose fragments are all macros is
    laid out once per number of papers (see newsletter.content.layouts) and each macro runs
    once per edition and arguments, so a new digest of known papers runs no template.
    """

    settings: Settings
    html_env: jinja2.Environment
    text_env: jinja2.Environment
    inline: Callable[[str], str] = inline_css
    cache_size: int = CACHE_SIZE
    stats: RenderStats = field(default_factory=RenderStats)

    def __post_init__(self) -> None:
        # Random per instance: paper text cannot contain it by accident or on purpose.
        token = "dpn" + secrets.token_hex(8)
        self._token = token
        markers = {slot: f"{token}x{slot}x" for slot in SLOTS}
        self._placeholders = _Placeholders(**markers, marker=token)
        self._split_re = re.compile(f"{token}x({'|'.join(SLOTS)}|{VOTE_SLOT}\\d+)x")
        self._slot = f"<!--{token}s-->"
        self._begin = f"<!--{token}f:"
        self._end = f"<!--{token}f-->"
        self._batch_re = re.compile(f"<!--{token}b(\\d+)-->(.*?)<!--{token}e\\1-->", re.S)
        self._cache: _Lru[_Body] = _Lru(self.cache_size, BODY_CACHE_BYTES)
        # A skeleton's pieces or a fragment's one split.
        self._parts: _Lru[tuple[_Split, ...] | _Split] = _Lru(PART_CACHE_SIZE, PART_CACHE_BYTES)
        self._layouts: _Lru[Layout | object] = _Lru(LAYOUT_CACHE_SIZE, 1 << 62)  # or _NO_LAYOUT
        self._cards: _Lru[str] = _Lru(CARD_CACHE_SIZE, CARD_CACHE_BYTES)
        self._broken: set[str] = set()  # skeletons whose markers did not survive inlining
        self._lock = threading.RLock()
        self._list_name = identity.list_name(self.settings)
        # Vote links are the base URL and a token of URL-safe characters: unless the base
        # holds a character HTML escapes, they need no escaping in the html part either.
        sample = tokens.feedback_url(self.settings, 1, "k", 1) if self.settings.secret_key else ""
        self._escape_votes = str(escape(sample)) != sample

    def render(
        self, edition: EditionInfo, papers: Sequence[DigestPaper], recipient: Recipient
    ) -> RenderedDigest:
        """Render one recipient's digest of papers."""
        if not papers:
            raise ValueError("a digest needs at least one paper; use render_empty")
        return self._render(self._body("digest", edition, tuple(papers)), recipient)

    def render_empty(self, edition: EditionInfo, recipient: Recipient) -> RenderedDigest:
        """Render the short "nothing on your topics today" note."""
        return self._render(self._body("empty", edition, ()), recipient)

    def warm(self, edition: EditionInfo, bodies: Iterable[Sequence[DigestPaper]]) -> None:
        """Prepare the digests of these paper lists, inlining what is new in shared runs."""
        keys: dict[tuple, tuple[str, tuple[DigestPaper, ...]]] = {}
        for papers in bodies:
            name = "digest" if papers else "empty"
            key = self._key(name, edition, tuple(papers))
            keys.setdefault(key, (name, tuple(papers)))
        with self._lock:
            missing = [(key, *keys[key]) for key in keys if self._cache.get(key) is None]
            if missing:
                self._build([(key, name, edition, papers) for key, name, papers in missing])

    def _render(self, body: _Body, recipient: Recipient) -> RenderedDigest:
        # One set of values and signed vote links for both parts of the message.
        values = self._recipient_values(recipient)
        votes: dict[int, str] = {}
        text_values = self._slot_values(recipient, html=False, values=values, votes=votes)
        html_values = self._slot_values(recipient, html=True, values=values, votes=votes)
        text = body.text.fill(text_values)
        html = body.html.fill(html_values)
        return RenderedDigest(body.subject, text_parts=text, html_parts=html)

    @staticmethod
    def _key(name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> tuple:
        return (name, edition, tuple([(p.paper_id, p.topics, p.reason, p.why) for p in papers]))

    def _body(self, name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> _Body:
        key = self._key(name, edition, papers)
        # Senders may share one renderer between threads: one of them builds what is missing.
        with self._lock:
            body = self._cache.get(key)
            if body is not None:
                self.stats.hits += 1
                return body
            self.stats.misses += 1
            return self._build([(key, name, edition, papers)])[key]

    def _build(self, wanted: list[tuple[tuple, str, EditionInfo, tuple]]) -> dict[tuple, _Body]:
        drafts = {key: self._draft(name, edition, papers) for key, name, edition, papers in wanted}
        self._inline_missing(list(drafts.values()))
        built = {}
        for key, draft in drafts.items():
            body = self._assemble(draft)
            weight = 64 * len(body.html.literals) + 64 * len(body.text.literals)
            if len(body.html.literals) == 1:  # not composed: the whole document is its own
                weight += len(body.html.literals[0])
            self._cache.put(key, body, weight)
            built[key] = body
        return built

    def _draft(self, name: str, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> _Draft:
        # Subject, preheader, cards, both parts: each reads the papers as text from here on.
        papers = tuple([readable_paper(p) for p in papers])
        context = self._context(edition, papers, self._fragment)
        if papers:
            context["subject_line"] = self._subject_line(edition, papers)
        subject = self.text_env.get_template(f"email/{name}.subject.txt").render(context)
        subject = shorten(subject, SUBJECT_MAX)
        layout = self._layout(name, edition, len(papers))
        if layout is not None:
            try:
                text_cut = self._laid_out(layout, "text", papers)
                return _Draft(subject, text_cut, self._laid_out(layout, "html", papers))
            except NoLayout:  # a macro read the papers of the layout, not its arguments
                self._layouts.put(layout.key, _NO_LAYOUT, 0)
        text = self.text_env.get_template(f"email/{name}.txt").render(context)
        html = self.html_env.get_template(f"email/{name}.html").render(context)
        self.stats.whole += 1
        return _Draft(subject, self._cut(text), self._cut(html))

    def _subject_line(self, edition: EditionInfo, papers: tuple[DigestPaper, ...]) -> str:
        fields = identity.SubjectFields(
            kind=edition.kind,
            date=short_date(edition.listing_date),
            top_title=papers[0].title,
            count=len(papers),
        )
        return fields.line(self.settings)

    def _layout(self, name: str, edition: EditionInfo, count: int) -> Layout | None:
        """Return the template laid out for this many papers, or None if it cannot be."""
        key = (name, edition, count)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._lay_out(key) or _NO_LAYOUT
            self._layouts.put(key, layout, 0)
        return layout if isinstance(layout, Layout) else None  # None for _NO_LAYOUT

    def _lay_out(self, key: tuple) -> Layout | None:
        name, edition, count = key
        stand_ins = StandIns(count)
        parts: dict[str, LayoutPart] = {}
        for kind, env in (("text", self.text_env), ("html", self.html_env)):
            recorder = SlotRecorder(self._token, stand_ins, html=kind == "html")
            template = env.get_template(f"email/{name}.{'txt' if kind == 'text' else kind}")
            try:
                rendered = template.render(self._context(edition, stand_ins, recorder))
                parts[kind] = recorder.layout(rendered, self._slot)
            except Exception:  # rendered whole instead, where a real error shows itself
                return None
        return Layout(key, parts["text"], parts["html"])

    def _laid_out(self, layout: Layout, kind: Kind, papers: tuple[DigestPaper, ...]) -> _Cut:
        """Return a digest's document from its layout and its cards, each made once."""
        part = layout.text if kind == "text" else layout.html
        fragments: list[tuple[str, str]] = []
        for slot in part.slots:
            args = slot.arguments(papers)
            key: tuple[object, ...] | None = (layout.ident, kind, slot.name, args)
            try:
                content = self._cards.get(key)
            except TypeError:  # an unhashable argument: made for each digest
                key, content = None, None
            if content is None:
                content = str(slot.macro(*args))
                self.stats.cards += 1
                if key is not None:
                    self._cards.put(key, content, 2 * len(content) + 256)
            fragments.append((slot.name, content))
        return _Cut(part.skeleton, tuple(fragments))

    def _cut(self, rendered: str) -> _Cut:
        # str.split and partition, not a regex: a digest is ~40 KB and most are cut once.
        chunks = rendered.split(self._end)
        skeleton: list[str] = []
        fragments: list[tuple[str, str]] = []
        for chunk in chunks[:-1]:
            head, found, tail = chunk.rpartition(self._begin)
            if not found:
                raise ValueError("a fragment ends that never began")
            name, _, content = tail.partition("-->")
            skeleton.append(head)
            fragments.append((name, content))
        skeleton.append(chunks[-1])
        return _Cut(self._slot.join(skeleton), tuple(fragments))

    def _whole(self, cut: _Cut) -> str:
        """Return a document with its fragments back in their places."""
        pieces = cut.skeleton.split(self._slot)
        out = [pieces[0]]
        for (_, content), piece in zip(cut.fragments, pieces[1:], strict=True):
            out.append(content)
            out.append(piece)
        return "".join(out)

    def _inline_missing(self, drafts: list[_Draft]) -> None:
        """Inline every skeleton and fragment not yet cached, in as few premailer runs as can be."""
        cuts = {d.html.skeleton: d.html for d in drafts if d.html.skeleton not in self._broken}
        pending: dict[tuple[str, str], None] = {}
        for draft in drafts:
            if draft.html.skeleton in self._broken:
                continue
            for fragment in draft.html.fragments:
                if self._parts.get(("html", *fragment)) is None:
                    pending.setdefault(fragment)
        new = [s for s in cuts if self._parts.get(("html", s)) is None]
        # New fragments ride along with a new skeleton, or else with any that has their name.
        for skeleton in [*new, *(s for s in cuts if s not in new)]:
            names = tuple(name for name, _ in cuts[skeleton].fragments)
            batch = [f for f in pending if f[0] in names]
            for fragment in batch:
                del pending[fragment]
            if batch or skeleton in new:
                self._inline_run(skeleton, names, batch)
            if not pending and skeleton not in new:
                break

    def _inline_run(
        self, skeleton: str, names: tuple[str, ...], batch: list[tuple[str, str]]
    ) -> None:
        """Inline a skeleton with new fragments placed at the first slot of their name."""
        token = self._token
        pieces = skeleton.split(self._slot)
        placed: set[str] = set()
        document = [pieces[0]]
        for name, piece in zip(names, pieces[1:], strict=True):
            document.append(self._slot)
            if name not in placed:
                placed.add(name)
                document.extend(
                    f"<!--{token}b{j}-->{raw}<!--{token}e{j}-->"
                    for j, (fname, raw) in enumerate(batch)
                    if fname == name
                )
            document.append(piece)
        inlined = self.inline("".join(document))
        self.stats.inlines += 1
        found = {int(m[1]): m[2] for m in self._batch_re.finditer(inlined)}
        rest = self._batch_re.sub("", inlined).split(self._slot)
        if len(found) != len(batch) or len(rest) != len(pieces):
            # The parser moved a marker: digests of this skeleton are inlined whole.
            self._broken.add(skeleton)
            return
        for j, fragment in enumerate(batch):
            self._parts.put(("html", *fragment), self._split(found[j]), 2 * len(found[j]))
        if self._parts.get(("html", skeleton)) is None:
            split = tuple(self._split(piece) for piece in rest)
            self._parts.put(("html", skeleton), split, len(skeleton) + len(inlined))

    def _assemble(self, draft: _Draft) -> _Body:
        html = self._composed(draft.html, "html")
        if html is None:
            html = self._split(self.inline(self._whole(draft.html)))
            self.stats.inlines += 1
        text = self._composed(draft.text, "text")
        assert text is not None
        return _Body(draft.subject, text, html)

    def _composed(self, cut: _Cut, kind: str) -> _Split | None:
        skeleton = self._shared((kind, cut.skeleton), cut.skeleton, kind, whole=True)
        if skeleton is None:
            return None
        pieces: list[_Split] = [skeleton[0]]
        for fragment, rest in zip(cut.fragments, skeleton[1:], strict=True):
            part = self._shared((kind, *fragment), fragment[1], kind, whole=False)
            if part is None:
                return None
            pieces.append(part)
            pieces.append(rest)
        return _compose(pieces)

    def _shared(self, key: tuple, raw: str, kind: str, *, whole: bool):  # noqa: ANN202
        """Return the cached split of a part; text parts are split on first use."""
        cached = self._parts.get(key)
        if cached is not None or kind == "html":
            return cached
        split = (
            tuple(self._split(piece) for piece in raw.split(self._slot))
            if whole
            else self._split(raw)
        )
        self._parts.put(key, split, 2 * len(raw))
        return split

    def _context(
        self, edition: EditionInfo, papers: tuple, fragment: Callable[..., str]
    ) -> dict[str, object]:
        return {
            "edition": edition,
            "papers": papers,
            "recipient": self._placeholders,
            "fragment": fragment,
            "list_name": self._list_name,
            "archive_url": tokens.archive_url(self.settings, edition.listing_date),
            "postal_address": self.settings.postal_address,
            "base_url": self.settings.base_url,
        }

    def _fragment(
        self,
        name: str,
        macro: Callable[..., str] | None = None,
        *args: object,
        caller: Callable[[], str] | None = None,
    ) -> str:
        """Mark a fragment (a macro's output, or a `{% call %}` block's) for _cut to find."""
        if macro is not None:
            content = macro(*args)
        elif caller is not None:
            content = caller()
        else:
            raise TypeError("fragment needs a macro or a {% call %} block")
        begin, end = f"<!--{self._token}f:{name}-->", f"<!--{self._token}f-->"
        if isinstance(content, Markup):
            return Markup(begin) + content + Markup(end)
        return begin + content + end

    def _split(self, rendered: str) -> _Split:
        parts = self._split_re.split(rendered)
        return _Split(tuple(parts[0::2]), tuple(parts[1::2]))

    def _slot_values(
        self,
        recipient: Recipient,
        *,
        html: bool,
        values: dict[str, str] | None = None,
        votes: dict[int, str] | None = None,
    ) -> _RecipientValues:
        """Return what fills a recipient's slots, escaped for HTML or not."""
        values = dict(values if values is not None else self._recipient_values(recipient))
        if html:
            values = {slot: str(escape(value)) for slot, value in values.items()}
        values[""] = ""
        signed = votes if votes is not None else {}
        make = tokens.feedback_url_maker(self.settings, recipient.subscriber_id, recipient.link_key)

        def vote_url(paper_id: int) -> str:
            url = signed.get(paper_id)
            if url is None:
                url = signed[paper_id] = make(paper_id)
            return url

        return _RecipientValues(values, vote_url, html and self._escape_votes)

    def _recipient_values(self, recipient: Recipient) -> dict[str, str]:
        name = shorten(recipient.name, DISPLAY_MAX)
        topics = shorten(", ".join(one_line(t) for t in recipient.topics), DISPLAY_MAX * 2)
        return {
            "name": name,
            "greeting": f"Hi {name}," if name else "Hello,",
            "email": one_line(recipient.email),
            "topics": topics or "no topics yet",
            "unsubscribe_url": tokens.unsubscribe_url(
                self.settings, recipient.subscriber_id, recipient.link_key
            ),
            "manage_url": tokens.manage_url(
                self.settings, recipient.subscriber_id, recipient.link_key
            ),
        }


_NO_LAYOUT = object()  # cached for a template that cannot be laid out


def make_renderer(settings: Settings) -> DigestRenderer:
    """Build a renderer with its own Jinja environments and body cache."""
    return DigestRenderer(
        settings, make_jinja_env(settings, "html"), make_jinja_env(settings, "text")
    )
