"""The audience services that `newsletter subscribers`, `suppressions` and pages call.

Each opens its own session: writes in one transaction that commits on success, reads
without the write lock. Subscribers come back as `subscriber_to_dict` gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

from newsletter.audience import backup, csv_format, csv_import, invitations, signup, suppressions
from newsletter.audience import subscribers as store
from newsletter.audience.invitations import Invitations
from newsletter.audience.limits import Limits
from newsletter.core.app import App
from newsletter.core.models import Frequency
from newsletter.matching.seeds import Seed, replace_seeds


@dataclass(frozen=True)
class Added:
    """A subscriber as stored once added, and the confirmation email it queued, if asked."""

    subscriber: dict[str, Any]
    invitations: Invitations


@dataclass(frozen=True)
class Imported:
    """What an import did, and whom it asked to confirm (with `send_confirmation`)."""

    report: csv_import.ImportReport | backup.JsonImportReport
    invitations: Invitations


def add_subscriber(
    app: App,
    email: str,
    *,
    seeds: Sequence[Seed] | None = None,
    send_confirmation: bool = False,
    frequency: Frequency | str | None = None,
    weekly_day: int | str | None = None,
    paused: bool | None = None,
    **fields: Any,
) -> Added:
    """Add one subscriber with their own papers; with `send_confirmation`, queue the email a
    sign-up on the web gets (send it with `mail_queue.send_queued`).

    `fields`: the other parts `subscribers.add_subscriber` takes (name, topics, interests,
    confirmed, timezone, hour, max_papers); unset ones take the settings' defaults.
    """
    asked = Invitations()
    with app.transaction() as session:
        sub = store.add_subscriber(
            session=session,
            email=email,
            frequency=frequency or Frequency.DAILY,
            weekly_day=weekly_day or 0,
            paused=bool(paused),
            defaults=store.Defaults.from_settings(app.settings),
            **fields,
        )
        if seeds is not None:
            replace_seeds(sub.id, seeds, session=session)
            session.refresh(sub)
        if send_confirmation:
            asked = invitations.invite([sub.email], session=session, settings=app.settings)
        return Added(store.subscriber_to_dict(sub), asked)


def edit_subscriber(
    app: App, email: str, *, seeds: Sequence[Seed] | None = None, **changes: Any
) -> dict[str, Any]:
    """Change the parts given of a subscriber (None keeps one); `seeds` replace their own
    papers ([] forgets them, None keeps them). Return the subscriber as stored."""
    with app.transaction() as session:
        sub = store.edit_subscriber(email, session=session, **changes)
        if seeds is not None:
            replace_seeds(sub.id, seeds, session=session)
            session.refresh(sub)
        return store.subscriber_to_dict(sub)


def import_subscribers(
    app: App,
    source: str | IO[bytes],
    *,
    fmt: str = "csv",
    status: str = "confirmed",
    skip_missing_papers: bool = False,
    send_confirmation: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Imported:
    """Import a CSV file (new subscribers get `status`) or a JSON backup, in one transaction;
    with `send_confirmation`, queue the email for the file's subscribers left pending."""
    asked = Invitations()
    with app.transaction() as session:
        report: csv_import.ImportReport | backup.JsonImportReport
        if fmt == "json":
            report = backup.import_json(
                source, session=session, skip_missing_papers=skip_missing_papers,
                on_progress=on_progress, meaning=app.settings.match_neighbours,
            )  # fmt: skip
        else:
            report = csv_import.import_csv(
                source, session=session, status=status, on_progress=on_progress,
                defaults=store.Defaults.from_settings(app.settings),
            )  # fmt: skip
        if send_confirmation:
            asked = invitations.invite_pending(session=session, settings=app.settings,
                                               among=report.subscriber_ids)  # fmt: skip
    return Imported(report, asked)


def export_subscribers(app: App, out: IO[str], *, fmt: str = "csv") -> int:
    """Write every subscriber to `out` as the JSON backup or the CSV list; return the count."""
    write = backup.export_json if fmt == "json" else csv_format.export_csv
    with app.reading() as session:
        return write(out, session=session)


def list_subscribers(
    app: App, *, status: str | None = None, topic: str | None = None
) -> list[dict[str, Any]]:
    """Return the subscribers by address, only those with a status or of a topic if given."""
    with app.reading() as session:
        found = store.list_subscribers(session=session, status=status, topic=topic)
        return [store.subscriber_to_dict(s) for s in found]


def subscriber(app: App, email: str, *, consent: bool = False) -> dict[str, Any]:
    """Return one subscriber (NotFound when none has this address), with the consent record
    if asked."""
    with app.reading() as session:
        found = store.get_subscriber(email, session=session)
        return store.subscriber_to_dict(found, consent=consent)


def remove_subscriber(app: App, email: str) -> str:
    """Delete a subscriber with their topic choices and deliveries; return their address."""
    with app.transaction() as session:
        return store.remove_subscriber(email, session=session).email


def invite(app: App, emails: Iterable[str] | None = None) -> Invitations:
    """Queue the confirmation email for the named pending subscribers (all or none), or with
    no names for every pending one who may be asked now."""
    with app.transaction() as session:
        if emails is None:
            return invitations.invite_pending(session=session, settings=app.settings)
        return invitations.invite(list(emails), session=session, settings=app.settings)


def purge_pending(app: App, days: int | None = None) -> tuple[int, int]:
    """Delete sign-ups unconfirmed for `days` (default: pending_max_age_days) and stale rate
    limits; return how many sign-ups went, and the days."""
    if days is None:
        days = Limits.from_settings(app.settings).pending_max_age_days
    with app.transaction() as session:
        return signup.purge_pending(session=session, older_than=timedelta(days=days)), days


def list_suppressions(app: App, *, reason: str | None = None) -> list[dict[str, Any]]:
    """Return the suppressed addresses, newest first; only reasons starting with `reason`."""
    with app.reading() as session:
        rows = suppressions.list_suppressions(session=session, reason=reason)
        return [suppressions.suppression_to_dict(r) for r in rows]


def suppress(app: App, email: str, reason: str = suppressions.OPERATOR_REASON) -> dict[str, Any]:
    """Suppress an address; return its row, with `created` False when it already was."""
    with app.transaction() as session:
        row, created = suppressions.add_suppression(email, reason, session=session)
        return {**suppressions.suppression_to_dict(row), "created": created}


def unsuppress(app: App, email: str) -> dict[str, Any]:
    """Take an address off the suppression list (NotFound when it is not on it); return the
    row it had."""
    with app.transaction() as session:
        row = suppressions.remove_suppression(email, session=session)
        return suppressions.suppression_to_dict(row)
