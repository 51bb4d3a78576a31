"""The paper services that `newsletter papers` and pages call, and a reader's own papers as
`subscribers add` and `edit` take them: each opens its own session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from newsletter.core.app import App
from newsletter.matching import feedback
from newsletter.papers import fetch_log
from newsletter.papers import seeds as own_papers
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


def seeds_from_refs(app: App, refs: str) -> own_papers.SeedChoice:
    """Return a seed per arXiv id or DOI of a comma-separated list: the store's paper, else
    arXiv's record; InputError naming the first that nothing finds."""
    with app.reading() as session, own_papers.arxiv_lookup(app.settings) as lookup:
        seeds = own_papers.resolve_refs(
            own_papers.split_refs(refs), session=session, lookup=lookup,
            meaning=app.settings.match_neighbours,  # their vectors, as papers get them
        )  # fmt: skip
    return own_papers.SeedChoice(seeds)


def seeds_from_library(app: App, data: bytes, name: str) -> own_papers.SeedChoice:
    """Read a BibTeX, RIS or CSL-JSON library into seeds, with the entries left out and why."""
    with app.reading() as session, own_papers.arxiv_lookup(app.settings) as lookup:
        return own_papers.seeds_from_library(
            data, name, session=session, lookup=lookup, meaning=app.settings.match_neighbours
        )
