"""Read the plain-text bounces of mail systems that send no RFC 3464 report.

qmail, Sendmail, Exchange, GroupWise, Yahoo, AOL, SMTP32 and many more each write returned
mail their own way. Mailman's `flufl.bounce` detectors know those formats and find the failed
recipients; the text beside each recipient (the remote server's reply) then gives the reason.
Text is decoded leniently: a charset Python does not know is read as Latin-1, never an error.
"""

from __future__ import annotations

import codecs
import html
import logging
import re
from collections.abc import Sequence
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


def read_text_bounces(msg: Message) -> list[TextBounce]:
    """Find every failed recipient of a text bounce with the flufl.bounce detectors.

    Each gets the words written about it alone (up to the next failed recipient), so a
    report about several addresses gives each its own reason. A detector that fails on an
    odd message finds nothing, as if it did not know the format.
    """
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector's own bug (a missing header, say) is not the message's
        return []
    found = [(a.decode("ascii", errors="replace"), True) for a in sorted(permanent)]
    found += [(a.decode("ascii", errors="replace"), False) for a in sorted(temporary - permanent)]
    others = [address for address, _ in found]
    return [TextBounce(a, p, server_words(msg, a, others)) for a, p in found]


def server_words(msg: Message, recipient: str, others: Sequence[str] = ()) -> str:
    """Return the report's words about one recipient, without the returned original.

    They run from a little before the address to the next other recipient named after it.
    """
    text = report_text(msg)
    lowered = text.lower()
    at = lowered.find(recipient.lower())
    if at < 0:
        return _squeeze(text)[:500]
    named = {o.lower() for o in others} - {recipient.lower()}
    # Alone, the words before the address may be its reason ("Unknown user: a@b"); among
    # others, each one's reason follows it, and what comes before is the previous one's.
    start, end = (at if named else max(0, at - _BEFORE)), at + len(recipient) + _AFTER
    for other in named:
        later = lowered.find(other, at + len(recipient))
        if later >= 0:
            end = min(end, later)
    return _squeeze(text[start:end])[:800]


def report_text(msg: Message) -> str:
    """Return the text parts written by the reporting server, cut where the original starts.

    A report written only in HTML (GroupWise, some webmail) is read with its tags removed.
    """
    texts, html = [], []
    for part in _own_parts(msg):
        if part.get_content_maintype() != "text":
            continue
        if part.get_content_subtype() in ("plain", ""):
            texts.append(_until_original(decoded_text(part)))
        elif part.get_content_subtype() == "html":
            html.append(_until_original(_html_to_text(decoded_text(part))))
    return "\n".join(texts or html)


def _html_to_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", markup)
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


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
