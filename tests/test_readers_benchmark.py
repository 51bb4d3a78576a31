"""The readers benchmark on a slice of the multi-field set: every kind of reader through the
real selection, and nothing it scores was seen by a reader's first round or own papers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sqlalchemy import select

from newsletter.core.models import Paper, ReaderSeed

REPO = Path(__file__).resolve().parent.parent
NEW_KINDS = ("own topic + 3 seeds", "sentence", "sentence + 3 seeds", "field sentence",
             "field sentence + 3 seeds")  # fmt: skip


def _benchmark():
    spec = importlib.util.spec_from_file_location("bench_readers", REPO / "benchmarks/readers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_readers_of_sentences_seeds_and_first_rounds_are_scored_on_days_never_tuned_on(
    tmp_path: Path, database_url: str
) -> None:
    bench = _benchmark()
    world = bench.build_world(tmp_path, "fields", 10, False, sample=40, kinds=NEW_KINDS,
                              database_url=database_url)  # fmt: skip
    try:
        with world.app.reading() as s:
            day_of = dict(s.execute(select(Paper.id, Paper.listing_date)).all())
            own = set(s.scalars(select(ReaderSeed.arxiv_id)))
            own_days = set(s.scalars(select(Paper.listing_date).where(Paper.arxiv_id.in_(own))))
        tuning_days = set(world.days[: world.scored.start])
        rounds = [pid for picks in world.first_rounds.values() for pid in picks]
        assert world.scored.start > 0 and rounds and own
        assert {day_of[pid] for pid in rounds} <= tuning_days  # chosen before the scored days
        assert own_days <= tuning_days
        rows = [(m, bench.simulate(world, m)) for m in bench.MODES]
        lines = bench.table(world, rows)
    finally:
        world.app.close()
    found = {tuple(c.strip() for c in line.split("|")[1:4]): line for line in lines[2:]}
    for kind in NEW_KINDS:
        for mode in bench.MODES:
            line = found[(kind, "10", mode)]
            figures = [float(c) for c in line.split("|")[4:9]]
            assert all(0.0 <= x <= 1.0 for x in figures), line
    shown = sum(bench.summed(rows[0][1], kind, 10, world.scored).shown for kind in NEW_KINDS)
    assert shown > 0  # readers with no topic got papers by their sentence
