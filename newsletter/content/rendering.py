"""Render digests from shared parts: a recipient costs only the fill-in of their values."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import jinja2
from markupsafe import Markup, escape

from newsletter.content.css import inline_css
from newsletter.content.digest import (
    DigestPaper,
    EditionInfo,
    Recipient,
    RenderedDigest,
    readable_paper,
)
from newsletter.content.layouts import Layout, LayoutPart, NoLayout, SlotRecorder, StandIns
from newsletter.content.parts import (
    SLOTS,
    VOTE_SLOT,
    Cut,
    Lru,
    Placeholders,
    RecipientValues,
    Split,
    compose,
)
from newsletter.content.templating import Kind, make_jinja_env, one_line, short_date, shorten
from newsletter.core import identity, tokens
from newsletter.core.config import Settings

CACHE_SIZE = 8192  # digests: each is a few hundred bytes of references to shared parts
BODY_CACHE_BYTES = 32 << 20
PART_CACHE_SIZE = 8192  # skeletons and fragments, inlined and cut at the placeholders
PART_CACHE_BYTES = 96 << 20
LAYOUT_CACHE_SIZE = 256  # per template, edition and number of papers: a few dozen are used
CARD_CACHE_SIZE = 16384  # a fragment's output per arguments: a few per paper and edition
CARD_CACHE_BYTES = 48 << 20
SUBJECT_MAX = 100
DISPLAY_MAX = 120  # longest name or topic list shown back to a reader


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


@dataclass(frozen=True, slots=True)
class _Draft:
    subject: str
    text: Cut
    html: Cut


@dataclass(frozen=True, slots=True)
class _Body:
    subject: str
    text: Split
    html: Split


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
        self._placeholders = Placeholders(**markers, marker=token)
        self._split_re = re.compile(f"{token}x({'|'.join(SLOTS)}|{VOTE_SLOT}\\d+)x")
        self._slot = f"<!--{token}s-->"
        self._begin = f"<!--{token}f:"
        self._end = f"<!--{token}f-->"
        self._batch_re = re.compile(f"<!--{token}b(\\d+)-->(.*?)<!--{token}e\\1-->", re.S)
        self._cache: Lru[_Body] = Lru(self.cache_size, BODY_CACHE_BYTES)
        # A skeleton's pieces or a fragment's one split.
        self._parts: Lru[tuple[Split, ...] | Split] = Lru(PART_CACHE_SIZE, PART_CACHE_BYTES)
        self._layouts: Lru[Layout | object] = Lru(LAYOUT_CACHE_SIZE, 1 << 62)  # or _NO_LAYOUT
        self._cards: Lru[str] = Lru(CARD_CACHE_SIZE, CARD_CACHE_BYTES)
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

    def _laid_out(self, layout: Layout, kind: Kind, papers: tuple[DigestPaper, ...]) -> Cut:
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
        return Cut(part.skeleton, tuple(fragments))

    def _cut(self, rendered: str) -> Cut:
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
        return Cut(self._slot.join(skeleton), tuple(fragments))

    def _whole(self, cut: Cut) -> str:
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

    def _composed(self, cut: Cut, kind: str) -> Split | None:
        skeleton = self._shared((kind, cut.skeleton), cut.skeleton, kind, whole=True)
        if skeleton is None:
            return None
        pieces: list[Split] = [skeleton[0]]
        for fragment, rest in zip(cut.fragments, skeleton[1:], strict=True):
            part = self._shared((kind, *fragment), fragment[1], kind, whole=False)
            if part is None:
                return None
            pieces.append(part)
            pieces.append(rest)
        return compose(pieces)

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

    def _split(self, rendered: str) -> Split:
        parts = self._split_re.split(rendered)
        return Split(tuple(parts[0::2]), tuple(parts[1::2]))

    def _slot_values(
        self,
        recipient: Recipient,
        *,
        html: bool,
        values: dict[str, str] | None = None,
        votes: dict[int, str] | None = None,
    ) -> RecipientValues:
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

        return RecipientValues(values, vote_url, html and self._escape_votes)

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
