"""The sending service: plan an edition, then deliver what is owed; previews and test copies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as email_policy
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.audience.subscribers import get_subscriber
from newsletter.audience.suppressions import check_test_recipient
from newsletter.audience.validation import mailable_email
from newsletter.bounces.process import edition_health
from newsletter.content.digest import DigestPaper, EditionInfo, Recipient
from newsletter.content.rendering import make_renderer
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.deliveries import load_recipients
from newsletter.core.errors import InputError, NotFound, SendingHeld, TransportError
from newsletter.core.leases import LeaseTaken, default_worker_id, hold_lease
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionKind,
    Frequency,
    Subscriber,
)
from newsletter.delivery import guard
from newsletter.delivery.compose import MessagePreparer, Prepared
from newsletter.delivery.engine import EditionSender, ProgressCallback, SendOptions
from newsletter.delivery.guard import GuardLimits
from newsletter.delivery.recorder import SendSummary
from newsletter.delivery.transports import (
    Outcome,
    SendResult,
    Transport,
    make_transport,
    send_one,
)
from newsletter.editions.planning import (
    PlanStats,
    count_by_status,
    find_edition,
    get_or_create_edition,
    plan_edition,
    require_listing,
    resolve_listing_date,
)
from newsletter.editions.readers import Reader, ReaderSelection, load_reader
from newsletter.matching import feedback
from newsletter.matching.profiles import ReaderSignals
from newsletter.ranking.weights import RankingWeights


@dataclass(frozen=True)
class SendReport:
    plan: PlanStats
    summary: SendSummary


def options_from_settings(app: App, **overrides: object) -> SendOptions:
    """Build send options from the settings, with explicit overrides."""
    s = app.settings
    values: dict[str, object] = {
        "worker_id": default_worker_id(s.host_name),
        "lease_seconds": s.claim_lease_seconds,
        "batch_size": s.send_batch_size,
        "build_process_from": s.build_process_from,
        "max_attempts": s.max_attempts,
        "backoff_base": s.retry_base_seconds,
        "backoff_max": s.retry_max_seconds,
        "max_wait": s.retry_wait_seconds,
        "empty_policy": s.empty_policy,
        "guard": GuardLimits.from_settings(s),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SendOptions(**values)  # type: ignore[arg-type]  # each value is its field's setting


def _plan_edition(app: App, edition: Edition, *, session: Session) -> PlanStats:
    """Plan an edition under the settings' empty policy and the likes discoveries need."""
    return plan_edition(edition, session=session, empty_policy=app.settings.empty_policy,
                        min_likes=app.settings.ranking_discovery_min_likes)  # fmt: skip


def plan(app: App, listing_date: date | None = None) -> PlanStats:
    """Create the edition for the date (default: newest listing) and plan its deliveries."""
    with app.transaction() as session:
        day = require_listing(listing_date, session=session)
        edition = get_or_create_edition(day, session=session)
        return _plan_edition(app, edition, session=session)


def plan_unless_held(
    app: App, listing_date: date | None = None, *, force: bool = False
) -> PlanStats:
    """Plan as `plan` does; unless forced, SendingHeld when the last edition drew complaints."""
    if not force:
        check_complaints(app, listing_date)
    return plan(app, listing_date)


def preview_plan(app: App, listing_date: date | None = None) -> PlanStats:
    """Plan as `plan` would, then roll back: nothing is written."""
    with app.sessions() as session:
        try:
            day = require_listing(listing_date, session=session)
            edition = get_or_create_edition(day, session=session)
            return _plan_edition(app, edition, session=session)
        finally:
            session.rollback()


def make_preparer(app: App, edition: Edition, empty_policy: str) -> MessagePreparer:
    """Build what composes the edition's messages, with the papers its selection gives."""
    return MessagePreparer(
        app.settings,
        make_renderer(app.settings),
        make_selection(app, edition),
        EditionInfo(listing_date=edition.listing_date, kind=str(edition.kind)),
        empty_policy=empty_policy,
    )


def make_selection(
    app: App, edition: Edition, subscriber_ids: Iterable[int] | None = None
) -> ReaderSelection:
    """Load the edition's selection: its papers, readers' signals and what they already had.

    Votes are read per batch of readers as they are asked for: memory flat in readers.
    """
    with app.reading() as session:
        return _load_selection(app, edition, session=session, subscriber_ids=subscriber_ids)


def _load_selection(
    app: App, edition: Edition, *, session: Session, subscriber_ids: Iterable[int] | None = None
) -> ReaderSelection:
    return ReaderSelection.load(
        edition,
        session=session,
        threshold=app.settings.match_threshold,
        hf_url=app.settings.hf_url,
        subscriber_ids=subscriber_ids,
        load_votes=_votes_loader(app),
        weights=RankingWeights.from_settings(app.settings),
    )


def _votes_loader(app: App) -> Callable[[ReaderSignals, Iterable[int]], None]:
    """Return what loads a batch of readers' votes into signals, each time in a session."""

    def load(signals: ReaderSignals, subscriber_ids: Iterable[int]) -> None:
        with app.reading() as session:
            signals.load_votes(subscriber_ids, session=session)

    return load


def check_send(
    app: App, listing_date: date | None = None, *, force: bool = False, resume: bool = False
) -> None:
    """Raise SendingHeld when the edition is paused (unless resumed) or held by complaints."""
    with app.reading() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
        paused = guard.pause_reason(session.connection(), edition.id) if edition else None
    if paused and not resume:
        raise SendingHeld(
            f"the {day} edition is paused: {paused}; check the list, then "
            f"`newsletter send --resume --date {day}` sends the rest"
        )
    if not force:
        check_complaints(app, listing_date)


def check_complaints(app: App, listing_date: date | None = None) -> None:
    """Raise SendingHeld when the edition has not started and the last one drew complaints."""
    with app.reading() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
        held = guard.complaint_hold(
            session.connection(), edition.id if edition else None,
            app.settings.complaint_rate_limit, min_count=app.settings.complaint_min_count,
        )  # fmt: skip
    if held:
        raise SendingHeld(f"{held}: add --force to send the {day} edition anyway")


@dataclass(frozen=True)
class SendCheck:
    """What a send would do, asked before it starts: how many it owes and would send now."""

    listing_date: date
    owed: int  # deliveries the edition would owe once planned
    to_send: int  # of those, what this run sends (at most its limit)
    confirm_above: int  # the setting: a send to more than this many is confirmed first

    @property
    def needs_confirmation(self) -> bool:
        """Tell whether this run sends to more readers than the operator agreed to unasked."""
        return self.to_send > self.confirm_above


def check_before_send(
    app: App,
    listing_date: date | None = None,
    *,
    limit: int | None = None,
    force: bool = False,
    resume: bool = False,
) -> SendCheck:
    """Count what a send would owe (nothing written), then refuse a held edition (see
    `check_send`): what to show, and ask about, before it starts."""
    planned = preview_plan(app, listing_date)
    check_send(app, listing_date, force=force, resume=resume)
    owed = planned.pending
    return SendCheck(
        listing_date=planned.listing_date,
        owed=owed,
        to_send=min(owed, limit or owed),
        confirm_above=app.settings.confirm_above,
    )


def resume_sending(app: App, listing_date: date | None = None) -> tuple[date, str]:
    """Lift the guard's pause of the edition; return its date and why it was paused."""
    with app.transaction() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
        if edition is None:
            raise NotFound(f"no edition of {day} is planned")
        reason = guard.resume_edition(session.connection(), edition.id)
    if reason is None:
        raise InputError(f"the {day} edition is not paused: nothing to resume")
    return day, reason


def send(
    app: App,
    listing_date: date | None = None,
    *,
    options: SendOptions | None = None,
    transport: Transport | None = None,
    progress: ProgressCallback | None = None,
    attach: Callable[[EditionSender | None], None] | None = None,
    force: bool = False,
    resume: bool = False,
) -> SendReport:
    """Plan the edition (idempotent) and deliver every owed message.

    A paused edition needs `resume`, and a new edition after one that drew too many
    complaints needs `force` (see `check_send`). `attach` is called with the sender before it
    runs and with None after, so that a signal or another thread can stop it.
    """
    options = options or options_from_settings(app)
    attach = attach or (lambda _sender: None)
    check_send(app, listing_date, force=force, resume=resume)
    stats = plan(app, listing_date)
    if resume:
        with app.engine.begin() as conn:
            guard.resume_edition(conn, stats.edition_id)
    sender = edition_sender(app, stats.edition_id, options=options, transport=transport,
                            progress=progress)  # fmt: skip
    attach(sender)
    # Workers share rows by design; two `send` runs of one edition are an operator's mistake.
    try:
        with hold_lease(app.sessions, send_lease_name(stats.edition_id), options.worker_id):
            return SendReport(plan=stats, summary=sender.run())
    except LeaseTaken as exc:
        raise LeaseTaken(
            f"the {stats.listing_date} edition is already being sent ({exc}); "
            "wait for that run to finish"
        ) from None
    finally:
        attach(None)


def send_lease_name(edition_id: int) -> str:
    """Return the name of the lease a `send` run of the edition holds."""
    return f"send:{edition_id}"


def edition_sender(
    app: App,
    edition_id: int,
    *,
    options: SendOptions,
    transport: Transport | None = None,
    progress: ProgressCallback | None = None,
) -> EditionSender:
    """Build the sender that delivers what an edition still owes (run it with `.run()`)."""
    edition = _edition_by_id(app, edition_id)
    return EditionSender(
        app.engine,
        app.settings,
        edition,
        transport or make_transport(app.settings.transport),
        make_preparer(app, edition, options.empty_policy),
        options,
        progress,
        build_apart=partial(preparer_in_process, app.settings, edition.id, options.empty_policy),
    )


def preparer_in_process(settings: Settings, edition_id: int, empty_policy: str) -> MessagePreparer:
    """Make an edition's preparer in a builder process: an app and a selection of its own."""
    app = App(settings)
    return make_preparer(app, _edition_by_id(app, edition_id), empty_policy)


def _edition_by_id(app: App, edition_id: int) -> Edition:
    with app.reading() as session:
        edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition with id {edition_id}")
    return edition


def edition_status(app: App, listing_date: date | None = None) -> dict[str, Any]:
    """Return the edition's delivery counts per status."""
    with app.reading() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
        counts = count_by_status(edition.id, session=session) if edition else {}
        votes = feedback.edition_votes(edition.id, session=session) if edition else None
        limits = GuardLimits.from_settings(app.settings)
        conn = session.connection()
        paused = guard.guard_status(conn, edition.id, limits) if edition else None
    return {
        "date": day.isoformat(),
        "planned": edition is not None,
        **{status.value: counts.get(status, 0) for status in DeliveryStatus},
        "health": edition_health(app, edition.id) if edition else None,
        "votes": votes,
        "guard": paused,
    }


@dataclass(frozen=True)
class Preview:
    """One reader's message for an edition, and the papers their selection gave."""

    prepared: Prepared
    papers: tuple[DigestPaper, ...]
    skipped: bool  # the send gives this reader nothing (empty_policy "skip"): this is the note

    @property
    def data(self) -> bytes:
        """Return the whole message, as the transport would get it."""
        return self.prepared.message.data

    @property
    def subject(self) -> str:
        return str(self._parsed()["Subject"])

    @property
    def text(self) -> str:
        """Return the decoded plain-text part ("" when it has none)."""
        return self._part("plain")

    @property
    def html(self) -> str:
        """Return the decoded HTML part ("" when it has none)."""
        return self._part("html")

    def _parsed(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=email_policy)
        assert isinstance(parsed, EmailMessage)  # the policy makes an EmailMessage
        return parsed

    def _part(self, kind: str) -> str:
        part = self._parsed().get_body(preferencelist=(kind,))
        return str(part.get_content()) if part is not None else ""


@dataclass(frozen=True)
class PlannedDigest:
    """What one owed reader would get: their papers, best first (none: a note or nothing)."""

    email: str
    papers: tuple[DigestPaper, ...]


def _edition_of(
    day: date, *, session: Session, kind: EditionKind = EditionKind.DAILY
) -> Edition:
    """Return the day's edition of a kind as saved (unsaved before it is planned), detached."""
    found = find_edition(day, session=session, kind=kind)
    return Edition(id=found.id if found else None, listing_date=day, kind=kind)


def _kind_for(subscriber: Subscriber) -> EditionKind:
    """Return the kind of edition the scheduler sends a subscriber."""
    weekly = subscriber.frequency == Frequency.WEEKLY
    return EditionKind.WEEKLY if weekly else EditionKind.DAILY


def build_preview(app: App, email: str, listing_date: date | None = None) -> Preview:
    """Build the message one subscriber gets for the edition, without touching any state.

    Their papers come from their edition's selection (a weekly reader's: the week up to the
    date), as the send chooses them. NotFound for an address that is no subscriber.
    """
    with app.reading() as session:
        day = require_listing(listing_date, session=session)
        sub = get_subscriber(email, session=session)
        reader = load_reader(sub, session=session)
        edition = _edition_of(day, session=session, kind=_kind_for(sub))
        person = (sub.id, sub.email, sub.name or "", sub.link_key)
    selection = make_selection(app, edition, [reader.subscriber_id])
    papers = selection.papers_for(reader)
    recipient = Recipient(*person[:3], selection.topic_names(reader.topic_ids), person[3])
    prepared = _one_off_preparer(app, selection, edition).build(0, 1, recipient, papers)
    return Preview(prepared, papers, skipped=not papers and app.settings.empty_policy == "skip")


def _one_off_preparer(app: App, selection: ReaderSelection, edition: Edition) -> MessagePreparer:
    # "note": a reader the selection finds nothing for is shown the note, not an error.
    info = EditionInfo(listing_date=edition.listing_date, kind=str(edition.kind))
    return MessagePreparer(app.settings, make_renderer(app.settings), selection, info,
                           empty_policy="note")  # fmt: skip


def send_test_copy(
    app: App, to: str, listing_date: date | None = None, *, force: bool = False
) -> SendResult:
    """Send one copy of the edition to any address; the edition's state is untouched.

    A subscriber's address gets their own digest, as the send chooses it; any other address
    gets the day's best papers of every topic. An address the product cannot mail (see
    mailable_email) is refused, and a suppressed one unless forced.
    """
    to = mailable_email(to)
    with app.reading() as session:
        check_test_recipient(to, session=session, force=force)
    try:
        prepared = build_preview(app, to, listing_date).prepared
    except NotFound:
        prepared = _anyone_message(app, to, listing_date)
    result = send_one(app.settings.transport, prepared.message)
    if result.outcome != Outcome.SENT:
        raise TransportError(f"test copy to {to} not sent: {result.reply}")
    return result


def _anyone_message(app: App, to: str, listing_date: date | None) -> Prepared:
    """Build the digest of every topic's best papers for an address that is no subscriber."""
    with app.reading() as session:
        edition = _edition_of(require_listing(listing_date, session=session), session=session)
    selection = make_selection(app, edition, [])
    topic_ids = tuple(sorted(selection.papers.topic_names))
    papers = selection.papers_for(Reader(0, topic_ids, app.settings.default_max_papers))
    recipient = Recipient(subscriber_id=0, email=to, name="", topics=())
    return _one_off_preparer(app, selection, edition).build(0, 1, recipient, papers)


def dry_run(app: App, listing_date: date | None = None) -> tuple[PlanStats, list[PlannedDigest]]:
    """Plan as `plan` would and roll back; return the plan and what each owed reader gets.

    Each reader's papers come from the selection the send runs; nothing is written.
    """
    with app.sessions() as session:
        try:
            day = require_listing(listing_date, session=session)
            edition = get_or_create_edition(day, session=session)
            stats = _plan_edition(app, edition, session=session)
            owed = list(session.scalars(
                select(Delivery.subscriber_id)
                .where(Delivery.edition_id == edition.id, Delivery.status == DeliveryStatus.PENDING)
                .order_by(Delivery.id)
            ))  # fmt: skip
            # Read while the planned rows are there: who had which of these papers already.
            selection = _load_selection(app, edition, session=session)
        finally:
            session.rollback()
    return stats, list(_planned_digests(app, selection, owed))


def _planned_digests(
    app: App, selection: ReaderSelection, subscriber_ids: list[int]
) -> Iterator[PlannedDigest]:
    size = app.settings.send_batch_size
    for start in range(0, len(subscriber_ids), size):
        chunk = subscriber_ids[start : start + size]
        with app.engine.connect() as conn:
            people = load_recipients(conn, chunk)
        selection.have_votes_of(chunk)
        for sid in chunk:
            if sid in people:
                email, _, max_papers, topic_ids, _ = people[sid]
                yield PlannedDigest(email, selection.papers_for(Reader(sid, topic_ids, max_papers)))
