"""Small builders for rows the tests need, written straight through the models."""

from __future__ import annotations

import time
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core.models import (
    Paper,
    PaperTopic,
    QueuedMail,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Topic,
)

DAY = date(2026, 11, 27)


def topic(session: Session, slug: str, keywords: list[str] | None = None) -> Topic:
    row = Topic(slug=slug, name=slug.replace("-", " ").title(), keywords=keywords or [slug])
    session.add(row)
    session.flush()
    return row


def paper(
    session: Session,
    title: str,
    *,
    day: date = DAY,
    topics: dict[Topic, float] | None = None,
    upvotes: int | None = None,
) -> Paper:
    row = Paper(
        title=title,
        title_key=title.casefold(),
        abstract=f"Abstract of {title}.",
        authors=["Ada Lovelace", "Alan Turing"],
        url_abs=f"https://arxiv.org/abs/{abs(hash(title)) % 10**4:04d}.00001",
        listing_date=day,
        upvotes=upvotes,
        source="test",
    )
    session.add(row)
    session.flush()
    for t, score in (topics or {}).items():
        session.add(PaperTopic(paper_id=row.id, topic_id=t.id, score=score, evidence=["test"]))
    session.flush()
    return row


def subscriber(
    session: Session,
    email: str,
    topics: list[Topic],
    *,
    status: SubscriberStatus = SubscriberStatus.CONFIRMED,
    max_papers: int = 10,
) -> Subscriber:
    row = Subscriber(
        email=email, name=email.split("@")[0].title(), status=status, max_papers=max_papers
    )
    session.add(row)
    session.flush()
    for t in topics:
        session.add(Subscription(subscriber_id=row.id, topic_id=t.id))
    session.flush()
    return row


def bulk_subscribers(session: Session, n: int, topics: list[Topic], *, seed: int = 1) -> None:
    """Insert n confirmed subscribers (s1@example.com ...) with 1-3 of the topics each."""
    import random

    from sqlalchemy import insert

    from newsletter.core.models import utcnow

    rnd = random.Random(seed)
    now = utcnow()
    start = (session.scalar(select(func.max(Subscriber.id))) or 0) + 1
    subs, links = [], []
    for i in range(start, start + n):
        subs.append(
            {
                "id": i,
                "email": f"s{i}@example.com",
                "name": f"Reader {i}",
                "status": "confirmed",
                "timezone": "UTC",
                "delivery_hour": 8,
                "max_papers": 10,
                "frequency": "daily",
                "weekly_day": 0,
                "consent_source": "test",
                "consent": {},
                "created_at": now,
            }
        )
        for t in rnd.sample(topics, rnd.randint(1, min(3, len(topics)))):
            links.append({"subscriber_id": i, "topic_id": t.id, "created_at": now})
    session.execute(insert(Subscriber), subs)
    session.execute(insert(Subscription), links)


def dump_database(engine) -> str:  # noqa: ANN001
    """Return every row of every table, in a stable order: equal dumps, unchanged database."""
    from sqlalchemy import text

    from newsletter.core.models import Base

    lines = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = ", ".join(c.name for c in table.primary_key.columns) or "1"
            for row in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY {order}")):
                lines.append(f"{table.name}: {tuple(row)!r}")
    return "\n".join(lines)


class InlineMailQueue:
    """The web's mail queue handled in the request's own thread: tests read the outbox at once."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    def wake(self) -> None:
        from newsletter.delivery.mail_queue import drain

        drain(self.app)


def mail_queue_emptied(app, timeout: float = 30.0) -> bool:  # noqa: ANN001
    """Wait until every queued sign-up and notice is handled; False on time-out."""
    deadline = time.monotonic() + timeout
    while True:
        # A read-only look between sleeps: never holding a lock the queue needs to finish.
        with app.reading() as session:
            left = session.scalar(select(func.count()).where(QueuedMail.done_at.is_(None)))
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def web_app(app, *, testing: bool = True):  # noqa: ANN001, ANN201
    """Build the Flask app over `app` with the inline mail queue."""
    from newsletter.web import create_app

    flask_app = create_app(app.settings, app=app)
    flask_app.testing = testing
    flask_app.extensions["newsletter_mail_queue"] = InlineMailQueue(app)
    return flask_app
