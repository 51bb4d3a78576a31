"""Process returned mail: read a Maildir, an mbox, stdin or an IMAP folder, and act on it.

One run parses every message first, then applies all results in one transaction: a hard
bounce suppresses the address, soft bounces suppress it once there are `soft_bounce_limit`
within `soft_bounce_days` (a disabled mailbox once it is reported again), a blocked one is
recorded and suppresses nobody, a complaint unsubscribes and suppresses, and an unsubscribe
request mailed to the List-Unsubscribe address unsubscribes the subscriber its token names.
A message that cannot be read is kept and reported with the reason; the run goes on.
A report is only believed when what we signed names the delivery: the return path it came to,
or the Message-ID of the original it quotes (of a message sent within `bounce_recent_days`).
The address a report writes names nobody: anyone can mail the bounce address. Only after the
commit are the handled messages moved out of the way; the rest stay where they were and are
reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, distinct, func, insert, select
from sqlalchemy.orm import Session

from newsletter.audience.signup import unsubscribe
from newsletter.audience.suppressions import COMPLAINT_REASON, suppress
from newsletter.audience.validation import email_key
from newsletter.bounces import reasons
from newsletter.bounces.classify import (
    BounceKind,
    BounceReport,
    fingerprint,
    parse_bounce,
    token_delivery_id,
    verp_enabled,
    verp_prefix,
)
from newsletter.bounces.mailboxes import Returned, Source
from newsletter.bounces.mailed_unsubscribe import unsubscribe_by_mail, unsubscribe_request
from newsletter.bounces.refusals import count_events, repeatedly_disabled
from newsletter.bounces.signing import message_id_delivery_id
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.errors import NotFound
from newsletter.core.models import (
    BounceEvent,
    Delivery,
    DeliveryStatus,
    Edition,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

UNSUBSCRIBE_REQUEST = "unsubscribe-request"
READER_REPORT_REASON = "reader-report"
MAIL_UNSUBSCRIBED = "unsubscribed_by_mail"
ACTIONS = (
    "suppressed", "unsubscribed", MAIL_UNSUBSCRIBED, "counted", "blocked", "ignored", "duplicate"
)  # fmt: skip
# Mailbox providers start filtering senders above these (Gmail's bulk sender guidance).
COMPLAINT_WARN_RATE = 0.001
HARD_BOUNCE_WARN_RATE = 0.02

ProgressCallback = Callable[[int], None]


# --- what a run did --------------------------------------------------------------------


@dataclass(frozen=True)
class MessageOutcome:
    """What became of one returned message."""

    ref: str
    kind: str
    action: str  # one of ACTIONS, or kept
    email: str | None = None
    detail: str = ""
    reason: str | None = None

    @property
    def kept(self) -> bool:
        return self.action == "kept"


@dataclass
class BounceRun:
    """The outcome of one processing run, message by message."""

    source: str
    outcomes: list[MessageOutcome] = field(default_factory=list)
    # Messages past the per-run limit (`bounce_max_messages`), left for the next run.
    left: int = 0

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    @property
    def kept(self) -> list[MessageOutcome]:
        return [o for o in self.outcomes if o.kept]

    def addresses(self, *actions: str) -> list[str]:
        return sorted({o.email for o in self.outcomes if o.action in actions and o.email})

    @property
    def suppressed(self) -> list[str]:
        return self.addresses("suppressed", "unsubscribed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "messages": len(self.outcomes),
            "left": self.left,
            **{action: self.count(action) for action in (*ACTIONS, "kept")},
            "suppressed_addresses": self.suppressed,
            "unsubscribed_by_mail_addresses": self.addresses(MAIL_UNSUBSCRIBED),
            "outcomes": [o.__dict__ for o in self.outcomes],
        }


# --- applying results ------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    ref: str
    report: BounceReport | None
    digest: str
    # The text after "unsubscribe" in the subject of a mailed request, else None.
    unsubscribe: str | None = None
    # Why the source could not read the message; it is then kept untouched.
    unreadable: str = ""


def process_bounces(
    app: App, source: Source, *, progress: ProgressCallback | None = None
) -> BounceRun:
    """Read every message of the source, act on what it says, then tidy the source."""
    rules = trust_rules(app.settings)  # a bad setting stops the run before anything is read
    prefix = verp_prefix(app.settings)
    parsed = []
    for item in source.messages():
        parsed.append(_parse(item, prefix))
        if progress:
            progress(1)
    with app.transaction() as session:
        outcomes = [_apply(session, app.settings, rules, p) for p in parsed]
    processed = [o.ref for o in outcomes if not o.kept]
    where = source.finish(processed, [o.ref for o in outcomes if o.kept])
    outcomes = [_with_location(o, where) for o in outcomes]
    return BounceRun(source.name, outcomes, left=source.left)


def _with_location(outcome: MessageOutcome, where: dict[str, str]) -> MessageOutcome:
    if not outcome.kept or outcome.ref not in where:
        return outcome
    return replace(outcome, ref=where[outcome.ref] if outcome.ref == "stdin" else outcome.ref)


def _parse(item: Returned, prefix: str) -> _Parsed:
    if item.unreadable:
        return _Parsed(item.ref, None, "", unreadable=item.unreadable)
    try:
        return _read(item, prefix)
    except Exception as exc:  # one odd message must not stop the others: it is kept, reported
        detail = f"could not be read: {type(exc).__name__}: {exc}"[:300]
        return _Parsed(item.ref, None, "", unreadable=detail)


def _read(item: Returned, prefix: str) -> _Parsed:
    digest = fingerprint(item.data)
    request = unsubscribe_request(item.data)
    if request is not None:
        return _Parsed(item.ref, None, digest, unsubscribe=request)
    return _Parsed(item.ref, parse_bounce(item.data, prefix=prefix), digest)


def _apply(
    session: Session, settings: Settings, rules: TrustRules, parsed: _Parsed
) -> MessageOutcome:
    report, ref = parsed.report, parsed.ref
    if parsed.unreadable:
        return MessageOutcome(ref, BounceKind.UNKNOWN, "kept", None, parsed.unreadable)
    if parsed.unsubscribe is not None:
        return _unsubscribe(session, settings, ref, parsed.unsubscribe)
    if report is None:
        return MessageOutcome(ref, BounceKind.UNKNOWN, "kept", None, "not an email message")
    if report.kind == BounceKind.UNKNOWN:
        return MessageOutcome(ref, report.kind, "kept", report.recipient, report.diagnostic)
    if report.kind == BounceKind.AUTO_REPLY:
        return MessageOutcome(ref, report.kind, "ignored", report.recipient, "auto-reply")
    conn = session.connection()
    now = utcnow()
    target = _resolve(conn, settings, rules, report, now)
    if isinstance(target, str):
        return MessageOutcome(ref, report.kind, "kept", report.recipient, target)
    email, delivery_id = target
    report = report.about(email)  # a report on several recipients: this one's own failure
    if report.kind == BounceKind.COMPLAINT and _sent_by_the_reader(report, email):
        report = replace(report, kind=BounceKind.READER_REPORT, reason=READER_REPORT_REASON)
    if _seen(conn, parsed.digest):
        return MessageOutcome(ref, report.kind, "duplicate", email, "read before")
    conn.execute(
        insert(BounceEvent).values(
            email=email,
            kind=report.kind.value,
            status=report.status,
            reason=report.reason,
            diagnostic=report.diagnostic[:500],
            delivery_id=delivery_id,
            message_hash=parsed.digest,
            created_at=now,
        )
    )
    if report.kind == BounceKind.READER_REPORT:
        return _reader_report(session, ref, report, email, now)
    return _act(conn, settings, ref, report, email, now)


def _sent_by_the_reader(report: BounceReport, email: str) -> bool:
    """Tell whether a feedback report came from the address it complains for."""
    key = email_key(email)
    return any(email_key(sender) == key for sender in report.senders)


def _reader_report(
    session: Session, ref: str, report: BounceReport, email: str, now: datetime
) -> MessageOutcome:
    """Unsubscribe a reader who reported their copy themselves; no complaint is counted.

    Anyone who knows a return path can send such a report from the reader's address, so it
    stops only their mail, as their own unsubscribe link would, and never holds an edition.
    """
    subscriber_id = _subscriber_id(session.connection(), email)
    if subscriber_id is not None:
        unsubscribe(subscriber_id, session=session, now=now, source="report")
    detail = "a report from the reader's own address: unsubscribed, not counted as a complaint"
    return _outcome(ref, report, MAIL_UNSUBSCRIBED, email, detail)


def _subscriber_id(conn: Connection, email: str) -> int | None:
    key = email_key(email)
    rows = conn.execute(
        select(Subscriber.id, Subscriber.email).where(
            func.lower(Subscriber.email).in_({key, key.lower()})
        )
    )
    return next((i for i, e in rows if email_key(e) == key), None)


def _act(
    conn: Connection,
    settings: Settings,
    ref: str,
    report: BounceReport,
    email: str,
    now: datetime,
) -> MessageOutcome:
    if report.kind == BounceKind.COMPLAINT:
        suppress(conn, email, COMPLAINT_REASON, status=SubscriberStatus.UNSUBSCRIBED, now=now)
        return _outcome(ref, report, "unsubscribed", email, "complaint")
    if report.kind == BounceKind.HARD:
        reason = f"hard bounce {report.status or ''} ({report.reason}): {report.diagnostic}"
        suppress(conn, email, " ".join(reason.split()), now=now)
        return _outcome(ref, report, "suppressed", email, report.status or "")
    if report.kind == BounceKind.BLOCKED:
        # Refused for the sender's mail (policy, spam, authentication): the address is fine.
        return _outcome(ref, report, "blocked", email, f"blocked: {report.diagnostic}"[:300])
    if report.reason == reasons.MAILBOX_DISABLED and repeatedly_disabled(conn, email, now):
        suppress(conn, email, f"mailbox disabled, reported again: {report.diagnostic}", now=now)
        return _outcome(ref, report, "suppressed", email, "mailbox disabled again")
    limit, days = soft_bounce_policy(settings)
    count = count_events(conn, email, now - timedelta(days=days), kind=BounceKind.SOFT.value)
    if count >= limit:
        suppress(conn, email, f"soft bounces: {count} within {days} days", now=now)
        return _outcome(ref, report, "suppressed", email, f"{count} soft bounces")
    return _outcome(ref, report, "counted", email, f"{count} of {limit} soft bounces")


def _outcome(
    ref: str, report: BounceReport, action: str, email: str, detail: str
) -> MessageOutcome:
    return MessageOutcome(ref, report.kind, action, email, detail, report.reason)


def soft_bounce_policy(settings: Settings) -> tuple[int, int]:
    """Return how many soft bounces within how many days suppress an address."""
    return settings.soft_bounce_limit, settings.soft_bounce_days


def _unsubscribe(session: Session, settings: Settings, ref: str, token: str) -> MessageOutcome:
    subscriber = unsubscribe_by_mail(token, session=session, settings=settings) if token else None
    if subscriber is None:
        detail = "unsubscribe request without a valid token for a current subscriber"
        return MessageOutcome(ref, UNSUBSCRIBE_REQUEST, "kept", None, detail)
    return MessageOutcome(ref, UNSUBSCRIBE_REQUEST, MAIL_UNSUBSCRIBED, subscriber.email, "by mail")


# --- whom a report may name ------------------------------------------------------------


@dataclass(frozen=True)
class TrustRules:
    """Which reports are acted on: signed return paths only, or also quoted Message-IDs."""

    require_verp: bool
    recent_days: int


def trust_rules(settings: Settings) -> TrustRules:
    """Read `bounce_require_verp` (true) and `bounce_recent_days` (30) from the settings."""
    # Signed return paths exist only where the sender uses them: with a bounce domain.
    require = settings.bounce_require_verp and verp_enabled(settings)
    return TrustRules(require, settings.bounce_recent_days)


def _resolve(
    conn: Connection, settings: Settings, rules: TrustRules, report: BounceReport, now: datetime
) -> tuple[str, int | None] | str:
    """Return (address, delivery id) the report is about, or why it cannot be trusted.

    The bounce address is public, so anyone can send a report naming anyone: only what we
    signed names a delivery, never the address a report writes. A report that came to a
    signed return path names that delivery; unless `bounce_require_verp` (with a bounce
    domain), one that quotes the Message-ID of an original we sent within
    `bounce_recent_days` names the delivery it was sent for.
    """
    if report.verp_token:
        return _by_return_path(conn, settings, report.verp_token)
    if rules.require_verp:
        return "no valid return path (bounce_require_verp is on)"
    quoted = _quoted_delivery(settings, report)
    if quoted is None:
        return "no signed return path, and it quotes no message of ours"
    since = now - timedelta(days=rules.recent_days)
    return _by_quoted_message(conn, quoted, since, rules.recent_days)


def _quoted_delivery(settings: Settings, report: BounceReport) -> int | None:
    found = (message_id_delivery_id(settings, t) for t in report.message_tokens)
    return next((d for d in found if d is not None), None)


def _by_return_path(conn: Connection, settings: Settings, token: str) -> tuple[str, int] | str:
    delivery_id = token_delivery_id(settings, token)
    if delivery_id is None:
        return "no valid return path (its token is forged or not ours)"
    row = conn.execute(
        select(Subscriber.email)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        return "return path names a delivery no longer stored"
    return row[0], delivery_id


def _by_quoted_message(
    conn: Connection, delivery_id: int, since: datetime, days: int
) -> tuple[str, int] | str:
    row = conn.execute(
        select(Subscriber.email, (Delivery.sent_at >= since).label("recent"))
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        return "quotes a message of a delivery no longer stored"
    if not row.recent:  # an old leaked copy cannot be replayed for ever
        return f"quotes a message of ours not sent within {days} days"
    return row.email, delivery_id


def _seen(conn: Connection, digest: str) -> bool:
    found = conn.execute(select(BounceEvent.id).where(BounceEvent.message_hash == digest))
    return found.first() is not None


# --- edition health --------------------------------------------------------------------


def edition_health(app: App, edition_id: int) -> dict[str, Any]:
    """Return an edition's bounce and complaint counts and rates, with warnings above limits."""
    with app.reading() as session:
        if session.get(Edition, edition_id) is None:
            raise NotFound(f"no edition with id {edition_id}")
        attempted = session.scalar(
            select(func.count()).where(
                Delivery.edition_id == edition_id,
                Delivery.status.in_([DeliveryStatus.SENT, DeliveryStatus.FAILED]),
            )
        )
        by_kind = _deliveries_per(session, BounceEvent.kind, edition_id)
        by_reason = _deliveries_per(session, BounceEvent.reason, edition_id)
    health = _health(edition_id, attempted or 0, by_kind)
    health["by_reason"] = dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))
    return health


def _deliveries_per(session: Session, column: Any, edition_id: int) -> dict[str, int]:
    """Count an edition's deliveries with a bounce event, per value of one event column."""
    rows = session.execute(
        select(column, func.count(distinct(BounceEvent.delivery_id)))
        .join(Delivery, Delivery.id == BounceEvent.delivery_id)
        .where(Delivery.edition_id == edition_id)
        .group_by(column)
    )
    counts: dict[str, int] = {}
    for value, count in rows:  # events from before reasons were kept have none
        key = value or reasons.UNCLASSIFIED
        counts[key] = counts.get(key, 0) + count
    return counts


def format_reasons(by_reason: dict[str, int]) -> str:
    """Return counts by reason as one line: "bad-mailbox 3, spam 1"."""
    return ", ".join(f"{reason} {count}" for reason, count in by_reason.items())


def _health(edition_id: int, attempted: int, by_kind: dict[str, int]) -> dict[str, Any]:
    hard = by_kind.get(BounceKind.HARD.value, 0)
    soft = by_kind.get(BounceKind.SOFT.value, 0)
    blocked = by_kind.get(BounceKind.BLOCKED.value, 0)
    complaints = by_kind.get(BounceKind.COMPLAINT.value, 0)
    hard_rate = hard / attempted if attempted else 0.0
    complaint_rate = complaints / attempted if attempted else 0.0
    warnings = []
    if complaint_rate > COMPLAINT_WARN_RATE:
        warnings.append(
            f"complaint rate {complaint_rate:.2%} is above {COMPLAINT_WARN_RATE:.1%}:"
            " mailbox providers may start filtering this list"
        )
    if hard_rate > HARD_BOUNCE_WARN_RATE:
        warnings.append(
            f"hard bounce rate {hard_rate:.2%} is above {HARD_BOUNCE_WARN_RATE:.0%}:"
            " check where these addresses came from"
        )
    return {
        "edition_id": edition_id,
        "attempted": attempted,
        "hard_bounces": hard,
        "soft_bounces": soft,
        "blocked": blocked,
        "complaints": complaints,
        "hard_bounce_rate": hard_rate,
        "complaint_rate": complaint_rate,
        "warnings": warnings,
    }
