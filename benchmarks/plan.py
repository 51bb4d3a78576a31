"""Planning benchmark: time set-based planning of one edition for N subscribers.

Usage: python benchmarks/plan.py [--subscribers 1000000] [--database URL]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.core.app import App  # noqa: E402
from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.models import Paper, PaperTopic, Subscriber, Subscription, Topic  # noqa: E402
from newsletter.editions.planning import get_or_create_edition, plan_edition  # noqa: E402

DAY = date(2026, 11, 27)
TOPICS = 20
CHUNK = 50_000


def populate(app: App, n: int, seed: int = 1) -> None:
    """Insert 20 topics, 50 matched papers and n confirmed subscribers with 1-4 topics each."""
    rnd = random.Random(seed)
    with app.engine.begin() as conn:
        conn.execute(
            insert(Topic),
            [
                {
                    "slug": f"t{i}",
                    "name": f"Topic {i}",
                    "description": "",
                    "keywords": [],
                    "categories": [],
                    "created_at": _now(),
                }
                for i in range(1, TOPICS + 1)
            ],
        )
        conn.execute(
            insert(Paper),
            [
                {
                    "title": f"Paper {i}",
                    "title_key": f"paper {i}",
                    "abstract": "",
                    "authors": [],
                    "keywords": [],
                    "categories": [],
                    "listing_date": DAY,
                    "source": "bench",
                    "created_at": _now(),
                    "updated_at": _now(),
                }
                for i in range(1, 51)
            ],
        )
        # Topic 20 has no paper today: its only-followers are skipped.
        conn.execute(
            insert(PaperTopic),
            [
                {"paper_id": p, "topic_id": (p % (TOPICS - 1)) + 1, "score": 1.5, "evidence": []}
                for p in range(1, 51)
            ],
        )
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        subs, links = [], []
        for i in range(start + 1, stop + 1):
            subs.append(
                {
                    "id": i,
                    "email": f"s{i}@example.com",
                    "name": "",
                    "status": "confirmed",
                    "timezone": "UTC",
                    "delivery_hour": 8,
                    "max_papers": 10,
                    "frequency": "daily",
                    "weekly_day": 0,
                    "consent_source": "bench",
                    "consent": {},
                    "created_at": _now(),
                }
            )
            for t in rnd.sample(range(1, TOPICS + 1), rnd.randint(1, 4)):
                links.append({"subscriber_id": i, "topic_id": t, "created_at": _now()})
        with app.engine.begin() as conn:
            conn.execute(insert(Subscriber), subs)
            conn.execute(insert(Subscription), links)


def _now():
    from newsletter.core.models import utcnow

    return utcnow()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database or f"sqlite:///{tmp}/plan.db"
        app = App(load_settings(env={}, database_url=url, var_dir=tmp, secret_key="bench" * 8))
        app.ensure_schema()
        t0 = time.perf_counter()
        populate(app, args.subscribers)
        if app.engine.dialect.name == "postgresql":
            # What autovacuum does after a bulk load: give the planner real statistics.
            with app.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        t1 = time.perf_counter()
        with app.transaction() as session:
            edition = get_or_create_edition(DAY, session=session)
            stats = plan_edition(edition, session=session)
        t2 = time.perf_counter()
        print("| database | subscribers | populate s | plan s | pending | skipped |")
        print("|---|---:|---:|---:|---:|---:|")
        print(
            f"| {app.engine.dialect.name} | {args.subscribers:,} | {t1 - t0:.1f} | "
            f"{t2 - t1:.2f} | {stats.pending:,} | {stats.skipped:,} |"
        )
        app.close()


if __name__ == "__main__":
    main()
