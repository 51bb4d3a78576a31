"""Evaluate the topic matcher on the labelled real papers against plain substring matching.

Run: `.venv/bin/python benchmarks/matching.py [--threshold 1.0] [--errors] [--speed]`.
Prints Markdown tables of micro precision, recall and F1 on the dev part, the held-out part
and all papers, the spread of F1 over five folds, then one line per topic. `--errors` lists the
dev part's mistakes only (tune on dev; `--errors-all` shows the held-out ones too). Needs no
database. With the embeddings extra installed the matcher admits weak pairs its neighbours
confirm (`newsletter.matching.neighbours`), and the keyword matcher alone is shown beside it.
`--set tests/labelled/astro` scores another field's labelled set instead: all its papers, no
split (such a set reports, it never tunes), and `--errors` lists all its mistakes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.matching.embeddings import (  # noqa: E402
    EmbeddingsUnavailable,
    load_encoder,
    paper_text,
)
from newsletter.matching.matches import PaperText, TopicIndex, TopicMatcher  # noqa: E402
from newsletter.matching.neighbours import score_with_neighbours  # noqa: E402
from newsletter.matching.topics import TopicSpec, parse_topics_toml  # noqa: E402

LABELLED = REPO / "tests" / "labelled"
HELD_OUT_SHARE = 40  # percent of papers, chosen by a hash of the paper key
FOLDS = 5  # a second, independent split of the same hash: five folds of about 21 papers

Pair = tuple[str, str]  # (paper key, topic slug)


@dataclass(frozen=True)
class Labelled:
    key: str
    paper: PaperText
    topics: frozenset[str]

    @property
    def _hash(self) -> int:
        return int(hashlib.sha1(self.key.encode()).hexdigest(), 16)

    @property
    def held_out(self) -> bool:
        return self._hash % 100 < HELD_OUT_SHARE

    @property
    def fold(self) -> int:
        return self._hash // 100 % FOLDS


@dataclass(frozen=True)
class Scores:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_topics(path: Path = LABELLED / "topics.toml") -> list[TopicSpec]:
    """Read the labelled topics with the same parser as `topics import`."""
    return parse_topics_toml(path.read_text(encoding="utf-8"), str(path))


def load_labelled(directory: Path = LABELLED) -> list[Labelled]:
    """Read papers.json and labels.json into labelled papers."""
    papers = json.loads((directory / "papers.json").read_text(encoding="utf-8"))
    labels = json.loads((directory / "labels.json").read_text(encoding="utf-8"))
    return [
        Labelled(
            key=p["key"],
            paper=PaperText(p["title"], p["abstract"], p["keywords"], p["categories"]),
            topics=frozenset(labels[p["key"]]),
        )
        for p in papers
    ]


Predictor = Callable[[list[TopicSpec], list[Labelled]], set[Pair]]


_VECTORS: dict[tuple[str, ...], Any] = {}


def paper_vectors(papers: list[Labelled]) -> Any | None:
    """Embed the papers as ingest does (once per process); None without the sentence model."""
    keys = tuple(lp.key for lp in papers)
    if keys not in _VECTORS:
        try:
            encoder = load_encoder()
        except EmbeddingsUnavailable:
            return None
        texts = [paper_text(lp.paper.title, lp.paper.abstract) for lp in papers]
        _VECTORS[keys] = encoder.embed(texts)
    return _VECTORS[keys]


def matcher_predictions(
    topics: list[TopicSpec],
    papers: list[Labelled],
    threshold: float = 1.0,
    *,
    neighbours: bool = True,
) -> set[Pair]:
    """Return the (paper, topic) pairs our matcher accepts, the papers being the listing.

    With `neighbours` and the sentence model installed, weak pairs the neighbours confirm too.
    """
    index = TopicIndex([_compile(t) for t in topics])
    texts = [lp.paper for lp in papers]
    vectors = paper_vectors(papers) if neighbours else None
    if vectors is None:
        scored = index.score_listing(texts, threshold)
    else:
        scored = score_with_neighbours(index, texts, vectors, threshold)
    return {
        (lp.key, topics[t].slug)
        for lp, found in zip(papers, scored, strict=True)
        for t, _, _ in found
    }


def _compile(t: TopicSpec, suffix: str = "") -> TopicMatcher:
    return TopicMatcher.compile(
        t.slug + suffix, t.keywords, t.description, t.categories, name=t.name, exclude=t.exclude
    )


def substring_predictions(topics: list[TopicSpec], papers: list[Labelled]) -> set[Pair]:
    """Return the pairs where any keyword occurs in the title or abstract (case-insensitive)."""
    out = set()
    for lp in papers:
        text = (lp.paper.title + " " + lp.paper.abstract).lower()
        for t in topics:
            if any(k.lower() in text for k in t.keywords):
                out.add((lp.key, t.slug))
    return out


def gold(papers: Iterable[Labelled]) -> set[Pair]:
    return {(lp.key, slug) for lp in papers for slug in lp.topics}


def score(predicted: set[Pair], papers: list[Labelled], slug: str | None = None) -> Scores:
    """Micro-averaged counts over the papers (and one topic when slug is given)."""
    keys = {lp.key for lp in papers}
    pred = {p for p in predicted if p[0] in keys and (slug is None or p[1] == slug)}
    want = {p for p in gold(papers) if slug is None or p[1] == slug}
    return Scores(tp=len(pred & want), fp=len(pred - want), fn=len(want - pred))


def _row(name: str, s: Scores) -> str:
    return (
        f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.tp} | {s.fp} | {s.fn} |"
    )


HEADER = "| {} | precision | recall | F1 | TP | FP | FN |\n|---|---|---|---|---|---|---|"


def folds(predicted: set[Pair], papers: list[Labelled]) -> tuple[float, float, float]:
    """Return the mean, standard deviation and minimum of F1 over the folds."""
    f1s = [score(predicted, [p for p in papers if p.fold == k]).f1 for k in range(FOLDS)]
    mean = sum(f1s) / len(f1s)
    sd = (sum((f - mean) ** 2 for f in f1s) / (len(f1s) - 1)) ** 0.5
    return mean, sd, min(f1s)


def report(threshold: float = 1.0, errors: str = "") -> str:
    """Build the Markdown report on the labelled set of our own field."""
    topics, papers = load_topics(), load_labelled()
    parts = {
        "dev": [p for p in papers if not p.held_out],
        "held-out": [p for p in papers if p.held_out],
        "all": papers,
    }
    matchers = predictions(topics, papers, threshold)
    ours = matchers["matcher"]
    neighbours = "with neighbours" if len(matchers) == 3 else "keywords only: no sentence model"
    lines = [
        f"Labelled papers: {len(papers)} ({len(parts['held-out'])} held out), "
        f"{len(topics)} topics, threshold {threshold}, matcher {neighbours}",
        "",
        HEADER.format("set / matcher"),
    ]
    for part, subset in parts.items():
        for name, predicted in matchers.items():
            lines.append(_row(f"{part} / {name}", score(predicted, subset)))
    lines += ["", f"| {FOLDS}-fold F1 | mean | sd | min |", "|---|---|---|---|"]
    for name, predicted in matchers.items():
        mean, sd, low = folds(predicted, papers)
        lines.append(f"| {name} | {mean:.3f} | {sd:.3f} | {low:.3f} |")
    lines += ["", HEADER.format("topic (all papers) / matcher")]
    for t in topics:
        lines.append(_row(t.slug, score(ours, papers, t.slug)))
    if errors:
        shown = papers if errors == "all" else parts["dev"]
        lines += ["", *_errors(ours, shown, topics, papers)]
    return "\n".join(lines)


def predictions(
    topics: list[TopicSpec], papers: list[Labelled], threshold: float = 1.0
) -> dict[str, set[Pair]]:
    """Return each matcher's pairs: ours, keywords only (with the sentence model), substring."""
    matchers = {"matcher": matcher_predictions(topics, papers, threshold)}
    if paper_vectors(papers) is not None:
        matchers["keywords only"] = matcher_predictions(topics, papers, threshold, neighbours=False)
    matchers["substring"] = substring_predictions(topics, papers)
    return matchers


def report_other_field(directory: Path, threshold: float = 1.0, errors: bool = False) -> str:
    """Build the Markdown report on another field's labelled set: all papers, no split."""
    topics, papers = load_topics(directory / "topics.toml"), load_labelled(directory)
    matchers = predictions(topics, papers, threshold)
    neighbours = "with neighbours" if len(matchers) == 3 else "keywords only: no sentence model"
    lines = [
        f"Labelled papers of {directory.name}: {len(papers)}, {len(topics)} topics, "
        f"threshold {threshold}, matcher {neighbours}",
        "",
        HEADER.format("set / matcher"),
        *(_row(f"all / {name}", score(found, papers)) for name, found in matchers.items()),
        "",
        HEADER.format("topic (all papers) / matcher"),
        *(_row(t.slug, score(matchers["matcher"], papers, t.slug)) for t in topics),
    ]
    if errors:
        lines += ["", *_errors(matchers["matcher"], papers, topics, papers, split=False)]
    return "\n".join(lines)


def _errors(
    predicted: set[Pair],
    papers: list[Labelled],
    topics: list[TopicSpec],
    listing: list[Labelled],
    *,
    split: bool = True,
) -> list[str]:
    frequencies = TopicIndex([_compile(t) for t in topics]).count_keywords(
        lp.paper for lp in listing
    )
    by_slug = {t.slug: TopicIndex([_compile(t)], frequencies) for t in topics}
    index = {lp.key: lp for lp in papers}
    predicted = {p for p in predicted if p[0] in index}
    want = gold(papers)
    out = []
    for kind, pairs in (("FP", predicted - want), ("FN", want - predicted)):
        for key, slug in sorted(pairs):
            lp = index[key]
            found = by_slug[slug].score(lp.paper, threshold=0.0)
            s, ev = (found[0][1], found[0][2]) if found else (0.0, [])
            part = ("held-out " if lp.held_out else "dev ") if split else ""
            out.append(f"{kind} {part}{slug} {key} {s:.2f} {lp.paper.title[:70]!r} {ev}")
    return out


def speed(papers: int = 10_000, topics: int = 50) -> str:
    """Time scoring papers x topics (the papers being the listing whose keywords are counted).

    With the sentence model, the neighbours' step is timed too (on stored vectors: each copy
    of a labelled paper has its vector), and embedding itself is timed apart, per paper.
    """
    specs, labelled = load_topics(), load_labelled()
    vectors = paper_vectors(labelled)
    start, cpu = time.perf_counter(), time.process_time()
    index = TopicIndex(
        [_compile(t, f"-{i}") for i in range(topics // len(specs) + 1) for t in specs][:topics]
    )
    # Fresh objects: nothing a paper computes for itself is reused from an earlier copy.
    corpus = [
        dataclasses.replace(
            labelled[i % len(labelled)].paper,
            title=f"{i} " + labelled[i % len(labelled)].paper.title,
        )
        for i in range(papers)
    ]
    if vectors is None:
        found = index.score_listing(corpus, 1.0)
    else:
        copies = vectors[[i % len(labelled) for i in range(papers)]]
        found = score_with_neighbours(index, corpus, copies)
    hits = sum(map(len, found))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    # CPU time as well: on a shared machine the wall clock also measures the neighbours.
    how = "keywords only" if vectors is None else "with neighbours"
    line = f"{papers} papers x {topics} topics, {how}: {elapsed:.1f}s ({cpu:.1f}s CPU"
    line += f", {hits} matches)"
    if vectors is not None:
        line += "\n" + _embedding_speed(labelled)
    return line


def _embedding_speed(labelled: list[Labelled]) -> str:
    """Time embedding the labelled papers afresh, as ingest does once per paper."""
    encoder = load_encoder()
    texts = [paper_text(lp.paper.title, lp.paper.abstract) for lp in labelled]
    start, cpu = time.perf_counter(), time.process_time()
    encoder.embed(texts)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    each = 1000 / len(texts)
    return f"embedding (at ingest): {elapsed * each:.0f} ms per paper ({cpu * each:.0f} ms CPU)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--errors", action="store_true", help="list the dev part's mistakes")
    parser.add_argument("--errors-all", action="store_true", help="list all mistakes")
    parser.add_argument("--speed", action="store_true", help="also time 10,000 x 50 pairs")
    parser.add_argument(
        "--set", type=Path, help="another field's labelled set, e.g. tests/labelled/astro"
    )
    args = parser.parse_args(argv)
    errors = "all" if args.errors_all else "dev" if args.errors else ""
    if args.set is not None:
        print(report_other_field(args.set, args.threshold, bool(errors)))
        return 0
    print(report(args.threshold, errors))
    if args.speed:
        print("\n" + speed())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
