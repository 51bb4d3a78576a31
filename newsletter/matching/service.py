"""The topic services that `newsletter topics` and pages call, and readers' votes as
`feedback list` shows them: each opens its own session.

Writes run in one transaction; checks, which may run the sentence model, read without the
write lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from newsletter.core.app import App
from newsletter.matching import feedback, stored_profiles, topics
from newsletter.matching.check import CHECK_DAYS, TopicCheck, check_topics, warnings_of
from newsletter.matching.matched import MATCH_DAYS, matched_count
from newsletter.matching.matches import MatchStats, listed_paper_ids, match_papers
from newsletter.matching.unmatched import Unmatched, unmatched_papers

# Reports (papers scored so far, papers to score) as matching goes.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TopicFit:
    """How a topic just added or edited fits the recent papers, as `topics check` counts."""

    slug: str
    changed: bool  # False: an edit that gave every part as it was (nothing matched again)
    matched: int  # papers it matches among the listings of the last `days` days
    days: int
    warnings: list[str] = field(default_factory=list)


def add_topic(app: App, slug: str, name: str, **definition: Any) -> TopicFit:
    """Add a topic, match it against the stored papers and say how it fits.

    `definition`: the other parts `topics.add_topic` takes (description, keywords, ...).
    """
    with app.transaction() as session:
        topic = topics.add_topic(session=session, slug=slug, name=name, **definition,
                                 **_match_settings(app))  # fmt: skip
        return _fit(app, topic.slug, session=session)


def edit_topic(app: App, slug: str, **changes: Any) -> TopicFit:
    """Change the parts given of a topic (None keeps one), match it again and say how it fits."""
    with app.transaction() as session:
        topic, changed = topics.edit_topic(slug, session=session, **changes,
                                           **_match_settings(app))  # fmt: skip
        if not changed:
            matched = matched_count(topic.id, session=session, days=MATCH_DAYS)
            return TopicFit(topic.slug, changed=False, matched=matched, days=MATCH_DAYS)
        return _fit(app, topic.slug, session=session)


def _fit(app: App, slug: str, *, session: Session) -> TopicFit:
    [check] = check_topics(
        session=session, slug=slug, days=MATCH_DAYS, threshold=app.settings.match_threshold
    )
    return TopicFit(slug, True, check.matched, MATCH_DAYS, warnings_of(check))


def _match_settings(app: App) -> dict[str, Any]:
    return {"threshold": app.settings.match_threshold, "neighbours": app.settings.match_neighbours}


def import_topics(app: App, path: str | Path) -> topics.ImportStats:
    """Create or update the topics of a TOML file by slug, then match the changed ones."""
    with app.transaction() as session:
        return topics.import_topics(path, session=session, **_match_settings(app))


def check(
    app: App, slug: str | None = None, *, days: int = CHECK_DAYS, papers: bool = False
) -> list[TopicCheck]:
    """Check every topic (or the one named: NotFound when unknown) against the papers of the
    last `days` listing days, with suggestions; with `papers`, each matched paper and why."""
    with app.reading() as session:  # the sentence model runs here: no write lock is held
        if slug is not None:
            topics.get_topic(slug, session=session)
        return check_topics(
            session=session,
            slug=slug,
            days=days,
            threshold=app.settings.match_threshold,
            suggest=True,
            neighbours=app.settings.match_neighbours,
            papers=papers,
        )


def unmatched(app: App, *, days: int = MATCH_DAYS) -> Unmatched:
    """Return the recent papers no topic matched, with the terms that set them apart."""
    with app.reading() as session:
        return unmatched_papers(session=session, days=days)


def list_topics(app: App, *, days: int = MATCH_DAYS) -> list[topics.TopicInfo]:
    """Return every topic with its subscriber and matched-paper counts, by slug."""
    with app.reading() as session:
        return topics.list_topics(session=session, days=days)


def count_subscribers(app: App, slug: str) -> int:
    """Return how many subscribers chose the topic (NotFound when it does not exist)."""
    with app.reading() as session:
        return topics.count_subscribers(slug, session=session)


def remove_topic(app: App, slug: str) -> int:
    """Delete a topic with its matches and subscriptions; return how many subscribers lost it."""
    with app.transaction() as session:
        return topics.remove_topic(slug, session=session)


def match_again(
    app: App, listing_date: date | None = None, *, progress: Progress | None = None
) -> MatchStats:
    """Match every stored paper (or those of one listing date) against every topic again."""
    with app.transaction() as session:
        ids = listed_paper_ids(session=session, listing_date=listing_date)
        done = 0

        def scored(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, len(ids))

        if progress is not None:
            progress(0, len(ids))
        return match_papers(
            session=session,
            paper_ids=None if listing_date is None else ids,
            threshold=app.settings.match_threshold,
            progress=scored,
            neighbours=app.settings.match_neighbours,
        )


def votes(app: App, *, email: str | None = None) -> list[feedback.ListedVote]:
    """Return readers' votes (or one reader's), newest first."""
    with app.reading() as session:
        return feedback.list_votes(session=session, email=email)


def profile_counts(app: App) -> stored_profiles.ProfileCounts:
    """Return how readers' stored profiles stand (current, missing, of another model)."""
    with app.reading() as session:
        return stored_profiles.profile_counts(session=session)


def rebuild_profiles(
    app: App,
    *,
    on_start: Callable[[int], None] | None = None,
    on_each: Callable[[int], None] | None = None,
) -> stored_profiles.ProfileCounts:
    """Write the missing and outdated stored profiles; see `stored_profiles.rebuild_profiles`."""
    return stored_profiles.rebuild_profiles(app, on_start=on_start, on_each=on_each)
