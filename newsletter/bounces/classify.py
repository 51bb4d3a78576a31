"""Read bounces, complaints and auto-replies, and find the signed tokens they carry back.

The structured reports are read first: an RFC 5965 feedback report (a complaint), an RFC 3464
delivery status notification (Postfix, Gmail, Microsoft, Exim with DSNs) and Exim's plain-text
bounce. Then an RFC 3834 auto-reply is set aside, and the text formats of other mail systems
go to the flufl.bounce detectors. Each failure gets a kind and a reason (see `reasons`). A
report from a mail system that arrived at a valid signed return path counts as a soft bounce
of that delivery even when nothing reads it; everything else not understood is "unknown" and
is left for a person to read.

Which delivery a report is about comes from what we signed (see `signing`): the return path it
was sent to, or the Message-ID of the original it quotes.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email import message_from_bytes, message_from_string, policy
from email.message import Message
from email.utils import getaddresses, parseaddr

from newsletter.bounces import reasons
from newsletter.bounces.detectors import read_text_bounces, report_text, server_words
from newsletter.bounces.signing import DEFAULT_VERP_PREFIX, quoted_message_tokens, token_in_address

# Re-exported: callers find the return path's signing where they always did.
from newsletter.bounces.signing import bounce_domain as bounce_domain
from newsletter.bounces.signing import parse_verp as parse_verp
from newsletter.bounces.signing import token_delivery_id as token_delivery_id
from newsletter.bounces.signing import verp_address as verp_address
from newsletter.bounces.signing import verp_enabled as verp_enabled
from newsletter.bounces.signing import verp_prefix as verp_prefix
from newsletter.bounces.signing import verp_token as verp_token

# Reading stops here: a report is short, and a huge message is someone's attachment.
MAX_PARSED_BYTES = 2_000_000
_SMTP_CODE = re.compile(r"\b([245]\d\d)[ -]")
# Headers that carry the envelope recipient of the bounce itself, most trustworthy first.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# Senders of delivery reports: RFC 5321 gives them a null return path, and these names.
_MAIL_SYSTEM_NAMES = frozenset(
    {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mdaemon", "nobody"}
)
_EXIM_FIRST_LINE = "This message was created automatically by mail delivery software."
NOT_UNDERSTOOD = "not a bounce, complaint or auto-reply"
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit)",
    re.IGNORECASE,
)


class BounceKind(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    BLOCKED = "blocked"
    COMPLAINT = "complaint"
    # A feedback report the reader sent from their own address: their wish, not a feedback loop.
    READER_REPORT = "reader-report"
    AUTO_REPLY = "auto-reply"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Failure:
    """What a report says of one failed recipient: the kind, reason and code, and the words."""

    recipient: str | None
    kind: BounceKind
    reason: str | None
    status: str | None
    diagnostic: str


@dataclass(frozen=True)
class BounceReport:
    """What one returned message says: its kind and reason, whom it is about, the server's words.

    A report about several recipients keeps each one's failure in `failures`; the top-level
    fields are the first, the one a report about someone else's address stands for.
    """

    kind: BounceKind
    recipient: str | None = None
    status: str | None = None
    diagnostic: str = ""
    verp_token: str | None = None
    subject: str = ""
    reason: str | None = None
    # Who sent the report itself (From, Sender, Return-Path): a reader's own address there
    # makes a feedback report theirs, not a mail system's feedback loop.
    senders: tuple[str, ...] = ()
    # Tokens of the Message-IDs of ours the report quotes (unverified): which delivery it is.
    message_tokens: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    # The words of a report no reader understood, to be read for the address it came back for.
    context: str = ""

    @property
    def understood(self) -> bool:
        return self.kind != BounceKind.UNKNOWN

    def about(self, email: str) -> BounceReport:
        """Return the report as it stands for one address: that recipient's own failure.

        A report naming several recipients is read for the one a delivery was sent to; when
        none is that address (a forward, a rewritten alias), the first failure stands.
        """
        key = email.strip().lower()
        match = next((f for f in self.failures if (f.recipient or "").lower() == key), None)
        if match is None and not self.failures and self.context:
            match = _failure_in_words(self.context, key)
        if match is None:
            return self
        return replace(
            self, kind=match.kind, recipient=match.recipient, status=match.status,
            reason=match.reason, diagnostic=match.diagnostic,
        )  # fmt: skip


# --- parsing ---------------------------------------------------------------------------


def parse_bounce(data: bytes, *, prefix: str = DEFAULT_VERP_PREFIX) -> BounceReport | None:
    """Classify one returned message; None when the bytes are not an email message at all."""
    if not _looks_like_message(data):
        return None
    data = data[:MAX_PARSED_BYTES]
    msg = message_from_bytes(_ascii_header_block(data), policy=policy.compat32)
    report = _read_report(msg)
    if report is None and _arrival_token(msg, prefix) and not _from_a_person(msg):
        # It came back to one delivery's return path, so it is about that delivery.
        report = BounceReport(
            BounceKind.SOFT,
            diagnostic="a report no detector reads, sent to a signed return path",
            reason=reasons.UNRECOGNIZED,
            context=report_text(msg)[:MAX_CONTEXT_CHARS],
        )
    if report is None:
        report = BounceReport(BounceKind.UNKNOWN, diagnostic=NOT_UNDERSTOOD)
    return replace(
        report,
        verp_token=_find_token(msg, prefix),
        subject=_header(msg, "Subject")[:200],
        senders=_senders(msg),
        message_tokens=quoted_message_tokens(data),
    )


# A mail system's notice that some failure will be retried: not a final word on the address.
_STILL_TRYING = re.compile(
    r"will (continue to |keep )?(re)?try|not yet been delivered|delayed|warning|temporar",
    re.IGNORECASE,
)
MAX_CONTEXT_CHARS = 20_000


def _failure_in_words(text: str, email: str) -> Failure | None:
    """Read what a report no reader knows says beside one address, if it names the address.

    Returns None when the address is not in it or the words say nothing known.
    """
    at = text.lower().find(email)
    if at < 0:
        return None
    words = " ".join(text[max(0, at - 300) : at + len(email) + 600].split())
    permanent = False if _STILL_TRYING.search(words) else None
    verdict = reasons.classify_failure(None, words, permanent=permanent)
    if verdict.reason in (reasons.UNCLASSIFIED, reasons.DEFERRED):
        return None
    return _failure(verdict, email, words)


def _senders(msg: Message) -> tuple[str, ...]:
    values = [str(v) for name in ("From", "Sender", "Return-Path") for v in msg.get_all(name, [])]
    return tuple(dict.fromkeys(a for _, a in getaddresses(values) if "@" in a))


def _read_report(msg: Message) -> BounceReport | None:
    """Return what the first reader that recognises the message makes of it, or None."""
    return (
        _from_feedback_report(msg)
        or _from_dsn(msg)
        or _from_exim_text(msg)
        or _from_auto_reply(msg)
        or _from_text_detectors(msg)
    )


def _ascii_header_block(data: bytes) -> bytes:
    """Replace raw 8-bit bytes in the top header block, which RFC 5322 does not allow.

    Parsed, such a header is an object rather than text, and readers expecting text fail.
    """
    end = min((i for i in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if i >= 0), default=-1)
    if end < 0:
        end = len(data)
    return re.sub(rb"[\x80-\xff]", b"?", data[:end]) + data[end:]


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
        raw = _payload_bytes(part)
    blocks = re.split(rb"\r?\n\s*\r?\n", raw.strip())
    return [message_from_bytes(b + b"\n\n", policy=policy.compat32) for b in blocks if b.strip()]


def _payload_bytes(part: Message) -> bytes:
    """Return a leaf part's payload with its transfer encoding undone (b"" when it has none)."""
    raw = part.get_payload(decode=True)
    return raw if isinstance(raw, bytes) else b""


def _typed_value(value: str) -> str:
    """Strip the address or diagnostic type: `rfc822; a@b` -> `a@b`, `smtp; 550 x` -> `550 x`."""
    kind, sep, rest = value.partition(";")
    return (rest if sep and " " not in kind.strip() else value).strip()


def _from_dsn(msg: Message) -> BounceReport | None:
    parts = _parts(msg, "message/delivery-status")
    found = [b for p in parts for b in _field_blocks(p)] if parts else _fields_in_text(msg)
    blocks = [b for b in found if b.get("Action") or b.get("Status")]
    if not blocks:
        return None  # a malformed report: the text detectors may still read it
    failed = [b for b in blocks if _header(b, "Action").lower() not in _NOT_FAILURES]
    if not failed:
        action = _header(blocks[0], "Action").lower()
        return BounceReport(BounceKind.UNKNOWN, diagnostic=f"a delivery notice ({action})")
    others = [_block_recipient(b) for b in failed]
    failures = [_dsn_failure(msg, b, others) for b in sorted(failed, key=_dsn_rank)]
    return _with_failures(failures)


_DSN_FIELD = re.compile(r"(?im)^(final-recipient|original-recipient)\s*:")


def _fields_in_text(msg: Message) -> list[Message]:
    """Return DSN recipient blocks some mail systems write into a plain text part.

    Only from a mail system: a person's message that quotes a report is not one.
    """
    if not _from_a_mail_system(msg):
        return []
    text = report_text(msg)
    if not _DSN_FIELD.search(text):
        return []
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return [
        message_from_string(block.strip() + "\n\n", policy=policy.compat32)
        for block in blocks
        if _DSN_FIELD.search(block)
    ]


# DSN actions that report no failure: the message was delivered, relayed or expanded.
_NOT_FAILURES = ("delivered", "relayed", "expanded")


def _block_recipient(block: Message) -> str:
    # An X.400 or other non-Internet Final-Recipient: the Original-Recipient is ours.
    return _clean(_typed_value(_header(block, "Final-Recipient"))) or _typed_value(
        _header(block, "Original-Recipient")
    )


def _dsn_failure(msg: Message, block: Message, others: list[str]) -> Failure:
    recipient = _block_recipient(block)
    action = _header(block, "Action").lower()
    diagnostic = _typed_value(_header(block, "Diagnostic-Code"))[:500]
    status = _header(block, "Status")
    permanent = {"failed": True, "delayed": False}.get(action)
    if diagnostic and (reasons.reason_from_wording(diagnostic) or reasons.specific_code(status)):
        verdict = reasons.classify_failure(status, diagnostic, permanent=permanent)
        return _failure(verdict, recipient, diagnostic)
    # No reply, or one in no known words: some servers write it only in the human-readable
    # part, beside the address (and there too the code, when the Status field has none).
    words = f"{diagnostic} {server_words(msg, recipient, others)}" if recipient else diagnostic
    verdict = reasons.classify_failure(status, words, permanent=permanent)
    return _failure(verdict, recipient, diagnostic or words)


def _dsn_rank(block: Message) -> int:
    action = _header(block, "Action").lower()
    return {"failed": 0, "delayed": 1}.get(action, 2)


def _failure(verdict: reasons.Verdict, recipient: str | None, diagnostic: str) -> Failure:
    words = " ".join(diagnostic.split())[:500]
    kind = BounceKind(verdict.kind)
    return Failure(_clean(recipient), kind, verdict.reason, verdict.status, words)


def _with_failures(failures: list[Failure]) -> BounceReport:
    first = failures[0]
    return BounceReport(
        first.kind, first.recipient, first.status, first.diagnostic, reason=first.reason,
        failures=tuple(failures),
    )  # fmt: skip


def _failure_report(verdict: reasons.Verdict, recipient: str, diagnostic: str) -> BounceReport:
    return _with_failures([_failure(verdict, recipient, diagnostic)])


def _from_feedback_report(msg: Message) -> BounceReport | None:
    fields = _feedback_fields(msg)
    if fields is None:
        return None
    feedback = _header(fields, "Feedback-Type").lower() or _microsoft_feedback(msg)
    # Every feedback type is a reader's complaint but these: "not-spam" takes one back, and
    # an authentication failure report is about our signatures, not about the reader's wish.
    complaint = feedback not in ("not-spam", "auth-failure", "dkim", "spf", "")
    kind = BounceKind.COMPLAINT if complaint else BounceKind.UNKNOWN
    detail = f"feedback-type {feedback or 'missing'}"
    reason = "complaint" if complaint else None
    return BounceReport(kind, _complainant(msg, fields), None, detail, reason=reason)


# Feedback loops that send their own format: Microsoft's JMRP, Amazon SES.
_FEEDBACK_SENDERS = ("staff@hotmail.com", "complaints@email-abuse.amazonses.com")
_FEEDBACK_SUBJECT = re.compile(r"complaint about message from", re.IGNORECASE)


def _feedback_fields(msg: Message) -> Message | None:
    """Return the fields of a feedback report, or None when the message is not one.

    The RFC 5965 part first; else a report-type=feedback-report message whose fields stand
    in a text part; else Microsoft's and Amazon's own formats, which carry no fields.
    """
    parts = _parts(msg, "message/feedback-report")
    if parts:
        blocks = _field_blocks(parts[0])
        return blocks[0] if blocks else Message()
    # A str: the email package decodes RFC 2231 tuples only for names of word characters.
    report_type = str(msg.get_param("report-type") or "").lower() if msg.is_multipart() else ""
    if report_type == "feedback-report":
        for part in _parts(msg, "text/plain"):
            text = _payload_bytes(part)[:20_000]
            if re.search(rb"(?im)^feedback-type:", text):
                found = re.findall(rb"(?im)^([a-z-]+):[ \t]*(.*)$", text)
                fields = Message()
                for name, value in found:
                    fields[name.decode("ascii", "replace")] = value.decode("ascii", "replace")
                return fields
        return Message()
    if _microsoft_feedback(msg):
        return Message()
    return None


def _microsoft_feedback(msg: Message) -> str:
    sender = parseaddr(_header(msg, "From"))[1].lower()
    if sender in _FEEDBACK_SENDERS and _FEEDBACK_SUBJECT.search(_header(msg, "Subject")):
        return "abuse"
    return ""


def _complainant(msg: Message, report: Message) -> str | None:
    """Return whom a feedback report is about: its own field, else the enclosed message's To.

    Providers that redact the address leave neither; the signed return path then decides.
    """
    for name in ("Original-Rcpt-To", "Removal-Recipient", "Redacted-Address"):
        address = _clean(_typed_value(_header(report, name)))
        if address and not address.endswith("@"):
            return address
    original = _enclosed_headers(msg)
    if original is None:
        return None
    microsoft = _clean(_header(original, "X-HmXmrOriginalRecipient"))
    if microsoft:
        return microsoft
    addresses = [a for _, a in getaddresses(original.get_all("To", [])) if a]
    return _clean(addresses[0]) if len(addresses) == 1 else None


def _from_exim_text(msg: Message) -> BounceReport | None:
    failed = _header(msg, "X-Failed-Recipients")
    body = report_text(msg)
    if not failed and _EXIM_FIRST_LINE not in body:
        return None
    recipients = [a for _, a in getaddresses([failed]) if a] or _indented_addresses(body)
    if not recipients:
        return None
    lowered = " ".join(body.lower().split())
    delayed = "has not yet been delivered" in lowered
    if "permanent error" in lowered or (failed and not delayed):
        permanent = True
    elif delayed or "temporary error" in lowered:
        permanent = False
    else:
        return None
    failures = []
    single = len(set(recipients)) == 1
    for recipient in dict.fromkeys(recipients):
        words = server_words(msg, recipient, recipients)
        reply = _exim_diagnostic(body if single else words)
        verdict = reasons.classify_failure(None, f"{reply} {words}", permanent=permanent)
        failures.append(_failure(verdict, recipient, reply or words))
    return _with_failures(failures)


def _indented_addresses(body: str) -> list[str]:
    # Exim lists each address alone on a line indented by two spaces.
    return re.findall(r"^ {2}(\S+@[^\s:]+)\s*$", body, re.MULTILINE)


def _exim_diagnostic(body: str) -> str:
    # The remote server's reply is the line that starts with its code (after indentation).
    lines = [" ".join(line.split()) for line in body.splitlines()]
    replies = [line for line in lines if _SMTP_CODE.match(line + " ")]
    return (replies or [line for line in lines if _SMTP_CODE.search(line + " ")] or [""])[0][:500]


def _from_auto_reply(msg: Message) -> BounceReport | None:
    if _from_a_mail_system(msg):
        return None  # delivery reports say "Auto-Submitted: auto-replied" too
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


def _from_text_detectors(msg: Message) -> BounceReport | None:
    found = read_text_bounces(msg)
    if not found:
        return None
    failures = []
    for bounce in found:
        verdict = reasons.classify_failure(None, bounce.diagnostic, permanent=bounce.permanent)
        failures.append(_failure(verdict, bounce.recipient, bounce.diagnostic))
    return _with_failures(failures)


def _from_a_mail_system(msg: Message) -> bool:
    """Tell whether a message was sent as a delivery report: null return path or daemon name."""
    return_paths = [str(v).strip() for v in msg.get_all("Return-Path", [])]
    if any(v in ("<>", "") for v in return_paths):
        return True
    local = parseaddr(_header(msg, "From"))[1].partition("@")[0].lower()
    return local in _MAIL_SYSTEM_NAMES


def _from_a_person(msg: Message) -> bool:
    """Tell whether a message carries a real sender's return path and no mail system's name."""
    has_sender = any(str(v).strip() not in ("<>", "") for v in msg.get_all("Return-Path", []))
    return has_sender and not _from_a_mail_system(msg)


def _enclosed_headers(msg: Message) -> Message | None:
    """Return the header block of the returned original message, if one is enclosed."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            raw = _payload_bytes(part)
            return message_from_bytes(raw.lstrip() + b"\n\n", policy=policy.compat32)
    return None


def _arrival_token(msg: Message, prefix: str) -> str | None:
    """Return the token of the address the message itself was delivered to, if any."""
    return _first_token([v for name in _ENVELOPE_HEADERS for v in msg.get_all(name, [])], prefix)


def _first_token(values: Sequence[object], prefix: str) -> str | None:
    for value in values:
        for _, address in getaddresses([str(value)]):
            token = token_in_address(address, prefix)
            if token:
                return token
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
    return _first_token(candidates, prefix)


def _clean(address: str | None) -> str | None:
    if not address:
        return None
    address = address.strip().strip("<>").strip()
    return address if "@" in address and len(address) <= 320 else None


def fingerprint(data: bytes) -> str:
    """Return a stable identity of a returned message, so reading it twice counts once."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n").strip()).hexdigest()


# --- SMTP replies during a send --------------------------------------------------------


def smtp_reply_verdict(reply: str) -> reasons.Verdict | None:
    """Classify an SMTP reply that refused a message; None when it is not a reply (a time-out)."""
    code = _SMTP_CODE.match(reply.strip() + " ")
    if code is None:
        return None
    return reasons.classify_failure(None, reply, permanent=code.group(1).startswith("5"))


def permanent_recipient_failure(reply: str) -> bool:
    """Tell whether an SMTP reply refuses the recipient for good: the address does not exist."""
    verdict = smtp_reply_verdict(reply)
    return verdict is not None and verdict.kind == reasons.HARD
