"""The pieces a renderer shares between digests, and the slots that make each reader's copy.

A rendered document is cut at its fragments (Cut); text is split at its recipient
placeholders (Split) and filled with one recipient's values (RecipientValues) into a Filled.
Templates see the recipient as opaque markers (Placeholders). Lru holds the shared pieces,
bounded by count and by bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from markupsafe import escape

from newsletter.content.digest import Filled

# Per-recipient values: the body is rendered and inlined once with placeholders in their place.
SLOTS = ("name", "greeting", "email", "topics", "unsubscribe_url", "manage_url")
VOTE_SLOT = "vote"  # followed by a paper id: the recipient's signed vote link for that paper

_V = TypeVar("_V")


class Lru(Generic[_V]):
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
class Split:
    """Text cut at its recipient placeholders: literals[0] slots[0] literals[1] ...

    An empty slot name stands for nothing: it only keeps two shared literals apart.
    """

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> Filled:
        return Filled(self.literals, tuple([values[slot] for slot in self.slots]))


def compose(pieces: Sequence[Split]) -> Split:
    """Join splits into one, keeping each literal a separate (shared) string."""
    literals: list[str] = []
    slots: list[str] = []
    for piece in pieces:
        if literals:
            slots.append("")
        literals.extend(piece.literals)
        slots.extend(piece.slots)
    return Split(tuple(literals), tuple(slots))


@dataclass(frozen=True, slots=True)
class Cut:
    """A rendered document with its fragments taken out and a slot marker in each place."""

    skeleton: str
    fragments: tuple[tuple[str, str], ...]  # (name, rendered text), in document order


@dataclass
class Placeholders:
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


class RecipientValues(dict[str, str]):
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
