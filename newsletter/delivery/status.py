"""What `newsletter status` shows: an edition's deliveries, and what needs the operator."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from newsletter.bounces.process import edition_health
from newsletter.core.app import App
from newsletter.core.errors import NotFound
from newsletter.delivery import mail_queue
from newsletter.delivery.service import edition_status
from newsletter.editions.planning import find_edition, resolve_listing_date
from newsletter.matching.check import disliked_topics, quiet_topics
from newsletter.matching.matches import matching_mode

# The keys of `StatusReport.edition` that are not counts of deliveries per status.
NOT_COUNTS = frozenset({"date", "planned", "health", "votes", "guard"})


@dataclass(frozen=True)
class StatusReport:
    """An edition's state beside the instance's: quiet and disliked topics, the mail queue,
    how topics are matched."""

    edition: dict[str, Any]  # `service.edition_status`: date, planned, counts, health, ...
    quiet_topics: list[str]
    disliked_topics: list[dict[str, Any]]
    mail_queue: dict[str, Any]
    by_meaning: bool
    matching: str  # how topics are matched here, or why not by meaning

    @property
    def counts(self) -> dict[str, int]:
        """Return the edition's deliveries per status, in the order of the statuses."""
        return {k: v for k, v in self.edition.items() if k not in NOT_COUNTS}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as `status --json` prints it."""
        return {
            **self.edition,
            "quiet_topics": self.quiet_topics,
            "disliked_topics": self.disliked_topics,
            "mail_queue": self.mail_queue,
            "matching": {"by_meaning": self.by_meaning, "how": self.matching},
        }


def status_report(
    app: App, listing_date: date | None = None, *, queue: dict[str, Any] | None = None
) -> StatusReport:
    """Gather the edition's status (default: the newest listing's) and the instance's.

    `queue` is the mail queue's state when the caller read it already: it is worth showing
    before any listing exists, when the edition's status fails.
    """
    edition = edition_status(app, listing_date)
    with app.reading() as session:
        quiet = quiet_topics(session=session)
        disliked = disliked_topics(session=session)
    by_meaning, how = matching_mode(app.settings.match_neighbours)
    return StatusReport(
        edition=edition,
        quiet_topics=quiet,
        disliked_topics=disliked,
        mail_queue=queue if queue is not None else mail_queue.queue_status(app),
        by_meaning=by_meaning,
        matching=how,
    )


def bounce_health(app: App, listing_date: date | None = None) -> dict[str, Any]:
    """Return the bounce and complaint rates of the edition of a date (default: the newest
    listing's), with warnings; NotFound when it has no edition."""
    with app.reading() as session:
        day = resolve_listing_date(listing_date, session=session)
        edition = find_edition(day, session=session)
    if edition is None:
        raise NotFound(f"no edition for {day.isoformat()}")
    return edition_health(app, edition.id)
