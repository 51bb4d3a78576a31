"""Read the plain-text bounces of mail systems that send no RFC 3464 report.

qmail, Sendmail, Exchange, GroupWise, Yahoo, AOL, SMTP32 and many more each write returned
mail their own way. Mailman's `flufl.bounce` detectors know those formats and find the failed
recipients; the text beside each recipient (the remote server's reply) then gives the reason.
Text is decoded leniently: a charset Python does not know is read as Latin-1, never an error.
"""

from __future__ import annotations

import codecs
import logging
import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

# Lines that start the returned copy of our own message: its words are not the server's.
_ORIGINAL_FOLLOWS = re.compile(
    r"^\s*-{2,}.*(copy|original|unsent|header|returned|body)"
    r"|^.*(below this line|message follows|headers? follows?\b)",
    re.IGNORECASE | re.MULTILINE,
)
# How much of a part's text is read: reports are short, a huge part is the original's body.
MAX_TEXT_CHARS = 64_000
# How far around the recipient's address the server's reply is looked for.
_BEFORE, _AFTER = 200, 600
_ENCLOSED = ("message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers")

# flufl.bounce logs a detector's exception before raising it; the caller reports it instead.
logging.getLogger("flufl.bounce").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class TextBounce:
    """A failed recipient found in a text bounce, with the words written about it."""

    recipient: str
    permanent: bool
    diagnostic: str


def read_text_bounce(msg: Message) -> TextBounce | None:
    """Find the failed recipient of a text bounce with the flufl.bounce detectors, or None."""
    temporary, permanent = all_failures(msg)
    found = sorted(permanent) or sorted(temporary)
    if not found:
        return None
    recipient = found[0].decode("ascii", errors="replace")
    return TextBounce(recipient, bool(permanent), server_words(msg, recipient))


def server_words(msg: Message, recipient: str) -> str:
    """Return the report's words about one recipient, without the returned original."""
    text = report_text(msg)
    at = text.lower().find(recipient.lower())
    if at < 0:
        return _squeeze(text)[:500]
    return _squeeze(text[max(0, at - _BEFORE) : at + len(recipient) + _AFTER])[:800]


def report_text(msg: Message) -> str:
    """Return the text parts written by the reporting server, cut where the original starts."""
    texts = []
    for part in _own_parts(msg):
        if part.get_content_maintype() == "text" and part.get_content_subtype() in ("plain", ""):
            texts.append(_until_original(decoded_text(part)))
    return "\n".join(texts)


def _own_parts(msg: Message) -> list[Message]:
    """Return the leaf parts of a report, skipping every enclosed message."""
    if msg.get_content_type() in _ENCLOSED:
        return []
    if not msg.is_multipart():
        return [msg]
    payload = msg.get_payload()
    subparts = payload if isinstance(payload, list) else []
    return [leaf for sub in subparts if isinstance(sub, Message) for leaf in _own_parts(sub)]


def _until_original(text: str) -> str:
    match = _ORIGINAL_FOLLOWS.search(text)
    return text[: match.start()] if match else text


def decoded_text(part: Message) -> str:
    """Return a part's text, decoded with its charset when Python knows it, else as Latin-1."""
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    return decode_bytes(raw[: MAX_TEXT_CHARS * 4], part.get_content_charset())[:MAX_TEXT_CHARS]


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """Decode bytes with a declared charset; an unknown or wrong one never raises."""
    try:
        codecs.lookup(charset or "utf-8")
    except LookupError:
        # ANSI X3.110, x-unknown and the like: Latin-1 keeps every byte and the ASCII intact.
        charset = "latin-1"
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError, ValueError):
        return raw.decode("latin-1")


def _squeeze(text: str) -> str:
    return " ".join(text.split())
