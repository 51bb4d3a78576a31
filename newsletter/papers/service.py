"""The paper services that `newsletter papers` and pages call: each opens its own session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from newsletter.core.app import App
from newsletter.matching import feedback
from newsletter.papers import fetch_log
from newsletter.papers.queries import find_paper, latest_listing_date, list_papers, paper_as_dict


@dataclass(frozen=True)
class Listing:
    """The papers of one listing date, each as `paper_as_dict` gives it with readers' votes."""

    listing_date: date | None  # None: no paper is stored yet
    papers: list[dict[str, Any]]

    @property
    def upvoted(self) -> bool:
        """Tell whether the source counts upvotes (then the papers come most upvoted first)."""
        return any(row["upvotes"] is not None for row in self.papers)


def listing(
    app: App,
    listing_date: date | None = None,
    *,
    topic_slug: str | None = None,
    limit: int | None = None,
) -> Listing:
    """Return the papers of a listing date (default: the newest), with their topics and the
    likes and dislikes readers gave them; only those of a topic, at most `limit`."""
    with app.reading() as session:
        day = listing_date or latest_listing_date(session=session)
        found = []
        if day is not None:
            found = list_papers(session=session, listing_date=day, topic_slug=topic_slug,
                                limit=limit)  # fmt: skip
        rows = [paper_as_dict(p) for p in found]
        votes = feedback.paper_votes([r["id"] for r in rows], session=session)
    for row in rows:
        counted = votes.get(row["id"])
        row["likes"] = counted.likes if counted else 0
        row["dislikes"] = counted.dislikes if counted else 0
    return Listing(day, rows)


def paper(app: App, ref: str) -> dict[str, Any]:
    """Return one paper by database id or arXiv id, with its topics and their evidence."""
    with app.reading() as session:
        return paper_as_dict(find_paper(ref, session=session))


def sources(app: App) -> list[dict[str, Any]]:
    """Return every source with what it offers, its settings and its last fetches."""
    with app.reading() as session:
        return fetch_log.describe_sources(app.settings, session=session)
