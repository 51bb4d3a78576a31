"""The subscriber CSV file: its columns and cells, reading a file's lines and header, and the
export that writes every subscriber in the format the import reads.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from newsletter.audience.subscribers import subscriber_pages, topic_slugs
from newsletter.core.errors import InputError
from newsletter.core.models import Subscriber
from newsletter.matching.topics import split_list

# The CSV format, shared by import and export. Export separates topics by ";" inside their
# field so that a spreadsheet never has to quote them; import also reads a quoted "a,b",
# as people type it (a slug never holds a comma, so the two cannot be confused).
CSV_COLUMNS = (
    "email", "name", "topics", "timezone", "hour", "max_papers", "status", "interests"
)  # fmt: skip
REQUIRED_COLUMNS = ("email", "topics")
TOPIC_SEPARATOR = ";"
OTHER_TOPIC_SEPARATOR = ","
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV
# injection); export puts a quote before such a cell so that it shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A longer line is not a subscriber row: refuse it rather than read a binary file whole.
MAX_LINE_BYTES = 1 << 20


def split_topics_cell(value: str) -> list[str]:
    """Split a CSV topics cell on ";" or ","."""
    return split_list(value.replace(OTHER_TOPIC_SEPARATOR, TOPIC_SEPARATOR), TOPIC_SEPARATOR)


class _Lines:
    """Decode a binary stream line by line, counting lines and bytes for errors and progress."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        lineno = 0
        while raw := self.stream.readline(MAX_LINE_BYTES):
            lineno += 1
            self.bytes_read += len(raw)
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InputError(f"{self.name}, line {lineno}: line longer than 1 MiB: not CSV")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.name}, line {lineno}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                    "save the file as UTF-8"
                ) from None


@contextmanager
def open_csv(source: str | os.PathLike[str] | IO[Any]) -> Iterator[_Lines]:
    """Open a path or a stream as the lines of a CSV file, read as UTF-8."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        with stream:
            yield _Lines(stream, path.name)
        return
    name = Path(str(getattr(source, "name", "<stream>"))).name
    yield _Lines(_EncodedText(source) if isinstance(source, io.TextIOBase) else source, name)


class _EncodedText:
    """Present an open text stream as the UTF-8 bytes _Lines reads."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def readline(self, limit: int) -> bytes:
        return self.text.readline(limit).encode()


def read_header(reader: Any, name: str) -> list[str]:
    """Return the header's columns, lowercased, or raise InputError saying what is wrong."""
    header = next((r for r in reader if r), None)
    expected = ",".join(CSV_COLUMNS)
    if header is None:
        raise InputError(f"{name} is empty: expected a header line such as {expected}")
    columns = [c.strip().lower() for c in header]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if unknown or missing or repeated:
        what = (
            f"unknown column(s) {', '.join(map(repr, unknown))}"
            if unknown
            else f"missing column(s) {', '.join(missing)}"
            if missing
            else f"repeated column(s) {', '.join(repeated)}"
        )
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t"):
            hint = " (columns seem separated by ';' or tabs: save the file as comma-separated)"
        raise InputError(
            f"{name}, line {reader.line_num}: {what}; the header must name columns from {expected} "
            f"and include {' and '.join(REQUIRED_COLUMNS)}{hint}"
        )
    return columns


def export_csv(out: IO[str], *, session: Session) -> int:
    """Write every subscriber to `out` as CSV, the import format; return the count."""
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for page in subscriber_pages(session):
        for subscriber in page:
            writer.writerow(_csv_row(subscriber))
            count += 1
    return count


def _csv_row(subscriber: Subscriber) -> list[Any]:
    cells = [
        subscriber.email,
        subscriber.name,
        TOPIC_SEPARATOR.join(topic_slugs(subscriber)),
        subscriber.timezone,
        subscriber.delivery_hour,
        subscriber.max_papers,
        subscriber.status.value,
        subscriber.interests or "",
    ]
    return [quote_cell(c) if isinstance(c, str) else c for c in cells]


def quote_cell(value: str) -> str:
    """Put a quote before a cell a spreadsheet would run as a formula."""
    # Quotes already there are looked through ("'=x" becomes "''=x"), so that
    # unquote_cell() can tell the quote added here from the cell's own.
    return "'" + value if _is_formula(value) else value


def unquote_cell(value: str) -> str:
    """Remove the quote quote_cell() added, and only that one."""
    return value[1:] if value.startswith("'") and _is_formula(value) else value


def _is_formula(value: str) -> bool:
    return value.lstrip("'").startswith(FORMULA_STARTS)
