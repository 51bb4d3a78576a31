"""The demo: a full day of the product on the embedded defaults, without network or servers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import select

from newsletter.core.app import App
from newsletter.core.models import Subscriber, SubscriberStatus, Subscription, Topic, utcnow
from newsletter.core.resources import shipped_dir
from newsletter.core.wording import plural
from newsletter.delivery.service import SendReport, build_preview, send
from newsletter.matching.topics import import_topics
from newsletter.papers.fetch import store_records
from newsletter.papers.ingest import today_utc
from newsletter.papers.sources.files import read_paper_file

# A real Hugging Face listing: ids, authors, upvotes, code links and TL;DRs, so the demo's
# cards show everything a card can. (The text of the web page, hf-daily-papers-page.txt,
# has titles and abstracts only; it stays importable with `papers import`.)
SEED_LISTING = "hf-daily-papers.json"
SEED_PAGE = "hf-daily-papers-page.txt"
SEED_TOPICS = "topics.toml"
# (email, name, topic slugs, time zone): people with different interests.
DEMO_SUBSCRIBERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("ada@example.org", "Ada", ("llm", "nlp"), "Europe/London"),
    ("grace@example.org", "Grace", ("computer-vision", "multimodal"), "America/New_York"),
    ("alan@example.org", "Alan", ("automl", "efficient-ml"), "Asia/Tokyo"),
    ("katherine@example.org", "Katherine", ("time-series", "ml-theory"), "America/Los_Angeles"),
)


@dataclass
class DemoReport:
    listing_date: date
    papers: int
    topics: int
    matches: int
    send: SendReport | None = None
    digests: dict[str, list[str]] = field(default_factory=dict)  # email -> paper titles
    outbox: str = ""
    example_file: str | None = None


def run_demo(
    app: App, *, day: date | None = None, echo: Callable[[str], None] = print
) -> DemoReport:
    """Import the seed day and topics, add demo subscribers, match, and send into the outbox."""
    day = day or today_utc()
    app.ensure_schema()
    seeds = shipped_dir("seeds")
    records = read_paper_file(seeds / SEED_LISTING, fmt="hf-json", listing_date=day)
    with app.transaction() as session:
        topics = import_topics(seeds / SEED_TOPICS, session=session)
        _add_demo_subscribers(session)
    stored = store_records(app, records, day)
    matches = plural(stored.topic_matches, "topic match", "topic matches")
    papers = plural(stored.papers, "paper")
    echo(f"imported {papers} of a real Hugging Face listing for {day}; {matches}")
    report = DemoReport(day, stored.papers, len(topics.slugs), stored.topic_matches)
    report.send = send(app, day)
    report.digests = _digests(app, day)
    report.outbox, report.example_file = _outbox(app)
    return report


def _add_demo_subscribers(session) -> None:  # noqa: ANN001
    topics = {t.slug: t.id for t in session.scalars(select(Topic))}
    known = set(session.scalars(select(Subscriber.email)))
    for email, name, slugs, tz in DEMO_SUBSCRIBERS:
        if email in known:
            continue
        sub = Subscriber(
            email=email,
            name=name,
            status=SubscriberStatus.CONFIRMED,
            timezone=tz,
            consent_source="demo",
            confirmed_at=utcnow(),
        )
        session.add(sub)
        session.flush()
        for slug in slugs:
            session.add(Subscription(subscriber_id=sub.id, topic_id=topics[slug]))


def _digests(app: App, day: date) -> dict[str, list[str]]:
    """Return the titles each demo subscriber receives, as the send chose them."""
    return {
        email: [p.title for p in build_preview(app, email, day).papers]
        for email, _, _, _ in DEMO_SUBSCRIBERS
    }


def _outbox(app: App) -> tuple[str, str | None]:
    spec = app.settings.transport
    if not spec.startswith("maildir:"):
        return spec, None
    folder = Path(spec.removeprefix("maildir:")) / "new"
    files = sorted(folder.glob("*"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return str(folder.parent.resolve()), str(files[-1].resolve()) if files else None
