"""Build the bytes of emails: headers, two quoted-printable parts, optional DKIM.

Every header field comes from newsletter.headers; fields shared by many messages (From,
List-Id, a subject, the date of this second) are built once and reused as bytes.
"""

from __future__ import annotations

import binascii
import itertools
import os
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from newsletter.content import headers
from newsletter.content.digest import Filled, Recipient, RenderedDigest
from newsletter.core import identity
from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError
from newsletter.core.secret_key import warn_if_exposed

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
DOT = ord(".")
MIME_VERSION = headers.token_field("MIME-Version", "1.0")
ONE_CLICK = headers.token_field("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
# Tells vacation responders not to answer (RFC 3834); SpamAssassin scores it as a list.
PRECEDENCE_BULK = headers.token_field("Precedence", "bulk")
# Transactional mail is no list mail, but auto-replies are as unwanted (RFC 3834).
AUTO_GENERATED = headers.token_field("Auto-Submitted", "auto-generated")
# dkimpy's defaults leave List-Unsubscribe-Post out; RFC 8058 requires it to be signed.
DKIM_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    # Absent from digests, and signed all the same: a forwarder who adds one breaks the
    # signature instead of putting a Reply-To or a Cc of their choice under our name.
    b"Reply-To",
    b"Cc",
    b"Sender",
    b"References",
    b"In-Reply-To",
)
DKIM_SETTINGS = ("dkim_selector", "dkim_domain", "dkim_private_key_file")

_PART_HEADERS = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'
)
QP_LINE = 76  # RFC 2045: encoded lines of at most 76 characters, the soft-break "=" included
QP_CACHE_SIZE = 8192
# Printable ASCII without "=" nor a space at either end: quoted-printable leaves it unchanged.
_QP_UNCHANGED = re.compile(r"[!-<>-~](?:[ !-<>-~]*[!-<>-~])?")
ID_COUNTER_LIMIT = 1 << 32  # the counter fills the last 8 of an id's 32 hex digits


@dataclass(frozen=True)
class DkimSigner:
    """Signs whole messages with one DKIM key; sign() returns the header line to prepend."""

    selector: bytes
    domain: bytes
    private_key: bytes
    include_headers: tuple[bytes, ...] = DKIM_HEADERS

    def sign(self, message: bytes) -> bytes:
        """Return the DKIM-Signature header (CRLF-terminated) for a complete message."""
        import dkim  # optional dependency: only deployments that sign need it

        return dkim.sign(
            message,
            self.selector,
            self.domain,
            self.private_key,
            include_headers=oversigned(message, self.include_headers),
        )


def oversigned(message: bytes, names: tuple[bytes, ...]) -> list[bytes]:
    """Name each header once more than the message has it (RFC 6376 section 8.15).

    The extra name signs an absent field: a second Subject or a Reply-To added on the
    way then fails verification instead of being shown as signed.
    """
    head = message.split(CRLF + CRLF, 1)[0]
    counts = Counter(
        line.split(b":", 1)[0].strip().lower()
        for line in head.split(CRLF)
        if line[:1] not in (b" ", b"\t")
    )
    return [name for name in names for _ in range(counts[name.lower()] + 1)]


def build_message_data(
    rendered: RenderedDigest,
    *,
    recipient: Recipient,
    settings: Settings,
    message_id: str,
    date: datetime | None = None,
    list_unsubscribe_url: str,
    list_unsubscribe_mailto: str | None,
    dkim: DkimSigner | None = None,
) -> tuple[bytes, bool]:
    """Assemble a multipart/alternative email (text, then HTML) as CRLF bytes, ready to send.

    Also tell whether no line starts with a dot.

    A message with no such line needs no SMTP dot-stuffing: the client can skip a scan.
    """
    header_lines = [
        headers.from_field(settings.from_address),
        headers.address_field("To", recipient.name, recipient.email),
        _subject_field(rendered.subject),
        _date_field(date),
        headers.message_id_field(message_id),
        MIME_VERSION,
        headers.list_id_field(identity.list_id(settings)),
        headers.list_unsubscribe_field(list_unsubscribe_url, list_unsubscribe_mailto),
        ONE_CLICK,
        PRECEDENCE_BULK,
    ]
    message, dots = _multipart(header_lines, rendered)
    if dkim is not None:
        return dkim.sign(message) + message, False
    return message, not dots


def build_transactional(
    *,
    settings: Settings,
    to_name: str,
    to_email: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    date: datetime | None = None,
) -> bytes:
    """Assemble a one-off email to one person (text, then HTML), without list headers."""
    header_lines = [
        headers.from_field(settings.from_address),
        headers.address_field("To", to_name, to_email),
        headers.text_field("Subject", subject),
        _date_field(date),
        headers.message_id_field(message_id),
        MIME_VERSION,
        AUTO_GENERATED,
    ]
    return _multipart(header_lines, RenderedDigest(subject, text, html))[0]


def _multipart(header_lines: list[bytes], rendered: RenderedDigest) -> tuple[bytes, bool]:
    """Add a multipart/alternative Content-Type and the two bodies; tell if a line has a dot."""
    # "=_" never occurs in quoted-printable text, so the boundary cannot collide with a body.
    boundary = "=_dpn_" + _IDS.next()
    header_lines.append(headers.multipart_field("alternative", boundary))
    # One list and one join for the whole message: a 40 KB body is copied only once.
    head = headers.header_block(header_lines)
    # Folded header lines start with a space; a dot could only come from a bad value.
    dots = head[:1] == b"." or b"\r\n." in head
    out = [head, CRLF + CRLF]
    delimiter = b"--" + boundary.encode("ascii")
    # Recipient values encoded once for both parts: most (links, addresses) are in each.
    encoded: dict[str, _QpPiece] = {}
    for subtype, kind in ((b"plain", "text"), (b"html", "html")):
        out += (delimiter, CRLF, _PART_HEADERS % subtype, CRLF, CRLF)
        dots |= _encode_into(out, rendered, kind, encoded)
        out.append(CRLF)
    out += (delimiter, b"--", CRLF)
    return b"".join(out), dots


def _encode_into(
    out: list[bytes], rendered: RenderedDigest, kind: str, encoded: dict[str, _QpPiece]
) -> bool:
    """Encode the text or html of a digest, from its shared parts when it has them."""
    parts = rendered.text_parts if kind == "text" else rendered.html_parts
    if parts is not None:
        return _qp_extend(out, "", parts, encoded)  # the joined string is never needed
    return _qp_extend(out, rendered.text if kind == "text" else rendered.html, None)


def _qp_extend(
    out: list[bytes], text: str, parts: Filled | None, encoded: dict[str, _QpPiece] | None = None
) -> bool:
    """Append the quoted-printable pieces of a body to out; the last ends with a line break.

    Return whether a line of it starts with a dot. `encoded` keeps the values' encodings
    for another part of the same message.
    """
    start = len(out)
    if parts is None:
        dots = _qp_join(out, [_qp_piece(text)])
    else:
        literals, values = parts.literals, parts.values
        if len(values) != len(literals) - 1:
            raise ValueError("a body needs one value between each two literals")
        # Most values are empty (structural slots): the literals around them join once per body.
        chunks, slots = _qp_plan(literals, bytes(map(bool, values)))
        pieces: list[_QpPiece] = [_NO_PIECE] * (2 * len(chunks) - 1)
        pieces[0::2] = chunks
        # A value often stands in several slots (a vote link in each of two places).
        encoded = {} if encoded is None else encoded
        pieces[1::2] = [
            encoded[v] if (v := values[slot]) in encoded else encoded.setdefault(v, _qp_piece(v))
            for slot in slots
        ]
        dots = _qp_join(out, pieces)
    if len(out) == start or not out[-1].endswith(CRLF):
        out.append(CRLF)
    return dots


class _QpPiece(NamedTuple):
    """Quoted-printable bytes of a fragment, with the lengths of its first and last lines."""

    data: bytes | tuple[bytes, ...]  # a tuple for a merged run of literals
    first: int
    last: int
    multiline: bool
    dotted: bool  # a line after its first starts with "."


def _qp_piece(text: str) -> _QpPiece:
    # Most recipient values (names, addresses, links) are short and need no encoding.
    if len(text) < QP_LINE and text != "." and _QP_UNCHANGED.fullmatch(text):
        return _QpPiece(text.encode("ascii"), len(text), len(text), False, False)
    if len(text) < 4 * QP_LINE and text[:1] != "." and _QP_UNCHANGED.fullmatch(text):
        # A long plain value (a signed link): only soft breaks to add, as b2a_qp would.
        raw = text.encode("ascii")
        step = QP_LINE - 1
        lines = [raw[i : i + step] for i in range(0, len(raw), step)]
        data = SOFT_BREAK.join(lines)
        return _QpPiece(data, len(lines[0]), len(lines[-1]), True, b"\r\n." in data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    data = encoded.replace(b"\n", CRLF)
    head, newline, _ = data.partition(CRLF)
    tail = data.rpartition(CRLF)[2]
    if len(tail) >= QP_LINE:
        # Leave room for the "=" of a soft break that joining may add after this piece.
        cut = QP_LINE - 1
        cut -= 1 if tail[cut - 1 : cut] == b"=" else 2 if tail[cut - 2 : cut - 1] == b"=" else 0
        data = data[: len(data) - len(tail)] + tail[:cut] + b"=" + CRLF + tail[cut:]
        head, newline, _ = data.partition(CRLF)
        tail = tail[cut:]
    if data[:1] == b"." and len(head) + 2 < QP_LINE - 1:
        # Encoded, a leading dot cannot land at the start of a line after a soft break:
        # the message then needs no dot-stuffing (b2a_qp leaves a piece's first dot as is).
        data = b"=2E" + data[1:]
        head, tail = head + b"xx", tail if newline else tail + b"xx"
    return _QpPiece(data, len(head), len(tail), bool(newline), b"\r\n." in data)


_NO_PIECE = _QpPiece(b"", 0, 0, False, False)
# Literals are the renderer's shared parts: a few thousand per edition, a few KB each.
_qp_literal = lru_cache(maxsize=QP_CACHE_SIZE)(_qp_piece)


@lru_cache(maxsize=QP_CACHE_SIZE)
def _qp_plan(
    literals: tuple[str, ...], filled: bytes
) -> tuple[tuple[_QpPiece, ...], tuple[int, ...]]:
    """Merge the encoded literals that no filled value separates; return them and those slots.

    A merged chunk keeps the line lengths of a piece: placed after a column where its first
    line does not fit, the join breaks before it, so its lines stay within QP_LINE.
    """
    chunks: list[_QpPiece] = []
    slots: list[int] = []
    start = 0
    for slot, is_filled in enumerate(filled):
        if is_filled:
            chunks.append(_qp_run(literals[start : slot + 1]))
            slots.append(slot)
            start = slot + 1
    chunks.append(_qp_run(literals[start:]))
    return tuple(chunks), tuple(slots)


@lru_cache(maxsize=QP_CACHE_SIZE)
def _qp_run(literals: tuple[str, ...]) -> _QpPiece:
    # A run is shared by the bodies that hold the same cards in a row: merged once for all.
    # b2a_qp costs ~7 ns a byte: each literal shared by many recipients is encoded once.
    return _qp_merge([_qp_literal(literal) for literal in literals])


def _qp_merge(run: list[_QpPiece]) -> _QpPiece:
    """Join encoded pieces, from the start of a line, into one piece of shared byte strings."""
    if len(run) == 1:
        return run[0]
    out: list[bytes] = []
    _qp_join(out, run)
    data = b"".join(out)  # only to measure: the piece keeps the literals' own bytes
    head, newline, _ = data.partition(CRLF)
    tail = data.rpartition(CRLF)[2]
    parts = tuple([part for part in out if part])
    return _QpPiece(parts, len(head), len(tail), bool(newline), b"\r\n." in data)


def _qp_join(out: list[bytes], pieces: list[_QpPiece]) -> bool:
    """Append encoded pieces to out, with a soft break wherever two would make a too-long line.

    Return whether a line of the result starts with a dot.
    """
    append, extend = out.append, out.extend
    column = 0  # invariant: column < QP_LINE, so a soft-break "=" always fits
    dots = False
    for data, first, last, multiline, dotted in pieces:
        if not data:
            continue
        if column and column + first >= QP_LINE:
            append(SOFT_BREAK)
            column = 0
        if isinstance(data, bytes):
            if dotted or (not column and data[0] == DOT):
                dots = True
            append(data)
        else:  # a merged run of literals: extend by its parts instead of copying them
            if dotted or (not column and data[0][0] == DOT):
                dots = True
            extend(data)
        column = last if multiline else column + last
    return dots


def envelope_sender(settings: Settings) -> str:
    """Return the bare address of settings.from_address, for MAIL FROM."""
    return headers.parse_from(settings.from_address)[1]


class _UniqueIds:
    """32 hex digits per call: a random 96-bit prefix per process, then a counter.

    Unique and unguessable like token_hex(16), without asking the kernel for randomness
    for every message.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._renew()

    def _renew(self) -> None:
        self._prefix = secrets.token_hex(12)
        self._counter = itertools.count()

    def next(self) -> str:
        n = next(self._counter)  # atomic: threads never get the same number
        if n >= ID_COUNTER_LIMIT:
            with self._lock:
                if next(self._counter) >= ID_COUNTER_LIMIT:
                    self._renew()
            return self.next()
        return f"{self._prefix}{n:08x}"


_IDS = _UniqueIds()
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_IDS._renew)


def make_message_id(settings: Settings) -> str:
    """Return a new unique Message-ID in the domain of the sender: <random@domain>."""
    return f"<{_IDS.next()}@{_message_id_domain(settings.from_address)}>"


@lru_cache(maxsize=16)
def _message_id_domain(from_address: str) -> str:
    return headers.parse_from(from_address)[1].rsplit("@", 1)[1]


def make_dkim_signer(settings: Settings) -> DkimSigner | None:
    """Build a signer from the settings dkim_selector, dkim_domain and dkim_private_key_file."""
    values = {key: str(getattr(settings, key)).strip() for key in DKIM_SETTINGS}
    if not any(values.values()):
        return None
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise ConfigError(f"DKIM signing needs {', '.join(missing)} as well")
    try:
        import dkim  # noqa: F401
    except ImportError:
        raise ConfigError("DKIM signing needs the dkimpy package (the 'dkim' extra)") from None
    path = Path(values["dkim_private_key_file"])
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim_private_key_file {path}: {exc.strerror}") from None
    warn_if_exposed(path)
    signer = DkimSigner(
        values["dkim_selector"].encode("ascii"), values["dkim_domain"].encode("ascii"), key
    )
    _check_signer(signer, path)
    return signer


def _check_signer(signer: DkimSigner, path: Path) -> None:
    """Sign a tiny message now so a bad key fails at start-up, not at the first send."""
    import dkim

    try:
        signer.sign(b"From: a@b.example\r\nTo: c@d.example\r\nSubject: t\r\n\r\nt\r\n")
    except dkim.DKIMException as exc:
        raise ConfigError(f"dkim_private_key_file {path}: not a usable key ({exc})") from None


@lru_cache(maxsize=4096)
def _subject_field(subject: str) -> bytes:
    # Cached: a subject is shared by every recipient of the same body.
    return headers.text_field("Subject", subject)


_now_field: tuple[int, bytes] = (-1, b"")


def _date_field(date: datetime | None) -> bytes:
    """Return the Date field for date, or for now (formatted once a second)."""
    global _now_field
    if date is not None:
        return headers.date_field(date)
    second = int(time.time())
    if _now_field[0] != second:
        _now_field = (second, headers.date_field(datetime.fromtimestamp(second, UTC)))
    return _now_field[1]
