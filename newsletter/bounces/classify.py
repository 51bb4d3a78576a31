"""Read bounces, complaints and auto-replies, and sign the VERP return path they come back to.

A bounce is classified from what the reporting MTA states, never from guessing at prose:
an RFC 3464 delivery status notification (Postfix, Gmail, Microsoft, Exim with DSNs), Exim's
plain-text bounce (its X-Failed-Recipients header and "permanent error" wording), an RFC 5965
feedback report (a complaint), or an RFC 3834 auto-reply. Everything else is "unknown" and is
left for a person to read.

Each message goes out with the envelope sender `bounces+<token>@<bounce domain>`; the token
names the delivery and is signed with the secret key, so a bounce maps to its row even when the
reporting server rewrote the recipient, and a forged bounce cannot name someone else's row.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses, parseaddr

from newsletter.content.mime import envelope_sender
from newsletter.core.config import Settings

DEFAULT_VERP_PREFIX = "bounces"
VERP_SALT = b"newsletter.verp"
# 60 bits of MAC: forging one address takes ~2^60 tries, each needing a bounce we read.
MAC_CHARS = 12
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(rf"^([0-9a-z]{{1,13}})-([a-z2-7]{{{MAC_CHARS}}})$")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([245]\d\d)[ -]")
# Headers that carry the envelope recipient of the bounce itself, most trustworthy first.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# Mailbox full is reported as 5.2.2 by some servers but clears by itself: count it as soft.
_SOFT_PERMANENT = frozenset({"5.2.2"})
_EXIM_FIRST_LINE = "This message was created automatically by mail delivery software."
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit)",
    re.IGNORECASE,
)


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class BounceReport:
    """What one returned message says: its kind, whom it is about, and the server's words."""

    kind: BounceKind
    recipient: str | None = None
    status: str | None = None
    diagnostic: str = ""
    verp_token: str | None = None
    subject: str = ""

    @property
    def understood(self) -> bool:
        return self.kind != BounceKind.UNKNOWN


# --- VERP ------------------------------------------------------------------------------


def verp_prefix(settings: Settings) -> str:
    """Return the local part before the "+" of return paths (setting `bounce_prefix`)."""
    return settings.bounce_prefix.lower()


def verp_enabled(settings: Settings) -> bool:
    """Tell whether messages go out with signed return paths: only once `bounce_domain` is set."""
    # The operator routes bounces back to us only when they name the domain; else the plain
    # From address is the envelope sender (the same test as the message preparer's).
    return bool(settings.bounce_domain)


def bounce_domain(settings: Settings) -> str:
    """Return the domain bounces come back to: setting `bounce_domain`, else the From domain."""
    configured = settings.bounce_domain.lower()
    return configured or envelope_sender(settings).rpartition("@")[2].lower()


def _mac(secret_key: str, ident: str) -> str:
    if not secret_key:
        raise ValueError("settings.secret_key is empty: return paths cannot be signed")
    digest = hmac.new(secret_key.encode(), VERP_SALT + b":" + ident.encode(), "sha256").digest()
    # Lowercase base32: some servers lowercase local parts, so the token must survive it.
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _BASE36[rest] + digits
        if not number:
            return digits


def verp_token(settings: Settings, delivery_id: int) -> str:
    """Return the signed token naming one delivery: `<id in base 36>-<mac>`."""
    if delivery_id < 0:
        raise ValueError("delivery ids are not negative")
    ident = _base36(delivery_id)
    return f"{ident}-{_mac(settings.secret_key, ident)}"


def verp_address(settings: Settings, delivery_id: int) -> str:
    """Return the envelope sender of one delivery: `bounces+<token>@<bounce domain>`."""
    return f"{verp_prefix(settings)}+{verp_token(settings, delivery_id)}@{bounce_domain(settings)}"


def token_delivery_id(settings: Settings, token: str) -> int | None:
    """Return the delivery id a token names, or None when it is malformed or forged."""
    match = _TOKEN.match(token.strip().lower())
    if match is None:
        return None
    ident, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(settings.secret_key, ident)):
        return None
    return int(ident, 36)


def parse_verp(settings: Settings, address: str) -> int | None:
    """Return the delivery id of a VERP return path, or None for any other or forged address."""
    token = token_in_address(address, verp_prefix(settings))
    return token_delivery_id(settings, token) if token else None


def token_in_address(address: str, prefix: str = DEFAULT_VERP_PREFIX) -> str | None:
    """Return the token of `<prefix>+<token>@...` (any domain), or None."""
    bare = parseaddr(address)[1] or address.strip().strip("<>")
    local, at, _ = bare.rpartition("@")
    head, plus, token = local.partition("+")
    if not at or not plus or head.lower() != prefix or not token:
        return None
    return token.lower()


# --- parsing ---------------------------------------------------------------------------


def parse_bounce(data: bytes, *, prefix: str = DEFAULT_VERP_PREFIX) -> BounceReport | None:
    """Classify one returned message; None when the bytes are not an email message at all."""
    if not _looks_like_message(data):
        return None
    msg = message_from_bytes(data, policy=policy.compat32)
    subject = _header(msg, "Subject")
    report = (
        _from_feedback_report(msg)
        or _from_dsn(msg)
        or _from_exim_text(msg)
        or _from_auto_reply(msg)
        or BounceReport(BounceKind.UNKNOWN, diagnostic="not a bounce, complaint or auto-reply")
    )
    token = _find_token(msg, prefix)
    return BounceReport(
        kind=report.kind,
        recipient=report.recipient,
        status=report.status,
        diagnostic=report.diagnostic,
        verp_token=token,
        subject=subject[:200],
    )


def _looks_like_message(data: bytes) -> bool:
    # A message starts with header fields ("Name: value"); an mbox From_ line is tolerated.
    head = data.lstrip()[:2000]
    if head.startswith(b"From "):
        head = head.partition(b"\n")[2]
    first = head.split(b"\n", 1)[0]
    return bool(re.match(rb"^[!-9;-~]+:", first))


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _parts(msg: Message, content_type: str) -> list[Message]:
    return [part for part in msg.walk() if part.get_content_type() == content_type]


def _field_blocks(part: Message) -> list[Message]:
    """Return the header blocks of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses delivery-status into blocks
        return [p for p in payload if isinstance(p, Message)]
    raw = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
    if part.get("Content-Transfer-Encoding", "").lower() == "base64":
        raw = part.get_payload(decode=True) or b""
    blocks = re.split(rb"\r?\n\s*\r?\n", raw.strip())
    return [message_from_bytes(b + b"\n\n", policy=policy.compat32) for b in blocks if b.strip()]


def _typed_value(value: str) -> str:
    """Strip the address or diagnostic type: `rfc822; a@b` -> `a@b`, `smtp; 550 x` -> `550 x`."""
    kind, sep, rest = value.partition(";")
    return (rest if sep and " " not in kind.strip() else value).strip()


def _from_dsn(msg: Message) -> BounceReport | None:
    parts = _parts(msg, "message/delivery-status")
    if not parts:
        return None
    recipients = [b for b in _field_blocks(parts[0]) if b.get("Action") or b.get("Status")]
    if not recipients:
        return BounceReport(BounceKind.UNKNOWN, diagnostic="delivery status without recipients")
    # One message, one recipient: report the worst state any recipient block states.
    chosen = min(recipients, key=_dsn_rank)
    recipient = _typed_value(_header(chosen, "Final-Recipient")) or _typed_value(
        _header(chosen, "Original-Recipient")
    )
    action = _header(chosen, "Action").lower()
    status_match = _STATUS.search(_header(chosen, "Status"))
    status = ".".join(status_match.groups()) if status_match else None
    diagnostic = _typed_value(_header(chosen, "Diagnostic-Code"))[:500]
    return BounceReport(_dsn_kind(action, status), _clean(recipient), status, diagnostic)


def _dsn_rank(block: Message) -> int:
    action = _header(block, "Action").lower()
    return {"failed": 0, "delayed": 1}.get(action, 2)


def _dsn_kind(action: str, status: str | None) -> BounceKind:
    if action in ("delivered", "relayed", "expanded"):
        return BounceKind.UNKNOWN  # a success notice, not a bounce
    if status is None:
        return BounceKind.HARD if action == "failed" else BounceKind.UNKNOWN
    if status.startswith("5.") and status not in _SOFT_PERMANENT:
        return BounceKind.HARD if action in ("failed", "") else BounceKind.SOFT
    if status.startswith(("4.", "5.")):
        return BounceKind.SOFT
    return BounceKind.UNKNOWN


def _from_feedback_report(msg: Message) -> BounceReport | None:
    parts = _parts(msg, "message/feedback-report")
    if not parts:
        return None
    fields = _field_blocks(parts[0])
    report = fields[0] if fields else Message()
    feedback = _header(report, "Feedback-Type").lower()
    recipient = _typed_value(_header(report, "Original-Rcpt-To"))
    if not recipient:
        original = _enclosed_headers(msg)
        recipient = parseaddr(_header(original, "To"))[1] if original else ""
    kind = BounceKind.COMPLAINT if feedback == "abuse" else BounceKind.UNKNOWN
    detail = f"feedback-type {feedback or 'missing'}"
    return BounceReport(kind, _clean(recipient), None, detail)


def _from_exim_text(msg: Message) -> BounceReport | None:
    failed = _header(msg, "X-Failed-Recipients")
    body = _text_body(msg)
    if not failed and _EXIM_FIRST_LINE not in body:
        return None
    recipients = [a for _, a in getaddresses([failed]) if a] or _indented_addresses(body)
    if not recipients:
        return BounceReport(BounceKind.UNKNOWN, diagnostic="mail delivery report without address")
    lowered = " ".join(body.lower().split())
    status_match = _STATUS.search(body)
    status = ".".join(status_match.groups()) if status_match else None
    if "permanent error" in lowered or (failed and "has not yet been delivered" not in lowered):
        kind = BounceKind.HARD
        status = status or "5.0.0"
    elif "has not yet been delivered" in lowered or "temporary error" in lowered:
        kind = BounceKind.SOFT
        status = status or "4.0.0"
    else:
        return BounceReport(BounceKind.UNKNOWN, diagnostic="mail delivery report of unclear kind")
    if kind == BounceKind.HARD and status in _SOFT_PERMANENT:
        kind = BounceKind.SOFT
    return BounceReport(kind, _clean(recipients[0]), status, _exim_diagnostic(body))


def _indented_addresses(body: str) -> list[str]:
    # Exim lists each address alone on a line indented by two spaces.
    return re.findall(r"^ {2}(\S+@[^\s:]+)\s*$", body, re.MULTILINE)


def _exim_diagnostic(body: str) -> str:
    # The remote server's reply is the line that starts with its code (after indentation).
    lines = [" ".join(line.split()) for line in body.splitlines()]
    replies = [line for line in lines if _SMTP_CODE.match(line + " ")]
    return (replies or [line for line in lines if _SMTP_CODE.search(line + " ")] or [""])[0][:500]


def _from_auto_reply(msg: Message) -> BounceReport | None:
    auto = _header(msg, "Auto-Submitted").lower()
    precedence = _header(msg, "Precedence").lower()
    flagged = (
        auto.startswith("auto-replied")
        or msg.get("X-Autoreply") is not None
        or msg.get("X-Autorespond") is not None
        or precedence == "auto_reply"
        or _AUTO_REPLY_SUBJECT.match(_header(msg, "Subject")) is not None
    )
    if not flagged:
        return None
    sender = parseaddr(_header(msg, "From"))[1]
    return BounceReport(BounceKind.AUTO_REPLY, _clean(sender), None, "auto-reply")


def _text_body(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True) or b""
            return raw.decode(part.get_content_charset() or "utf-8", errors="replace")
    return ""


def _enclosed_headers(msg: Message) -> Message | None:
    """Return the header block of the returned original message, if one is enclosed."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            raw = part.get_payload(decode=True) or b""
            return message_from_bytes(raw.lstrip() + b"\n\n", policy=policy.compat32)
    return None


def _find_token(msg: Message, prefix: str) -> str | None:
    """Find the VERP token: where the report was sent to, or the original's return path."""
    candidates = [v for name in _ENVELOPE_HEADERS for v in msg.get_all(name, [])]
    for part in _parts(msg, "message/feedback-report"):
        for block in _field_blocks(part):
            candidates.extend(block.get_all("Original-Mail-From", []))
    original = _enclosed_headers(msg)
    if original is not None:
        candidates.extend(original.get_all("Return-Path", []))
    for value in candidates:
        for _, address in getaddresses([str(value)]):
            token = token_in_address(address, prefix)
            if token:
                return token
    return None


def _clean(address: str | None) -> str | None:
    if not address:
        return None
    address = address.strip().strip("<>").strip()
    return address if "@" in address and len(address) <= 320 else None


def fingerprint(data: bytes) -> str:
    """Return a stable identity of a returned message, so reading it twice counts once."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n").strip()).hexdigest()


# --- SMTP replies during a send --------------------------------------------------------


def permanent_recipient_failure(reply: str) -> bool:
    """Tell whether an SMTP reply refuses the recipient for good (5xx, not policy or sender)."""
    code = _SMTP_CODE.match(reply.strip() + " ")
    if code is None or not code.group(1).startswith("5"):
        return False
    status = _STATUS.search(reply)
    if status is None:
        # Without an enhanced code, only the replies RFC 5321 gives for a bad mailbox.
        return code.group(1) in ("550", "551", "553")
    klass, subject, detail = status.groups()
    if klass != "5":
        return False
    # x.1.x is the address (but 5.1.7/5.1.8 are about our sender); 5.2.1 a disabled mailbox.
    if subject == "1":
        return detail not in ("7", "8")
    return (subject, detail) == ("2", "1")
