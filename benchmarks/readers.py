"""Readers who vote: each day's digest with their votes against the same readers without.

Simulated readers have interests drawn from the labelled set (tests/labelled/): a paper is in
their interest when it carries the labels they want. The 105 labelled papers become a run of
listing days (paper i on day i mod DAYS, or consecutive runs with --contiguous), matched to
the labelled topics by the real matcher. Every day each reader gets their digest through the
real selection path (ReaderSelection.papers_for, as `send` chooses papers) and,
with feedback, votes on every paper in it: "more like this" when it is in their interest,
"less like this" otherwise. Three kinds of reader: one wants a topic and subscribed to it; one
wants a topic and subscribed to it and one other (the digest is half noise to them); one
subscribed to a topic but wants only its papers that are also of another topic (a narrower
interest than any topic: "diffusion, but only in computer vision"), for every pair of topics
sharing enough papers. Precision@k (the share of a digest's papers the reader wants) and
recall (the share of the day's papers they want that the digest carries) are micro averages
over readers and days; the table shows the second half of the days, which no tuning looks at.

Run: `.venv/bin/python benchmarks/readers.py [--days 10] [--contiguous] [--tune]`.
`--tune` searches the constants of newsletter/editions/selection.py, one at a time, on the
first half of the days only and reports the best setting beside the current one. Needs no
server: SQLite in a temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.core.app import App  # noqa: E402
from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.models import FeedbackVote, Paper, Subscriber, Subscription, Topic  # noqa: E402
from newsletter.editions import readers as digests  # noqa: E402
from newsletter.editions import selection  # noqa: E402
from newsletter.editions.selection import EditionPapers  # noqa: E402
from newsletter.matching import feedback  # noqa: E402
from newsletter.matching.matches import match_papers  # noqa: E402
from newsletter.matching.profiles import ReaderSignals  # noqa: E402
from newsletter.matching.topics import import_topics  # noqa: E402

LABELLED = REPO / "tests" / "labelled"
FIRST_DAY = date(2026, 11, 2)
DAYS = 10
KS = (3, 10)  # papers per digest: a short digest, where order matters, and the default
OWN, BROAD, NARROW = "own topic", "topic + another", "part of a topic"
KINDS = (OWN, BROAD, NARROW)
NARROW_SHARED = 4  # papers of both topics, and of the wider one alone, for a narrow reader
# The constants --tune searches, with the values it tries.
GRID = {
    "PERSONAL_WEIGHT": (1.0, 2.0, 4.0),
    "DROP_SIMILARITY": (0.25, 0.35, 2.0),  # 2.0: never dropped for its words
    "DISCOVERY_SIMILARITY": (0.2, 0.3, 2.0),  # 2.0: no discoveries
    "TOPIC_WEIGHT": (0.5, 1.0, 2.0),
    "DROP_CHANCE": (0.0, 0.1, 0.2, 0.3),  # 0.0: never dropped for its topics
    "MIN_VOTES_TO_DROP": (3, 5, 10),
}


@dataclass(frozen=True)
class Reader:
    """A simulated reader: the labels a paper they want carries, and their topics."""

    interest: frozenset[str]
    topics: tuple[str, ...]

    @property
    def kind(self) -> str:
        if len(self.interest) > 1:
            return NARROW
        return OWN if len(self.topics) == 1 else BROAD

    def wants(self, labels: frozenset[str]) -> bool:
        """Say whether a paper with these labels is in the reader's interest."""
        return self.interest <= labels


@dataclass
class Counts:
    """Micro-average counts of digests: papers shown, wanted among them, wanted that day."""

    shown: int = 0
    hits: int = 0
    wanted: int = 0

    def add(self, other: Counts) -> None:
        """Add another's counts to these."""
        self.shown += other.shown
        self.hits += other.hits
        self.wanted += other.wanted

    @property
    def precision(self) -> float:
        return self.hits / self.shown if self.shown else 0.0

    @property
    def recall(self) -> float:
        return self.hits / self.wanted if self.wanted else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class World:
    """The database and what the simulation needs to know about it."""

    app: App
    days: list[date]
    labels: dict[int, frozenset[str]]  # paper id -> labelled topic slugs
    topic_ids: dict[str, int]
    readers: list[Reader]
    voters: dict[tuple[Reader, int], int]  # (reader, k) -> subscriber id


def make_readers(slugs: list[str], labels: list[frozenset[str]]) -> list[Reader]:
    """Return a reader per topic, one per pair of topics, and the narrow readers."""
    own = [Reader(frozenset({s}), (s,)) for s in slugs]
    broad = [Reader(frozenset({s}), (s, other)) for s in slugs for other in slugs if other != s]
    narrow = [
        Reader(frozenset({wide, part}), (wide,))
        for wide in slugs
        for part in slugs
        if part != wide
        and sum(1 for got in labels if {wide, part} <= got) >= NARROW_SHARED
        and sum(1 for got in labels if wide in got and part not in got) >= NARROW_SHARED
    ]
    return own + broad + narrow


def build_world(folder: Path, days: int, contiguous: bool) -> World:
    """Store the labelled papers as listing days, match them, add one voter per reader and k."""
    settings = load_settings(
        env={},
        database_url=f"sqlite:///{folder / 'readers.db'}",
        var_dir=str(folder),
        secret_key="bench-secret-of-at-least-32-bytes",
    )
    app = App(settings)
    app.ensure_schema()
    papers = json.loads((LABELLED / "papers.json").read_text(encoding="utf-8"))
    gold = json.loads((LABELLED / "labels.json").read_text(encoding="utf-8"))
    dates = [FIRST_DAY + timedelta(days=d) for d in range(days)]
    per_day = -(-len(papers) // days)
    with app.transaction() as s:
        rows = [_paper_row(n, p, dates[n // per_day if contiguous else n % days])
                for n, p in enumerate(papers)]  # fmt: skip
        s.execute(insert(Paper), rows)
        import_topics(LABELLED / "topics.toml", session=s)
        match_papers(session=s)
        topic_ids = {slug: tid for tid, slug in s.execute(select(Topic.id, Topic.slug))}
        keys = {pid: key for pid, key in s.execute(select(Paper.id, Paper.title_key))}
    labels = {pid: frozenset(gold[key]) for pid, key in keys.items()}
    readers = make_readers(sorted(topic_ids), list(labels.values()))
    voters = _add_voters(app, readers, topic_ids)
    return World(app, dates, labels, topic_ids, readers, voters)


def _paper_row(n: int, paper: dict, day: date) -> dict:
    return {
        "title": paper["title"],
        "title_key": paper["key"],  # unique, and maps a row back to its labels
        "abstract": paper["abstract"],
        "authors": [],
        "keywords": paper["keywords"],
        "categories": paper["categories"],
        "url_abs": f"https://arxiv.org/abs/bench.{n:05d}",
        "listing_date": day,
        "source": "bench",
    }


def _add_voters(app: App, readers: list[Reader], topic_ids: dict[str, int]) -> dict:
    voters = {}
    with app.transaction() as s:
        for n, (reader, k) in enumerate(itertools.product(readers, KS)):
            sub = Subscriber(email=f"r{n}@example.com", name=f"Reader {n}", max_papers=k)
            s.add(sub)
            s.flush()
            s.execute(
                insert(Subscription),
                [{"subscriber_id": sub.id, "topic_id": topic_ids[t]} for t in reader.topics],
            )
            voters[(reader, k)] = sub.id
    return voters


def simulate(world: World, *, vote: bool, share: float = 1.0) -> dict[tuple[str, int, int], Counts]:
    """Run every day; return counts per (reader kind, k, day index).

    With `share` below 1, readers vote on that share of the papers they get, chosen at
    random (the same choice in every run).
    """
    counts: dict[tuple[str, int, int], Counts] = defaultdict(Counts)
    chance = random.Random(7)
    with world.app.transaction() as s:
        s.execute(delete(FeedbackVote))
    for day_index, day in enumerate(world.days):
        with world.app.reading() as s:
            papers = EditionPapers.load(day, session=s)
            signals = ReaderSignals.load(papers.paper_ids(), session=s) if vote else None
        chooser = digests.ReaderSelection(papers, signals)
        votes = []
        for (reader, k), sid in world.voters.items():
            topics = tuple(sorted(world.topic_ids[t] for t in reader.topics))
            shown = [p.paper_id for p in chooser.papers_for(digests.Reader(sid, topics, k))]
            liked = {pid for pid in shown if reader.wants(world.labels[pid])}
            wanted = [pid for pid in papers.paper_ids() if reader.wants(world.labels[pid])]
            counts[(reader.kind, k, day_index)].add(Counts(len(shown), len(liked), len(wanted)))
            votes += [
                (sid, pid, feedback.MORE if pid in liked else feedback.LESS)
                for pid in shown
                if chance.random() < share
            ]
        if vote:
            _record(world.app, votes)
    return counts


def _record(app: App, votes: list[tuple[int, int, int]]) -> None:
    with app.transaction() as s:
        for sid, pid, vote in votes:
            feedback.record_vote(sid, pid, vote, session=s)


def summed(counts: dict, kind: str, k: int, days: range) -> Counts:
    """Add up the counts of one reader kind and k over some days."""
    total = Counts()
    for d in days:
        total.add(counts.get((kind, k, d), Counts()))
    return total


@contextmanager
def constants(values: dict[str, float]) -> Iterator[None]:
    """Set selection.py's constants for a while."""
    saved = {name: getattr(selection, name) for name in values}
    for name, value in values.items():
        setattr(selection, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(selection, name, value)


def tuning_score(counts: dict, days: range) -> float:
    """Return the mean F1 over reader kinds and k: what --tune maximises."""
    cells = [summed(counts, kind, k, days).f1 for kind in KINDS for k in KS]
    return sum(cells) / len(cells)


def tune(world: World, days: range, rounds: int = 2) -> tuple[dict[str, float], float]:
    """Search GRID on the given days, one constant at a time (coordinate ascent, `rounds`
    passes); return the best constants (the current ones on a tie) and their score."""
    best = {name: getattr(selection, name) for name in GRID}
    best_score = tuning_score(simulate(world, vote=True), days)
    for _ in range(rounds):
        for name, values in GRID.items():
            for value in values:
                setting = {**best, name: value}
                with constants(setting):
                    score = tuning_score(simulate(world, vote=True), days)
                if score > best_score + 1e-9:
                    best, best_score = setting, score
    return best, best_score


def table(without: dict, rows: list[tuple[str, dict]], days: range) -> list[str]:
    """Return the Markdown table of precision@k and recall on the given days."""
    lines = ["| readers | k | votes | P@k | recall | F1 |", "|---|---:|---|---:|---:|---:|"]
    for kind in KINDS:
        for k in KS:
            for name, counts in [("none", without), *rows]:
                c = summed(counts, kind, k, days)
                lines.append(f"| {kind} | {k} | {name} | {c.precision:.3f} | {c.recall:.3f} "
                             f"| {c.f1:.3f} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--contiguous", action="store_true", help="days of consecutive papers")
    parser.add_argument("--tune", action="store_true", help="search the constants on days 1-n/2")
    parser.add_argument(
        "--vote-share", type=float, default=1.0, help="share of their papers readers vote on"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp), args.days, args.contiguous)
        tuning, held_out = range(args.days // 2), range(args.days // 2, args.days)
        without = simulate(world, vote=False)
        current = {name: getattr(selection, name) for name in GRID}
        rows = [("votes", simulate(world, vote=True, share=args.vote_share))]
        lines = [
            f"{len(world.labels)} papers over {args.days} days "
            f"({'consecutive' if args.contiguous else 'interleaved'}), {len(world.readers)} "
            f"readers per k; days {held_out.start + 1}-{held_out.stop} shown",
            f"current constants: {current} (tuning days score "
            f"{tuning_score(rows[0][1], tuning):.3f})",
        ]
        if args.tune:
            best, score = tune(world, tuning)
            with constants(best):
                rows.append(("votes, tuned", simulate(world, vote=True)))
            lines.append(f"tuned on days 1-{tuning.stop}: {best} (score {score:.3f})")
        print("\n".join([*lines, "", *table(without, rows, held_out)]))
        world.app.close()
    print(f"\n{time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
