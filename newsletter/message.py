"""Build the bytes of one digest email: headers, two quoted-printable parts, optional DKIM."""

from __future__ import annotations

import binascii
import itertools
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from newsletter.config import Settings
from newsletter.errors import ConfigError, InputError
from newsletter.rendering import Filled, Recipient, RenderedDigest, one_line, safe_url

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
DOT = ord(".")
MAX_LINE = 78  # RFC 5322: lines SHOULD stay within 78 characters
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"
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
)
DKIM_SETTINGS = ("dkim_selector", "dkim_domain", "dkim_private_key_file")

_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_CONTROL_OR_NL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f<>()\[\]\\,;:\"]")
_BAD_IN_URI = re.compile(r"[\x00-\x20\x7f<>\"]")
_PART_HEADERS = (
    b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'
)
ENCODED_WORD_BYTES = 39
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
            include_headers=list(self.include_headers),
        )


def build_message(
    rendered: RenderedDigest,
    *,
    recipient: Recipient,
    settings: Settings,
    message_id: str,
    date: datetime | None = None,
    list_unsubscribe_url: str,
    list_unsubscribe_mailto: str | None,
    dkim: DkimSigner | None = None,
) -> bytes:
    """Assemble a multipart/alternative email (text, then HTML) as CRLF bytes, ready to send."""
    return build_message_data(
        rendered,
        recipient=recipient,
        settings=settings,
        message_id=message_id,
        date=date,
        list_unsubscribe_url=list_unsubscribe_url,
        list_unsubscribe_mailto=list_unsubscribe_mailto,
        dkim=dkim,
    )[0]


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
    """Build the message as build_message does; also tell whether no line starts with a dot.

    A message with no such line needs no SMTP dot-stuffing: the client can skip a scan.
    """
    header_lines = [
        b"From: " + _from_header(settings.from_address),
        b"To: " + _address_header(recipient.name, recipient.email, "To"),
        b"Subject: " + _subject_header(rendered.subject),
        b"Date: " + _date_header(date),
        b"Message-ID: " + _message_id_header(message_id),
        b"MIME-Version: 1.0",
        b"List-Id: " + _list_id_header(settings.list_id),
        b"List-Unsubscribe: " + _list_unsubscribe(list_unsubscribe_url, list_unsubscribe_mailto),
        ONE_CLICK,
        # Tells vacation responders not to answer (RFC 3834); SpamAssassin scores it as a list.
        b"Precedence: bulk",
    ]
    # "=_" never occurs in quoted-printable text, so the boundary cannot collide with a body.
    boundary = b"=_dpn_" + _IDS.next().encode("ascii")
    header_lines.append(b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"')
    # One list and one join for the whole message: a 40 KB body is copied only once.
    headers = CRLF.join(header_lines)
    # Folded header lines start with a space; a dot could only come from a bad value.
    dots = headers[:1] == b"." or b"\r\n." in headers
    out = [headers, CRLF + CRLF]
    for subtype, kind in ((b"plain", "text"), (b"html", "html")):
        out += (b"--", boundary, CRLF, _PART_HEADERS % subtype, CRLF, CRLF)
        dots |= _encode_into(out, rendered, kind)
        out.append(CRLF)
    out += (b"--", boundary, b"--", CRLF)
    message = b"".join(out)
    if dkim is not None:
        return dkim.sign(message) + message, False
    return message, not dots


def _encode_into(out: list[bytes], rendered: RenderedDigest, kind: str) -> bool:
    """Encode the text or html of a digest, from its shared parts when it has them."""
    parts = rendered.text_parts if kind == "text" else rendered.html_parts
    if parts is not None:
        return _qp_extend(out, "", parts)  # the joined string is never needed
    return _qp_extend(out, rendered.text if kind == "text" else rendered.html, None)


def _qp_body(text: str, parts: Filled | None) -> bytes:
    """Encode a body as quoted-printable with CRLF line ends, ending with a line break."""
    out: list[bytes] = []
    _qp_extend(out, text, parts)
    return b"".join(out)


def _qp_extend(out: list[bytes], text: str, parts: Filled | None) -> bool:
    """Append the quoted-printable pieces of a body to out; the last ends with a line break.

    Return whether a line of it starts with a dot.
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
        pieces[1::2] = [_qp_piece(values[slot]) for slot in slots]
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
    return _QpPiece(data, len(head), len(tail), bool(newline), b"\r\n." in data)


_NO_PIECE = _QpPiece(b"", 0, 0, False, False)
# Literals are the renderer's shared parts: a few thousand per edition, a few KB each.
_qp_literal = lru_cache(maxsize=QP_CACHE_SIZE)(_qp_piece)


@lru_cache(maxsize=QP_CACHE_SIZE)
def _qp_literals(literals: tuple[str, ...]) -> tuple[_QpPiece, ...]:
    # Keyed by a body's tuple of literals, shared by all its recipients: one look-up, not 30.
    return tuple([_qp_literal(literal) for literal in literals])


@lru_cache(maxsize=QP_CACHE_SIZE)
def _qp_plan(
    literals: tuple[str, ...], filled: bytes
) -> tuple[tuple[_QpPiece, ...], tuple[int, ...]]:
    """Merge the encoded literals that no filled value separates; return them and those slots.

    A merged chunk keeps the line lengths of a piece: placed after a column where its first
    line does not fit, the join breaks before it, so its lines stay within QP_LINE.
    """
    # b2a_qp costs ~7 ns a byte: encode each literal shared by many recipients once.
    pieces = _qp_literals(literals)
    chunks: list[_QpPiece] = []
    slots: list[int] = []
    run = [pieces[0]]
    for slot, is_filled in enumerate(filled):
        if is_filled:
            chunks.append(_qp_merge(run))
            slots.append(slot)
            run = []
        run.append(pieces[slot + 1])
    chunks.append(_qp_merge(run))
    return tuple(chunks), tuple(slots)


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
        if type(data) is bytes:
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
    return _parse_from(settings.from_address)[1]


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
    return _parse_from(from_address)[1].rsplit("@", 1)[1]


def make_dkim_signer(settings: Settings) -> DkimSigner | None:
    """Build a signer from settings.extra (dkim_selector, dkim_domain, dkim_private_key_file)."""
    values = {key: str(settings.extra.get(key) or "").strip() for key in DKIM_SETTINGS}
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


@lru_cache(maxsize=16)
def _parse_from(from_address: str) -> tuple[str, str]:
    name, address = parseaddr(from_address)
    if not address or _CONTROL_OR_NL.search(from_address):
        raise ConfigError(f"from_address is not a valid address: {from_address!r}")
    return one_line(name), _check_address(address, "from_address", ConfigError)


@lru_cache(maxsize=16)
def _from_header(from_address: str) -> bytes:
    name, address = _parse_from(from_address)
    return _address_header(name, address, "From")


@lru_cache(maxsize=16)
def _list_id_header(list_id: str) -> bytes:
    name, list_address = parseaddr(list_id)
    if not list_address or _BAD_IN_ADDRESS.search(list_address) or _CONTROL_OR_NL.search(list_id):
        raise ConfigError(f"list_id is not valid (expected 'Name <id.example.org>'): {list_id!r}")
    return _phrase(one_line(name)) + f"<{list_address}>".encode("ascii")


def _check_address(address: str, what: str, error: type[InputError] = InputError) -> str:
    """Return an address fit for a header, with an IDNA domain; raise for anything else."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _BAD_IN_ADDRESS.search(address):
        raise error(f"{what}: not a valid email address: {address!r}")
    if not local.isascii():
        # Such addresses need SMTPUTF8 end to end, which this sender does not negotiate.
        raise error(f"{what}: non-ASCII local part is not supported: {address!r}")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise error(f"{what}: invalid domain: {address!r}") from None
        if _BAD_IN_ADDRESS.search(domain):
            raise error(f"{what}: invalid domain: {address!r}")
    return f"{local}@{domain}"


def _address_header(name: str, address: str, header_name: str) -> bytes:
    address = _check_address(address, f"{header_name} address")
    return _phrase(one_line(name)) + f"<{address}>".encode("ascii")


def _phrase(name: str) -> bytes:
    """Return a display name ready to precede <address>: bare, quoted or RFC 2047 encoded."""
    if not name:
        return b""
    if name.isascii() and "=?" not in name:
        if _ATEXT_PHRASE.fullmatch(name):
            return name.encode("ascii") + b" "
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" '.encode("ascii")
    return _encoded_words(name) + b" "


def _encoded_words(value: str) -> bytes:
    """Encode a value as RFC 2047 base64 words of at most ~64 characters, folded between words."""
    words = []
    chunk = b""
    for char in value:
        encoded = char.encode("utf-8")
        # 39 bytes make 52 base64 characters: a word plus "Subject: " stays within 78.
        if len(chunk) + len(encoded) > ENCODED_WORD_BYTES:
            words.append(b"=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False) + b"?=")
            chunk = b""
        chunk += encoded
    words.append(b"=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False) + b"?=")
    return b"\r\n ".join(words)


@lru_cache(maxsize=4096)
def _subject_header(subject: str) -> bytes:
    # Cached: a subject is shared by every recipient of the same body.
    subject = one_line(subject)
    if not subject.isascii() or "=?" in subject:
        return _encoded_words(subject)
    return _fold(subject, len("Subject: ")).encode("ascii")


def _fold(value: str, used: int) -> str:
    """Fold a long ASCII header value at spaces so lines stay near 78 characters."""
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > MAX_LINE:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


_now_header: tuple[int, bytes] = (-1, b"")


def _date_header(date: datetime | None) -> bytes:
    global _now_header
    if date is None:
        # Formatted once a second: the header has no finer resolution.
        second = int(time.time())
        if _now_header[0] != second:
            _now_header = (second, _date_header(datetime.fromtimestamp(second, UTC)))
        return _now_header[1]
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return format_datetime(date).encode("ascii")


def _message_id_header(message_id: str) -> bytes:
    inner = message_id[1:-1] if message_id.startswith("<") and message_id.endswith(">") else ""
    left, at, right = inner.partition("@")
    if not (left and at and right) or _BAD_IN_URI.search(inner) or not inner.isascii():
        raise InputError(f"not a valid Message-ID: {message_id!r}")
    return message_id.encode("ascii")


def _list_unsubscribe(url: str, mailto: str | None) -> bytes:
    if safe_url(url) is None or _BAD_IN_URI.search(url) or not url.isascii():
        raise InputError(f"List-Unsubscribe needs an http(s) URL: {url!r}")
    value = f"<{url}>"
    if mailto:
        if not mailto.startswith("mailto:") or _BAD_IN_URI.search(mailto) or not mailto.isascii():
            raise InputError(f"List-Unsubscribe mailto is not a mailto: URI: {mailto!r}")
        value += f",\r\n <{mailto}>"
    return value.encode("ascii")
