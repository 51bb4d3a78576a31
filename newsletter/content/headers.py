"""Header fields as bytes: the one place a header line of any email is written.

Every value is literal text. Control characters and line breaks of every kind (CR, LF, NEL,
U+2028, U+2029) become spaces, and invisible format characters (Unicode category Cf: the
bidirectional overrides and isolates, zero-width spaces, U+FEFF) are dropped, so a title cannot
reorder or hide what a mail client shows (the zero-width joiner and non-joiner stay: Persian
and Indic names and emoji sequences need them, and they can reorder nothing); non-ASCII text,
and ASCII text that looks like an RFC 2047 encoded word, is encoded here as UTF-8 encoded
words, so a mail client shows exactly the characters given and never decodes them into a line
break. Folding (CRLF then a space) is the only line break a field can hold, and `_field` checks
that of every field it returns.
Addresses are (display name, addr-spec) pairs; an addr-spec must pass `mailbox_address`.

The validators of what people type ask this module too: `address_problem` says which
addresses can be mailed at all, `hides_control` what a mail reader would decode from a name.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from newsletter.content.templating import one_line, safe_url
from newsletter.core.errors import ConfigError, InputError

CRLF = b"\r\n"
FOLD = b"\r\n "
MAX_LINE = 78  # RFC 5322: lines SHOULD stay within 78 characters
ENCODED_WORD = "=?utf-8?b??="  # the fixed part of each word this module writes
MIN_WORD_BYTES = 6

NOT_AN_ADDRESS = "It is not a valid email address."
NON_ASCII_LOCAL_PART = (
    "Only ASCII letters, digits and punctuation can come before the @ "
    "(a non-ASCII local part is not supported)."
)
ENCODED_LOCAL_PART = "The part before the @ cannot contain '=?' (mail programs decode it)."
BAD_DOMAIN = "The domain name is not valid."

_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field names: printable ASCII but ":"
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_CONTROL_OR_NL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BYTE = re.compile(rb"[\x00-\x1f\x7f]")
_BAD_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f<>()\[\]\\,;:\"]")
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,./:=? -]{0,69}[0-9A-Za-z'()+_,./:=?-]")  # RFC 2046
_BAD_IN_URI = re.compile(r"[\x00-\x20\x7f<>\"]")
# Printable ASCII and spaces, where every CRLF is a fold followed by more text.
_FOLDED_VALUE = re.compile(rb"[ -~]*(?:\r\n[ \t]+[!-~][ -~]*)*")
# Lenient like mail readers: any charset, even an encoded word inside a longer word.
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=", re.DOTALL)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
MAX_DECODING_ROUNDS = 8


# --- fields ----------------------------------------------------------------------------------


def text_field(name: str, text: str) -> bytes:
    """Return an unstructured field (Subject, or any free text) holding text literally."""
    used = len(name) + 2
    line = header_text(text)
    if line.isascii() and "=?" not in line and _foldable(line, used):
        return _field(name, _fold(line, used).encode("ascii"))
    return _field(name, _encoded_words(line, used))


def address_field(name: str, display_name: str, addr_spec: str) -> bytes:
    """Return a field naming one mailbox: `display name <addr-spec>`, the name encoded as needed.

    Raises InputError when addr_spec is not an address this product can mail.
    """
    address = mailbox_address(addr_spec, f"{name} address")
    return _field(name, _name_addr(display_name, address, len(name) + 2))


def token_field(name: str, value: str) -> bytes:
    """Return a field whose value is a fixed ASCII token (MIME-Version, Precedence, ...)."""
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{name}: a token value must be printable ASCII: {value!r}")
    return _field(name, value.encode("ascii"))


def date_field(date: datetime) -> bytes:
    """Return the Date field; a naive date is taken as UTC."""
    if date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return _field("Date", format_datetime(date).encode("ascii"))


def message_id_field(message_id: str) -> bytes:
    """Return the Message-ID field for `<left@right>`, or raise InputError."""
    inner = message_id[1:-1] if message_id.startswith("<") and message_id.endswith(">") else ""
    left, at, right = inner.partition("@")
    if not (left and at and right) or _BAD_IN_URI.search(inner) or not inner.isascii():
        raise InputError(f"not a valid Message-ID: {message_id!r}")
    return _field("Message-ID", message_id.encode("ascii"))


def list_unsubscribe_field(url: str, mailto: str | None) -> bytes:
    """Return List-Unsubscribe with an https link and an optional mailto: URI (RFC 2369)."""
    if safe_url(url) is None or _BAD_IN_URI.search(url) or not url.isascii():
        raise InputError(f"List-Unsubscribe needs an http(s) URL: {url!r}")
    value = f"<{url}>"
    if mailto:
        if not mailto.startswith("mailto:") or _BAD_IN_URI.search(mailto) or not mailto.isascii():
            raise InputError(f"List-Unsubscribe mailto is not a mailto: URI: {mailto!r}")
        value += f",\r\n <{mailto}>"
    return _field("List-Unsubscribe", value.encode("ascii"))


@lru_cache(maxsize=16)
def from_field(from_address: str) -> bytes:
    """Return the From field for the from_address setting (`Name <address>`)."""
    name, address = parse_from(from_address)
    return address_field("From", name, address)


@lru_cache(maxsize=16)
def list_id_field(list_id: str) -> bytes:
    """Return the List-Id field for the list_id setting (`Name <id.example.org>`)."""
    name, list_address = parseaddr(list_id)
    bad = _BAD_IN_ADDRESS.search(list_address) or not list_address.isascii()
    if not list_address or bad or _CONTROL_OR_NL.search(list_id):
        raise ConfigError(f"list_id is not valid (expected 'Name <id.example.org>'): {list_id!r}")
    return _field("List-Id", _name_addr(name, list_address, len("List-Id: ")))


def multipart_field(subtype: str, boundary: str) -> bytes:
    """Return the Content-Type field of a multipart message with this boundary."""
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError(f"not a MIME boundary: {boundary!r}")
    return _field("Content-Type", f'multipart/{subtype};\r\n boundary="{boundary}"'.encode())


def header_block(fields: list[bytes]) -> bytes:
    """Join fields made by this module into a header section (without the blank line after)."""
    return CRLF.join(fields)


def _field(name: str, value: bytes) -> bytes:
    """Return `name: value`; refuse a value with any line break but folding, or non-ASCII."""
    # A few hundred nanoseconds per field: this holds whatever a builder above did.
    if not value.isascii() or (
        (b"\n" in value or b"\r" in value) and not _FOLDED_VALUE.fullmatch(value)
    ):
        raise ValueError(f"{name}: a header value may only break lines by folding: {value!r}")
    prefix = _PREFIXES.get(name)
    if prefix is None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a header field name: {name!r}")
        prefix = _PREFIXES[name] = name.encode("ascii") + b": "
    return prefix + value


_PREFIXES: dict[str, bytes] = {}  # "Subject" -> b"Subject: ", once each name is checked


# --- the settings' addresses ---------------------------------------------------------------


@lru_cache(maxsize=16)
def parse_from(from_address: str) -> tuple[str, str]:
    """Return the display name and address of the from_address setting, or raise ConfigError."""
    name, address = parseaddr(from_address)
    if not address or _CONTROL_OR_NL.search(from_address):
        raise ConfigError(f"from_address is not a valid address: {from_address!r}")
    return header_text(name), mailbox_address(address, "from_address", ConfigError)


# --- addresses -------------------------------------------------------------------------------


def mailbox_address(address: str, what: str, error: type[InputError] = InputError) -> str:
    """Return the address as headers and the envelope carry it: ASCII, the domain an A-label.

    Raises `error` naming `what` and saying why for an address this product cannot mail
    (see address_problem).
    """
    problem = address_problem(address)
    if problem is not None:
        raise error(f"{what} {address!r}: {problem}")
    local, _, domain = address.rpartition("@")
    return address if domain.isascii() else f"{local}@{_a_label_domain(domain)}"


def address_problem(address: str) -> str | None:
    """Say why an addr-spec cannot be mailed, or return None when it can.

    The part before the @ must be ASCII: this sender does not negotiate SMTPUTF8 nor write
    message/global. It must not hold "=?": mail readers decode that as an encoded word and
    would show, or reply to, another mailbox. The domain may be internationalised (IDNA 2008).
    """
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or _BAD_IN_ADDRESS.search(address):
        return NOT_AN_ADDRESS
    if _CONTROL_OR_NL.search(address):
        return NOT_AN_ADDRESS
    if not local.isascii():
        return NON_ASCII_LOCAL_PART
    if "=?" in local:
        return ENCODED_LOCAL_PART
    if not domain.isascii() and _a_label_domain(domain) is None:
        return BAD_DOMAIN
    return None


@lru_cache(maxsize=4096)
def _a_label_domain(domain: str) -> str | None:
    """Return the ASCII (IDNA 2008) form of a domain, as email-validator computes it, or None."""
    # Python's own "idna" codec is IDNA 2003, which maps "straße" to "strasse": another domain.
    try:
        ascii_domain = validate_email(f"a@{domain}", check_deliverability=False).ascii_domain
    except EmailNotValidError:
        return None
    return None if _BAD_IN_ADDRESS.search(ascii_domain) else ascii_domain


def envelope_address(address: str) -> str:
    """Return a stored address as the SMTP envelope needs it: its domain as an A-label."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    return f"{local}@{_a_label_domain(domain) or domain}"


# --- display names and free text -------------------------------------------------------------


# Format characters that only shape the letters around them: Persian and Indic spellings and
# emoji sequences need them, and they cannot reorder or hide text.
JOINERS = frozenset("\u200c\u200d")


def _hidden(c: str) -> bool:
    return unicodedata.category(c) == "Cf" and c not in JOINERS


def header_text(value: object) -> str:
    """Return value on one line (see templating.one_line) without invisible format characters."""
    line = one_line(value)
    if line.isascii() or line.isprintable():  # neither can hold a format character
        return line
    return one_line("".join(c for c in line if not _hidden(c)))


def has_format_character(text: str) -> bool:
    """Tell whether text holds an invisible format character (category Cf, e.g. U+202E).

    The zero-width joiner and non-joiner are letters' business, not hiding: see JOINERS.
    """
    if text.isascii() or text.isprintable():
        return False
    return any(_hidden(c) for c in text)


def _name_addr(display_name: str, address: str, used: int) -> bytes:
    """Return `phrase <address>`, folding before the address when the line would be too long."""
    angle = f"<{address}>".encode("ascii")
    name = header_text(display_name)
    if not name:
        return angle
    phrase = _phrase(name, used)
    column = len(phrase.rpartition(CRLF)[2]) + (0 if CRLF in phrase else used)
    fits = column + 1 + len(angle) <= MAX_LINE
    return phrase + (b" " if fits else FOLD) + angle


def _phrase(name: str, used: int) -> bytes:
    """Return a one-line display name as an atom phrase, a quoted string or encoded words."""
    if name.isascii() and "=?" not in name:
        if _ATEXT_PHRASE.fullmatch(name):
            phrase = name
        else:
            phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if _foldable(phrase, used):
            return _fold(phrase, used).encode("ascii")
    return _encoded_words(name, used)


def _foldable(line: str, used: int) -> bool:
    """Tell whether folding at spaces keeps every line within MAX_LINE; else it is encoded."""
    if used + len(line) <= MAX_LINE:
        return True
    words = line.split(" ")
    return len(words[0]) <= MAX_LINE - used and all(len(word) < MAX_LINE for word in words)


def _fold(value: str, used: int) -> str:
    """Fold a one-line ASCII value at spaces so lines stay near 78 characters."""
    if used + len(value) <= MAX_LINE:
        return value
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


def _encoded_words(text: str, used: int) -> bytes:
    """Encode text as RFC 2047 base64 words, each fitting its line, folded between words."""
    words = []
    chunk = b""
    room = _word_bytes(used)
    for char in text:
        encoded = char.encode("utf-8", "replace")  # a lone surrogate cannot be UTF-8
        if chunk and len(chunk) + len(encoded) > room:
            words.append(_b_word(chunk))
            chunk, room = b"", _word_bytes(1)
        chunk += encoded
    words.append(_b_word(chunk))
    return FOLD.join(words)


def _word_bytes(used: int) -> int:
    """Return how many bytes one base64 word may carry on a line where `used` are taken."""
    return max(MIN_WORD_BYTES, (MAX_LINE - used - len(ENCODED_WORD)) // 4 * 3)


def _b_word(data: bytes) -> bytes:
    return b"=?utf-8?b?" + binascii.b2a_base64(data, newline=False) + b"?="


# --- checking what people type ---------------------------------------------------------------


def hides_control(text: str) -> bool:
    """Tell whether text holds a control, line break or invisible character, plain or encoded.

    Invisible means a format character (category Cf: bidirectional overrides and isolates,
    zero-width spaces, U+FEFF; not the joiners that spellings need). Decodes as leniently as
    mail readers do (any charset, nested encodings), since a reader that decodes the name would
    otherwise see, and may act on, the characters it hides.
    """
    for _ in range(MAX_DECODING_ROUNDS):
        if _CONTROL_OR_NL.search(text) or has_format_character(text):
            return True
        decoded, raw = _decode_words(text)
        if _CONTROL_BYTE.search(raw):
            return True
        if decoded == text:
            return False
        text = decoded
    return True  # encoded that deep: no name needs it


def _decode_words(text: str) -> tuple[str, bytes]:
    """Decode each encoded word of text; also return the raw bytes of all of them."""
    raw: list[bytes] = []

    def decode(match: re.Match[str]) -> str:
        charset, encoding, payload = match.groups()
        data = _word_payload(encoding.lower(), payload)
        raw.append(data)
        return data.decode(_codec(charset), "replace")

    return _ENCODED_WORD.sub(decode, text), b"".join(raw)


def _word_payload(encoding: str, payload: str) -> bytes:
    data = payload.encode("utf-8", "replace")
    if encoding == "q":
        return binascii.a2b_qp(data.replace(b"_", b" "), header=True)
    letters = _NOT_BASE64.sub(b"", data)
    if len(letters) % 4 == 1:  # a stray last letter carries no whole byte
        letters = letters[:-1]
    return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))


def _codec(charset: str) -> str:
    name = charset.partition("*")[0]  # RFC 2231 adds a language: utf-8*en
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "latin-1"  # every byte decodes: C1 controls show up as such
