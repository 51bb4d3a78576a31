"""The sending service: plan an edition, then deliver what is owed; previews and test copies."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from newsletter.audience.subscribers import get_subscriber, mailable_email
from newsletter.audience.suppressions import check_test_recipient
from newsletter.bounces.process import edition_health
from newsletter.content.rendering import EditionInfo, Recipient, make_renderer
from newsletter.core.app import App
from newsletter.core.errors import InputError, NotFound, SendingHeld, TransportError
from newsletter.core.leases import LeaseTaken, default_worker_id, hold_lease
from newsletter.core.models import DeliveryStatus, Edition, Subscription
from newsletter.delivery import guard
from newsletter.delivery.compose import MessagePreparer, Prepared
from newsletter.delivery.engine import EditionSender, ProgressCallback, SendOptions, SendSummary
from newsletter.delivery.guard import GuardLimits
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
    edition_first_day,
    find_edition,
    get_or_create_edition,
    plan_edition,
    resolve_listing_date,
    sent_paper_ids,
)
from newsletter.editions.selection import EditionPapers
from newsletter.matching import feedback
from newsletter.matching.profiles import ReaderSignals


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
        "max_attempts": s.max_attempts,
        "backoff_base": s.retry_base_seconds,
        "backoff_max": s.retry_max_seconds,
        "max_wait": s.retry_wait_seconds,
        "empty_policy": s.empty_policy,
        "guard": GuardLimits.from_settings(s),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SendOptions(**values)  # type: ignore[arg-type]


def plan(app: App, listing_date: date | None = None) -> PlanStats:
    """Create the edition for the date (default: newest listing) and plan its deliveries."""
    with app.transaction() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = get_or_create_edition(day, session=session)
        return plan_edition(edition, session=session, empty_policy=app.settings.empty_policy)


def preview_plan(app: App, listing_date: date | None = None) -> PlanStats:
    """Plan as `plan` would, then roll back: nothing is written."""
    with app.sessions() as session:
        try:
            day = resolve_listing_date(listing_date, session=session)
            edition = get_or_create_edition(day, session=session)
            return plan_edition(edition, session=session, empty_policy=app.settings.empty_policy)
        finally:
            session.rollback()


def make_preparer(app: App, edition: Edition, empty_policy: str) -> MessagePreparer:
    """Load the edition's papers (a week's for weekly) and what its readers already had."""
    with app.sessions() as session:
        since = edition_first_day(edition.kind, edition.listing_date)
        papers = EditionPapers.load(
            edition.listing_date, session=session, since=since, hf_url=app.settings.hf_url
        )
        sent = sent_paper_ids(edition, session=session) if edition.id else {}
        # Votes are read per batch of readers as they are sent: memory flat in readers.
        signals = ReaderSignals.load(
            papers.paper_ids(),
            session=session,
            threshold=app.settings.match_threshold,
            votes_per_batch=True,
        )
    return MessagePreparer(
        app.settings,
        make_renderer(app.settings),
        papers,
        EditionInfo(listing_date=edition.listing_date, kind=str(edition.kind)),
        empty_policy=empty_policy,
        exclude=sent,
        signals=signals,
        load_votes=_votes_loader(app, signals) if signals is not None else None,
    )


def _votes_loader(app: App, signals: ReaderSignals) -> Callable[[Iterable[int]], None]:
    """Return what loads a batch of readers' votes into signals, each time in a session."""

    def load(subscriber_ids: Iterable[int]) -> None:
        with app.sessions() as session:
            signals.load_votes(subscriber_ids, session=session)

    return load


def check_send(
    app: App, listing_date: date | None = None, *, force: bool = False, resume: bool = False
) -> None:
    """Raise SendingHeld when the edition is paused (unless resumed) or held by complaints."""
    with app.sessions() as session:
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
    with app.sessions() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
        held = guard.complaint_hold(
            session.connection(), edition.id if edition else None,
            app.settings.complaint_rate_limit, min_count=app.settings.complaint_min_count,
        )  # fmt: skip
    if held:
        raise SendingHeld(f"{held}: add --force to send the {day} edition anyway")


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
    with app.sessions() as session:
        edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition with id {edition_id}")
    return EditionSender(
        app.engine,
        app.settings,
        edition,
        transport or make_transport(app.settings.transport),
        make_preparer(app, edition, options.empty_policy),
        options,
        progress,
    )


def edition_status(app: App, listing_date: date | None = None) -> dict[str, object]:
    """Return the edition's delivery counts per status."""
    with app.sessions() as session:
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


def _recipient_for(app: App, email: str, papers: EditionPapers) -> tuple[Recipient, tuple, int]:
    """Return the subscriber's recipient, topic ids and max papers; NotFound when unknown."""
    with app.sessions() as session:
        sub = get_subscriber(email, session=session)
        topic_ids = tuple(
            session.scalars(
                select(Subscription.topic_id).where(Subscription.subscriber_id == sub.id)
            )
        )
    names = tuple(sorted(papers.topic_names[t] for t in topic_ids))
    recipient = Recipient(sub.id, sub.email, sub.name, names, sub.link_key)
    return recipient, topic_ids, sub.max_papers


def build_preview(app: App, email: str, listing_date: date | None = None) -> Prepared:
    """Build the message one subscriber gets for the edition, without touching any state."""
    with app.sessions() as session:
        day = resolve_listing_date(listing_date, session=session)
    edition = Edition(listing_date=day, kind="daily")
    preparer = make_preparer(app, edition, "note")
    recipient, topic_ids, max_papers = _recipient_for(app, email, preparer.papers)
    papers = preparer.papers.for_topics(topic_ids, max_papers)
    return preparer.build(0, 1, recipient, papers)


def send_test_copy(
    app: App, to: str, listing_date: date | None = None, *, force: bool = False
) -> SendResult:
    """Send one copy of the edition to any address; the edition's state is untouched.

    A subscriber's address gets their own digest; any other address gets the day's best papers.
    An address the product cannot mail (see mailable_email) is refused, and a suppressed one
    unless forced.
    """
    to = mailable_email(to)
    with app.sessions() as session:
        check_test_recipient(to, session=session, force=force)
    with app.sessions() as session:
        day = resolve_listing_date(listing_date, session=session)
    preparer = make_preparer(app, Edition(listing_date=day, kind="daily"), "note")
    try:
        recipient, topic_ids, max_papers = _recipient_for(app, to, preparer.papers)
        papers = preparer.papers.for_topics(topic_ids, max_papers)
    except NotFound:
        recipient = Recipient(subscriber_id=0, email=to, name="", topics=())
        papers = preparer.papers.all_papers(app.settings.default_max_papers)
    prepared = preparer.build(0, 1, recipient, papers)
    result = send_one(app.settings.transport, prepared.message)
    if result.outcome != Outcome.SENT:
        raise TransportError(f"test copy to {to} not sent: {result.reply}")
    return result
