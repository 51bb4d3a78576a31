"""Read a JSON list one element at a time, from a file or stream of any size and layout.

Only one element is held at a time, so memory does not grow with the file; errors name the
element (its row, from 1) and the line it is on.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from newsletter.core.errors import InputError

CHUNK_BYTES = 1 << 16
MAX_ELEMENT_CHARS = 1 << 20  # a subscriber's record is a few kB: more is not one
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@contextmanager
def json_list(
    source: str | os.PathLike[str] | IO[Any],
    *,
    what: str = "list",
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, Iterator[tuple[int, Any]]]]:
    """Yield the source's name and its elements as (row, value); raise InputError if unusable.

    `what` names the list in errors ("not a JSON list of subscribers"). `on_progress`
    receives the number of bytes read since its last call.
    """
    with _opened(source) as (stream, name):
        chunks = _chunks(stream, name, on_progress)
        yield name, iter(_JsonList(chunks, name, what))


class _JsonList:
    """Read a JSON list one element at a time, whatever its size and layout."""

    def __init__(self, chunks: Iterator[str], name: str, what: str) -> None:
        self.chunks = chunks
        self.name = name
        self.what = what
        self.buf = ""
        self.pos = 0
        self.line = 1  # the line buf[0] is on
        self.eof = False

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._next_char() != "[":
            raise InputError(f"{self.name}: not a JSON {self.what} (it must start with [)")
        self.pos += 1
        row = 0
        if self._next_char() == "]":
            self.pos += 1
        else:
            while True:
                row += 1
                yield row, self._value(row)
                char = self._next_char()
                self.pos += 1
                if char == "]":
                    break
                if char != ",":
                    raise self._error(row, "expected , or ] after it", self.pos - 1)
        if self._next_char() != "":
            raise self._error(row, "text after the list's closing ]", self.pos)

    def _fill(self) -> bool:
        chunk = "" if self.eof else next(self.chunks, "")
        if not chunk:
            self.eof = True
            return False
        self.line += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _next_char(self) -> str:
        """Skip white space; return the next character, or "" at the end."""
        while True:
            # Never None: _SPACE matches the empty string too.
            self.pos = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _value(self, row: int) -> Any:
        self._next_char()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Most likely cut off at the buffer's end: read on, up to an element's size.
                if len(self.buf) - self.pos <= MAX_ELEMENT_CHARS and self._fill():
                    continue
                raise self._error(row, f"not valid JSON: {exc.msg}", exc.pos) from None
            # A number at the very end may go on in the next chunk.
            if end < len(self.buf) or not self._fill():
                self.pos = end
                return value

    def _error(self, row: int, what: str, pos: int) -> InputError:
        line = self.line + self.buf.count("\n", 0, pos)
        return InputError(f"{self.name}, row {row} (line {line}): {what}")


def _chunks(stream: IO[Any], name: str, on_progress: Callable[[int], None] | None) -> Iterator[str]:
    """Yield the stream's text in chunks, checking that it is UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, first = 0, True
    while True:
        raw = stream.read(CHUNK_BYTES)
        if isinstance(raw, str):  # an open text stream
            raw = raw.encode()
        try:
            text = decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                f"{offset + exc.start}); save the file as UTF-8"
            ) from None
        offset += len(raw)
        if on_progress is not None and raw:
            on_progress(len(raw))
        if first and text:
            text, first = text.removeprefix("\ufeff"), False
        if text:
            yield text
        if not raw:
            return


@contextmanager
def _opened(source: str | os.PathLike[str] | IO[Any]) -> Iterator[tuple[IO[Any], str]]:
    if not isinstance(source, str | os.PathLike):
        yield source, Path(str(getattr(source, "name", "<stream>"))).name
        return
    path = Path(source)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        yield stream, path.name
