"""Readers of every kind: each day's digest, by what they told us, on the labelled sets.

Simulated readers have interests drawn from a labelled set (`--set`: `ml`, tests/labelled;
`fields`, tests/labelled/fields; `astro`, tests/labelled/astro): a paper is in their interest
when it carries the labels they want. The set's papers become a run of listing days: the
papers' own days where the set has them (`fields`: 29 June to 5 July 2010), else paper i on
day i mod DAYS (or consecutive runs with --contiguous). They are matched to the set's topics
by the real matcher, by meaning and words, as ingest matches them (the papers embedded by the
sentence model). Every day each reader gets their digest through the real selection path
(`ReaderSelection.load(...).papers_for`, as `send` chooses papers).

Kinds of reader. Three subscribed to topics: one wants a topic and subscribed to it; one wants
a topic and subscribed to it and one other (the digest is half noise to them); one subscribed
to a topic but wants only its papers that are also of another topic (a narrower interest than
any topic: "diffusion, but only in computer vision"), for every pair of topics sharing enough
papers; and one of their own topic who gave three papers of their own ("own topic + 3
seeds": `--seed-papers`, the first three of the tuning days they want, by arXiv id). Four
subscribed to no topic: they wrote one sentence of interests (stored as `subscribers add
--interests` stores it), for one topic ("sentence") or a whole field of several topics ("field
sentence", where the set groups its topics so), alone or with three papers of their own. The
sentences are in benchmarks/reader_interests.toml, which says how they were written.

What readers do, one column each: nothing ("none"); vote on every paper of every digest ("every
digest": "more like this" when it is in their interest, "less like this" otherwise); or rate
the first round of papers (`matching.first_round`, chosen on the last tuning day from the
papers listed by then, voted on the same way) and nothing more ("first round").

Precision@k (the share of a digest's papers the reader wants) and recall (the share of the
day's papers they want that the digest carries) are micro averages over readers and days; the
table shows the days no tuning looks at: the second half of the days, or the `fields` set's
later part (1 to 5 July; the earlier part is its dev part). The last two columns count only
the papers of the 40% the matcher's weights and ranking_interest_standing were never fitted
on (the held-out hash of benchmarks/matching.py).

Run: `.venv/bin/python benchmarks/readers.py [--set fields] [--days 10] [--contiguous]
[--tune] [--papers N] [--kind KIND ...]`. `--tune` searches the `ranking_*` settings (the
weights of newsletter/ranking), one at a time, on the tuning days only and reports the best
values beside the current ones; `--papers N` keeps N papers spread over the set and `--kind`
some kinds of reader (a quick run). Needs the sentence model; no server: SQLite in a temporary
folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import delete, insert, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import matching  # noqa: E402
from newsletter.audience.subscribers import add_subscriber  # noqa: E402
from newsletter.core.app import App  # noqa: E402
from newsletter.core.config import load_settings  # noqa: E402
from newsletter.core.models import FeedbackVote, Paper, Subscriber, Subscription, Topic  # noqa: E402
from newsletter.editions import readers as digests  # noqa: E402
from newsletter.editions.planning import find_edition, get_or_create_edition  # noqa: E402
from newsletter.matching import feedback, first_round  # noqa: E402
from newsletter.matching.embeddings import EmbeddingsUnavailable, load_encoder  # noqa: E402
from newsletter.matching.matches import embed_papers, match_papers  # noqa: E402
from newsletter.matching.seeds import replace_seeds  # noqa: E402
from newsletter.matching.topics import import_topics  # noqa: E402
from newsletter.papers import seeds as own_papers  # noqa: E402
from newsletter.ranking.weights import RankingWeights  # noqa: E402

INTERESTS = Path(__file__).with_name("reader_interests.toml")
FIRST_DAY = date(2026, 11, 2)
DAYS = 10
KS = (3, 10)  # papers per digest: a short digest, where order matters, and the default
OWN, BROAD, NARROW = "own topic", "topic + another", "part of a topic"
SENTENCE, SEEDED = "sentence", "sentence + 3 seeds"
FIELD, FIELD_SEEDED = "field sentence", "field sentence + 3 seeds"
TOPIC_SEEDED = "own topic + 3 seeds"
KINDS = (OWN, BROAD, NARROW)  # the kinds --tune scores
ALL_KINDS = (OWN, BROAD, NARROW, TOPIC_SEEDED, SENTENCE, SEEDED, FIELD, FIELD_SEEDED)
NONE, EVERY, FIRST = "none", "every digest", "first round"
MODES = (NONE, EVERY, FIRST)
SEEDS = 3
NARROW_SHARED = 4  # papers of both topics, and of the wider one alone, for a narrow reader
ALL, UNFITTED, FITTED = "all papers", "never fitted", "fitted on"
# The ranking weights --tune searches (`ranking_` + name), with the values it tries.
GRID = {
    "votes_weight": (1.0, 2.0, 4.0),
    "drop_similarity": (0.25, 0.35, 2.0),  # 2.0: never dropped for its words
    "discovery_similarity": (0.2, 0.3, 2.0),  # 2.0: no discoveries
    "topic_weight": (0.5, 1.0, 2.0),
    "drop_chance": (0.0, 0.1, 0.2, 0.3),  # 0.0: never dropped for its topics
    "min_votes_to_drop": (3, 5, 10),
}


@dataclass(frozen=True)
class Reader:
    """A simulated reader: the labels a paper they want carries, and what they told us."""

    kind: str
    interest: frozenset[str]
    topics: tuple[str, ...] = ()
    sentence: str = ""
    seeds: tuple[str, ...] = ()  # the arXiv ids of their own papers
    any_of: bool = False  # a field: any of the labels; else all of them

    def wants(self, labels: frozenset[str]) -> bool:
        """Say whether a paper with these labels is in the reader's interest."""
        if self.any_of:
            return bool(self.interest & labels)
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


@dataclass(frozen=True)
class SetPaper:
    """A labelled paper as the benchmark stores it."""

    row: dict
    labels: frozenset[str]
    day: int  # index of its listing day
    held_out: bool  # never fitted on


@dataclass
class World:
    """The database and what the simulation needs to know about it."""

    app: App
    days: list[date]
    scored: range  # the days no tuning looks at (indices of days)
    labels: dict[int, frozenset[str]]  # paper id -> labelled topic slugs
    unfitted: frozenset[int]  # papers of the held-out hash
    topic_ids: dict[str, int]
    readers: list[Reader]
    voters: dict[tuple[Reader, int], int]  # (reader, k) -> subscriber id
    first_rounds: dict[int, tuple[int, ...]] = field(default_factory=dict)  # sid -> paper ids
    dated: bool = False  # the days are the set's own

    @property
    def fitted(self) -> frozenset[int]:
        """Return the papers of the dev hash, which fitting and choices may look at."""
        return frozenset(self.labels) - self.unfitted

    @property
    def tuning(self) -> range:
        return range(self.scored.start)


def load_papers(name: str, days: int, contiguous: bool, sample: int | None) -> tuple[
    list[SetPaper], list[date], int
]:  # fmt: skip
    """Return a set's papers with their listing days, the days, and how many are tuning days."""
    directory = matching.SETS[name]
    raw = json.loads((directory / "papers.json").read_text(encoding="utf-8"))
    labelled = matching.load_labelled(directory)  # the same order: labels, held-out hash
    pairs = list(zip(raw, labelled, strict=True))
    if sample:
        pairs = pairs[:: max(1, len(pairs) // sample)][:sample]
    if all(p.get("date") for p, _ in pairs):  # the set's own listing days
        dates = sorted({date.fromisoformat(p["date"]) for p, _ in pairs})
        earlier = {date.fromisoformat(p["date"]) for p, _ in pairs if p.get("part") == "earlier"}
        tuning = len(earlier)
        assert set(dates[:tuning]) == earlier, "the earlier part must come first"
        index = {d: n for n, d in enumerate(dates)}
        day_of = [index[date.fromisoformat(p["date"])] for p, _ in pairs]
    else:
        dates = [FIRST_DAY + timedelta(days=d) for d in range(days)]
        tuning = days // 2
        per_day = -(-len(pairs) // days)
        day_of = [n // per_day if contiguous else n % days for n in range(len(pairs))]
    papers = [
        SetPaper(p, lp.topics, day, lp.held_out) for (p, lp), day in zip(pairs, day_of, strict=True)
    ]
    return papers, dates, tuning


def make_readers(
    slugs: list[str], papers: list[SetPaper], tuning: int, written: dict
) -> list[Reader]:
    """Return the readers of topics (one per topic, per pair of topics, and the narrow
    readers) and the readers of sentences (per topic and per field, with and without seeds)."""
    labels = [p.labels for p in papers]
    own = [Reader(OWN, frozenset({s}), (s,)) for s in slugs]
    broad = [Reader(BROAD, frozenset({s}), (s, o)) for s in slugs for o in slugs if o != s]
    narrow = [
        Reader(NARROW, frozenset({wide, part}), (wide,))
        for wide in slugs
        for part in slugs
        if part != wide
        and sum(1 for got in labels if {wide, part} <= got) >= NARROW_SHARED
        and sum(1 for got in labels if wide in got and part not in got) >= NARROW_SHARED
    ]
    earlier = sorted((p for p in papers if p.day < tuning), key=lambda p: p.row["key"])

    def own_papers_of(reader: Reader) -> tuple[str, ...]:
        """Return the first SEEDS papers of the tuning days the reader wants (fewer: none)."""
        found = tuple(p.row["arxiv_id"] for p in earlier if reader.wants(p.labels))[:SEEDS]
        return found if len(found) == SEEDS else ()

    seeded = [
        Reader(TOPIC_SEEDED, r.interest, r.topics, seeds=own_papers_of(r))
        for r in own
        if own_papers_of(r)
    ]
    wrote = [Reader(SENTENCE, frozenset({slug}), sentence=text)
             for slug, text in written.get("topics", {}).items()]  # fmt: skip
    wrote += [Reader(FIELD, frozenset(f["labels"]), sentence=f["sentence"], any_of=True)
              for f in written.get("fields", ())]  # fmt: skip
    sentences = []
    for reader in wrote:
        sentences.append(reader)
        if own_papers_of(reader):
            kind = SEEDED if reader.kind == SENTENCE else FIELD_SEEDED
            sentences.append(replace(reader, kind=kind, seeds=own_papers_of(reader)))
    return own + broad + narrow + seeded + sentences


def build_world(folder: Path, name: str, days: int, contiguous: bool,
                sample: int | None = None, kinds: Sequence[str] = ALL_KINDS,
                database_url: str | None = None) -> World:  # fmt: skip
    """Store the tuning days' papers, add the readers and choose their first rounds, then
    store the other days' papers and match them all, as ingest matches a day's papers.

    The database is a new SQLite file in `folder` unless `database_url` names an empty one.
    """
    try:
        encoder = load_encoder()
    except EmbeddingsUnavailable as exc:
        raise SystemExit(f"the sentence model is needed: {exc}") from exc
    settings = load_settings(
        env={},
        database_url=database_url or f"sqlite:///{folder / 'readers.db'}",
        var_dir=str(folder),
        secret_key="bench-secret-of-at-least-32-bytes",
    )
    app = App(settings)
    app.ensure_schema()
    papers, dates, tuning = load_papers(name, days, contiguous, sample)
    for n, paper in enumerate(papers):
        paper.row["arxiv_id"] = _arxiv_id(paper.row["key"], n)
    written = tomllib.loads(INTERESTS.read_text(encoding="utf-8")).get(name, {})
    with app.transaction() as s:
        import_topics(matching.SETS[name] / "topics.toml", session=s)
        topic_ids = {slug: tid for tid, slug in s.execute(select(Topic.id, Topic.slug))}
        for day in dates:
            get_or_create_edition(day, session=s)
    every = make_readers(sorted(topic_ids), papers, tuning, written)
    readers = [r for r in every if r.kind in kinds]
    _store(app, [p for p in papers if p.day < tuning], dates, encoder)
    voters = _add_readers(app, readers, topic_ids)
    rounds = _first_rounds(app, sorted(voters.values()), dates[tuning - 1])
    _store(app, [p for p in papers if p.day >= tuning], dates, encoder)
    with app.reading() as s:
        keys = {key: pid for pid, key in s.execute(select(Paper.id, Paper.title_key))}
    labels = {keys[p.row["key"]]: p.labels for p in papers}
    unfitted = frozenset(keys[p.row["key"]] for p in papers if p.held_out)
    scored = range(tuning, len(dates))
    dated = all(p.row.get("date") for p in papers)
    return World(app, dates, scored, labels, unfitted, topic_ids, readers, voters, rounds, dated)


def _arxiv_id(key: str, n: int) -> str:
    """Return the paper's arXiv id, or a made-up one for a paper known by another key."""
    head, _, tail = key.partition(".")
    if head.isdigit() and tail.isdigit():
        return key
    return f"2611.{n:05d}"  # a month none of the sets' papers is of


def _store(app: App, papers: list[SetPaper], dates: list[date], encoder: object) -> None:
    """Store and embed papers, then match every stored paper (their matches, as ingest's)."""
    with app.transaction() as s:
        result = s.execute(insert(Paper).returning(Paper.id),
                           [_paper_row(p, dates[p.day]) for p in papers])  # fmt: skip
        embed_papers(session=s, paper_ids=list(result.scalars()), encoder=encoder)
        match_papers(session=s, encoder=encoder)


def _paper_row(paper: SetPaper, day: date) -> dict:
    p = paper.row
    return {
        "title": p["title"],
        "title_key": p["key"],  # unique, and maps a row back to its labels
        "abstract": p["abstract"],
        "authors": [],
        "keywords": p["keywords"],
        "categories": p["categories"],
        "arxiv_id": p["arxiv_id"],
        "url_abs": f"https://arxiv.org/abs/{p['arxiv_id']}",
        "listing_date": day,
        "source": "bench",
    }


def _add_readers(app: App, readers: list[Reader], topic_ids: dict[str, int]) -> dict:
    """Add a subscriber per reader and k: readers of topics by rows, readers of sentences
    and seeds as `subscribers add --interests` and `--seed-papers` add them."""
    voters = {}
    with app.transaction() as s:
        for n, (reader, k) in enumerate(itertools.product(readers, KS)):
            email, name = f"r{n}@example.org", f"Reader {n}"
            if reader.sentence:
                sub = add_subscriber(session=s, email=email, name=name, confirmed=True,
                                     interests=reader.sentence, max_papers=k)  # fmt: skip
            else:
                sub = Subscriber(email=email, name=name, max_papers=k)
                s.add(sub)
                s.flush()
                s.execute(
                    insert(Subscription),
                    [{"subscriber_id": sub.id, "topic_id": topic_ids[t]} for t in reader.topics],
                )
            if reader.seeds:
                refs = own_papers.split_refs(",".join(reader.seeds))
                seeds = own_papers.resolve_refs(refs, session=s, lookup=_offline, meaning=True)
                replace_seeds(sub.id, seeds, session=s)
            voters[(reader, k)] = sub.id
    return voters


def _offline(arxiv_ids: Sequence[str]) -> dict:
    raise SystemExit(f"a reader's own paper is not stored: {', '.join(arxiv_ids)}")


def _first_rounds(app: App, subscriber_ids: list[int], day: date) -> dict[int, tuple[int, ...]]:
    """Return each reader's first round of ratings on a day, as the page would show it."""
    rounds = {}
    with app.reading() as s:
        for sid in subscriber_ids:
            start = first_round.starting_point(sid, session=s)
            picks = first_round.choose_first_round(start, session=s, day=day)
            rounds[sid] = tuple(p.paper_id for p in picks)
    return rounds


def simulate(
    world: World, mode: str, *, share: float = 1.0, weights: RankingWeights | None = None
) -> dict[tuple, Counts]:
    """Run every day with readers doing `mode`, ranked by `weights` (default: the shipped
    ones); return counts per (reader kind, k, day index, papers counted).

    With `share` below 1, readers vote on that share of the papers they get, chosen at
    random (the same choice in every run).
    """
    counts: dict[tuple, Counts] = defaultdict(Counts)
    chance = random.Random(7)
    with world.app.transaction() as s:
        s.execute(delete(FeedbackVote))
    for day_index, day in enumerate(world.days):
        if mode == FIRST and day_index == world.scored.start:
            _record(world.app, [(sid, pid, _vote(world, reader, pid))
                                for (reader, _), sid in world.voters.items()
                                for pid in world.first_rounds.get(sid, ())])  # fmt: skip
        with world.app.reading() as s:
            edition = find_edition(day, session=s)
            assert edition is not None
            chooser = digests.ReaderSelection.load(edition, session=s, threshold=1.0,
                                                   weights=weights)  # fmt: skip
        day_ids = chooser.papers.paper_ids()
        votes = []
        for (reader, k), sid in world.voters.items():
            topics = tuple(sorted(world.topic_ids[t] for t in reader.topics))
            shown = [p.paper_id for p in chooser.papers_for(digests.Reader(sid, topics, k))]
            for part, kept in ((ALL, None), (UNFITTED, world.unfitted), (FITTED, world.fitted)):
                seen = [pid for pid in shown if kept is None or pid in kept]
                liked = sum(1 for pid in seen if reader.wants(world.labels[pid]))
                wanted = sum(1 for pid in day_ids if (kept is None or pid in kept)
                             and reader.wants(world.labels[pid]))  # fmt: skip
                counts[(reader.kind, k, day_index, part)].add(Counts(len(seen), liked, wanted))
            if mode == EVERY:
                votes += [(sid, pid, _vote(world, reader, pid))
                          for pid in shown if chance.random() < share]  # fmt: skip
        if votes:
            _record(world.app, votes)
    return counts


def _vote(world: World, reader: Reader, paper_id: int) -> int:
    """Return the vote a reader gives a paper: more like this when they want it."""
    return feedback.MORE if reader.wants(world.labels[paper_id]) else feedback.LESS


def _record(app: App, votes: list[tuple[int, int, int]]) -> None:
    with app.transaction() as s:
        for sid, pid, vote in votes:
            feedback.record_vote(sid, pid, vote, session=s)


def summed(counts: dict, kind: str, k: int, days: range, part: str = ALL) -> Counts:
    """Add up the counts of one reader kind and k over some days."""
    total = Counts()
    for d in days:
        total.add(counts.get((kind, k, d, part), Counts()))
    return total


def tuning_score(counts: dict, days: range) -> float:
    """Return the mean F1 over the topic readers' kinds and k: what --tune maximises."""
    cells = [summed(counts, kind, k, days).f1 for kind in KINDS for k in KS]
    return sum(cells) / len(cells)


def tune(world: World, rounds: int = 2) -> tuple[RankingWeights, float]:
    """Search GRID on the tuning days, one weight at a time (coordinate ascent, `rounds`
    passes); return the best weights (the shipped ones on a tie) and their score."""
    best = RankingWeights()
    best_score = tuning_score(simulate(world, EVERY), world.tuning)
    for _ in range(rounds):
        for name, values in GRID.items():
            for value in values:
                tried = replace(best, **{name: value})
                score = tuning_score(simulate(world, EVERY, weights=tried), world.tuning)
                if score > best_score + 1e-9:
                    best, best_score = tried, score
    return best, best_score


def table(world: World, rows: list[tuple[str, dict]]) -> list[str]:
    """Return the Markdown table of precision@k and recall on the scored days."""
    lines = [
        f"| readers | k | votes | P@k | recall | F1 | P@k, {UNFITTED} | recall |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    kinds = [kind for kind in ALL_KINDS if any(r.kind == kind for r in world.readers)]
    for kind in kinds:
        for k in KS:
            for name, counts in rows:
                c = summed(counts, kind, k, world.scored)
                u = summed(counts, kind, k, world.scored, UNFITTED)
                lines.append(f"| {kind} | {k} | {name} | {c.precision:.3f} | {c.recall:.3f} "
                             f"| {c.f1:.3f} | {u.precision:.3f} | {u.recall:.3f} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="ml", choices=sorted(matching.SETS))
    parser.add_argument("--days", type=int, default=DAYS, help="for a set without dates")
    parser.add_argument("--contiguous", action="store_true", help="days of consecutive papers")
    parser.add_argument("--tune", action="store_true", help="search the constants on tuning days")
    parser.add_argument(
        "--vote-share", type=float, default=1.0, help="share of their papers readers vote on"
    )
    parser.add_argument("--papers", type=int, help="keep this many papers, spread over the set")
    parser.add_argument(
        "--kind", action="append", choices=ALL_KINDS, help="only these readers (repeat)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        kinds = args.kind or ALL_KINDS
        world = build_world(Path(tmp), args.set, args.days, args.contiguous, args.papers, kinds)
        rows = [(NONE, simulate(world, NONE)),
                (EVERY, simulate(world, EVERY, share=args.vote_share)),
                (FIRST, simulate(world, FIRST))]  # fmt: skip
        current = asdict(RankingWeights())
        per_kind = {kind: sum(1 for r in world.readers if r.kind == kind) for kind in ALL_KINDS}
        layout = "the set's own" if world.dated else (
            "consecutive" if args.contiguous else "interleaved")  # fmt: skip
        lines = [
            f"set {args.set}: {len(world.labels)} papers over {len(world.days)} days ({layout}); "
            f"days {world.scored.start + 1}-{world.scored.stop} shown",
            f"readers per k: {', '.join(f'{k} {n}' for k, n in per_kind.items() if n)}",
            f"current weights: {current} (tuning days score "
            f"{tuning_score(rows[1][1], world.tuning):.3f})",
        ]
        if args.tune:
            best, score = tune(world)
            rows.append((f"{EVERY}, tuned", simulate(world, EVERY, weights=best)))
            tuned = {n: v for n, v in asdict(best).items() if v != current[n]}
            lines.append(f"tuned on days 1-{world.tuning.stop}: {tuned} (score {score:.3f})")
        print("\n".join([*lines, "", *table(world, rows)]))
        world.app.close()
    print(f"\n{time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
