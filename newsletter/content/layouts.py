"""Digest layouts: a template run once per number of papers, each paper's card made apart.

A digest template shows each paper through a macro, `{{ fragment("paper", card, paper) }}`.
Run with stand-ins for its papers, the template gives its layout: the document with a slot
in place of each fragment, and the macro and arguments that fill the slot. A stand-in refuses
to be read (its fields, its text, comparisons), so a template that reads its papers outside
its fragments, beyond how many there are, has no layout and its digests are rendered whole.
With a layout, a digest of known papers in any order is the layout's text around the cards'
remembered output: no template runs for it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from markupsafe import Markup


class NoLayout(Exception):  # a signal the renderer catches, not an error anyone sees
    """A template read a stand-in: its digests are rendered whole."""


def _refuse(*_args: object) -> NoReturn:
    raise NoLayout


class _StandIn:
    """A paper's place in a layout; reading anything of it raises NoLayout."""

    __slots__ = ()
    __getattr__ = __getitem__ = __str__ = __format__ = __html__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse


class StandIns(tuple):
    """The papers of a layout: only their number can be read."""

    __slots__ = ()

    def __new__(cls, count: int) -> StandIns:
        return super().__new__(cls, (_StandIn() for _ in range(count)))


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a stand-in was among a slot's arguments: the paper at this index goes there."""

    index: int


_ALL = object()  # where the stand-ins themselves were: the digest's papers go there


def _placed(value: object, stand_ins: StandIns) -> object:
    """Return an argument with each stand-in replaced by its place."""
    if type(value) is _StandIn:
        for index, stand_in in enumerate(stand_ins):
            if stand_in is value:
                return _Place(index)
        raise NoLayout  # cannot happen: a template sees the stand-ins of one layout
    if value is stand_ins:
        return _ALL
    if isinstance(value, tuple | list) and type(value) in (tuple, list):  # not a subclass
        return type(value)(_placed(v, stand_ins) for v in value)
    return value


def _resolved(value: object, papers: Sequence[object]) -> object:
    if type(value) is _Place:
        return papers[value.index]
    if value is _ALL:
        return papers
    if isinstance(value, tuple | list) and type(value) in (tuple, list):  # not a subclass
        return type(value)(_resolved(v, papers) for v in value)
    return value


@dataclass(frozen=True, slots=True)
class Slot:
    """A fragment's place: the macro that fills it and its arguments, papers by place."""

    name: str
    macro: Callable[..., str]
    args: tuple[object, ...]

    def arguments(self, papers: Sequence[object]) -> tuple[object, ...]:
        """Return the slot's arguments for a digest of these papers."""
        return tuple([_resolved(arg, papers) for arg in self.args])


@dataclass(frozen=True, slots=True)
class LayoutPart:
    """One part (text or html) of a layout: the document with a marker at each slot."""

    skeleton: str
    slots: tuple[Slot, ...]


class SlotRecorder:
    """What a template's `fragment` is while it is laid out: records a slot, writes a marker."""

    def __init__(self, token: str, stand_ins: StandIns, *, html: bool) -> None:
        self._stand_ins = stand_ins
        self._marker = f"<!--{token}r"
        self._html = html
        self._slots: list[Slot] = []
        self._sealed = False
        self._found = re.compile(f"{re.escape(self._marker)}(\\d+)-->")

    def __call__(
        self, name: str, macro: Callable[..., str] | None = None, *args: object, **kwargs: object
    ) -> str:
        # A `{% call fragment(name) %}` block (caller=...) is rendered in place: no layout.
        if self._sealed or macro is None or kwargs:
            raise NoLayout
        self._slots.append(Slot(name, macro, tuple(_placed(a, self._stand_ins) for a in args)))
        marker = f"{self._marker}{len(self._slots) - 1}-->"
        return Markup(marker) if self._html else marker

    def layout(self, rendered: str, slot_marker: str) -> LayoutPart:
        """Return the rendered layout with slot_marker at each fragment, slots in document order."""
        self._sealed = True  # a card that calls fragment itself cannot be laid out
        pieces = self._found.split(rendered)
        order = [int(i) for i in pieces[1::2]]
        if sorted(order) != list(range(len(self._slots))):
            raise NoLayout  # a fragment written twice or never: the document is not a layout
        return LayoutPart(slot_marker.join(pieces[0::2]), tuple(self._slots[i] for i in order))


@dataclass(frozen=True, slots=True)
class Layout:
    """A digest template laid out for one edition and one number of papers."""

    key: tuple
    text: LayoutPart
    html: LayoutPart
    ident: int = field(default_factory=lambda: next(_IDENTS))  # cheaper to hash than key


_IDENTS: itertools.count[int] = itertools.count()
