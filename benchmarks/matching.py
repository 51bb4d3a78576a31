"""Evaluate the topic matcher on labelled real papers of several fields.

Run: `.venv/bin/python benchmarks/matching.py [--set NAME ...] [--errors] [--speed]`.
Prints, for each labelled set (machine learning: `tests/labelled`; a faculty of science:
`tests/labelled/fields`; astronomy: `tests/labelled/astro`), Markdown tables of micro
precision, recall and F1 on its dev part, its held-out part and all of it, for: plain substring
matching of the topics' keywords, the keyword matcher alone, meaning alone (a pair is in when
its standing among the set's papers reaches one z-score, chosen on the dev parts), the shipped
matcher (every signal, `newsletter.matching.combine`), and the shipped matcher with three
example papers per topic (the topic's earliest papers by arXiv id, or of the set's earlier
part; those papers are then left out of the scoring). Then one line per topic. The listing a
set is judged against is the set itself, as a day's papers are judged against the recent ones.
Weights are fitted on the dev parts only (`benchmarks/fit_matching.py`); the astronomy set is
never fitted on. Needs no database; without the sentence model only keywords are shown.
`--speed` times 10,000 papers x 50 topics (without examples, then with three per topic, each
topic fitting its model), embedding a day of 2,000 papers on one core, and reports the peak
memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.matching import combine  # noqa: E402
from newsletter.matching.embeddings import (  # noqa: E402
    EmbeddingsUnavailable,
    load_encoder,
    paper_text,
)
from newsletter.matching.matches import PaperText, TopicIndex, TopicMatcher  # noqa: E402
from newsletter.matching.meaning import Examples, embed_topics, standing  # noqa: E402
from newsletter.matching.topics import TopicSpec, parse_topics_toml  # noqa: E402

LABELLED = REPO / "tests" / "labelled"
SETS = {"ml": LABELLED, "fields": LABELLED / "fields", "astro": LABELLED / "astro"}
FITTED_ON = ("ml", "fields")  # their dev parts; astronomy is only ever reported
HELD_OUT_SHARE = 40  # percent of papers, chosen by a hash of the paper key
FOLDS = 5  # a second, independent split of the same hash
EXAMPLES = 3
MEANING_ONLY_Z = 1.4  # the one standing of "meaning alone", chosen on the dev parts

Pair = tuple[str, str]  # (paper key, topic slug)


@dataclass(frozen=True)
class Labelled:
    key: str
    paper: PaperText
    topics: frozenset[str]
    part: str = ""  # "earlier" or "later" where the set has listing days

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
            part=p.get("part", ""),
        )
        for p in papers
    ]


def load_set(name: str) -> tuple[list[TopicSpec], list[Labelled]]:
    directory = SETS[name]
    return load_topics(directory / "topics.toml"), load_labelled(directory)


_VECTORS: dict[tuple[str, ...], Any] = {}


def embed(texts: list[str]) -> Any | None:
    """Embed texts as ingest does (once per process); None without the sentence model."""
    key = tuple(texts)
    if key not in _VECTORS:
        try:
            encoder = load_encoder()
        except EmbeddingsUnavailable:
            return None
        _VECTORS[key] = encoder.embed(texts)
    return _VECTORS[key]


def paper_vectors(papers: list[Labelled]) -> Any | None:
    return embed([paper_text(lp.paper.title, lp.paper.abstract) for lp in papers])


def topic_vectors(topics: list[TopicSpec]) -> Any | None:
    try:
        load_encoder()
    except EmbeddingsUnavailable:
        return None
    return embed_topics(
        lambda texts: embed(list(texts)), [(t.name, t.description, t.keywords) for t in topics]
    )


def compile_spec(t: TopicSpec, suffix: str = "") -> TopicMatcher:
    return TopicMatcher.compile(
        t.slug + suffix,
        t.keywords,
        t.description,
        t.categories,
        name=t.name,
        exclude=t.exclude,
        whole_categories=t.whole_categories,
    )


def index_of(topics: list[TopicSpec]) -> TopicIndex:
    return TopicIndex([compile_spec(t) for t in topics])


# --- the matchers -------------------------------------------------------------------------


def keyword_predictions(topics: list[TopicSpec], papers: list[Labelled]) -> set[Pair]:
    """Return the pairs the keyword matcher alone accepts."""
    scored = index_of(topics).score_listing([lp.paper for lp in papers], 1.0)
    return _pairs(topics, papers, scored)


def choose_examples(topics: list[TopicSpec], papers: list[Labelled]) -> dict[str, list[str]]:
    """Return EXAMPLES example papers per topic: its earliest (the earlier part first)."""
    order = sorted(papers, key=lambda lp: (lp.part != "earlier", lp.key))
    return {t.slug: [lp.key for lp in order if t.slug in lp.topics][:EXAMPLES] for t in topics}


def signals(
    topics: list[TopicSpec], papers: list[Labelled], examples: dict[str, list[str]] | None = None
) -> combine.Signals | None:
    """Measure the shipped matcher's signals on a set, its papers being the listing."""
    vectors, protos = paper_vectors(papers), topic_vectors(topics)
    if vectors is None or protos is None:
        return None
    found: list[Examples | None] = []
    if examples:
        row = {lp.key: i for i, lp in enumerate(papers)}
        empty = vectors[:0]
        for t in topics:
            keys = examples.get(t.slug, [])
            found.append(Examples(vectors[[row[k] for k in keys]], empty))
    return combine.measure(index_of(topics), [lp.paper for lp in papers], vectors, protos,
                           examples=found)  # fmt: skip


def combined_predictions(
    topics: list[TopicSpec], papers: list[Labelled], examples: dict[str, list[str]] | None = None
) -> set[Pair] | None:
    """Return the pairs the shipped matcher accepts (with examples when given)."""
    measured = signals(topics, papers, examples)
    if measured is None:
        return None
    return _pairs(topics, papers, combine.decide(measured))


def matcher_predictions(topics: list[TopicSpec], papers: list[Labelled]) -> set[Pair]:
    """Return the shipped matcher's pairs: every signal, or keywords alone without the model."""
    found = combined_predictions(topics, papers)
    return keyword_predictions(topics, papers) if found is None else found


def meaning_predictions(topics: list[TopicSpec], papers: list[Labelled]) -> set[Pair] | None:
    """Return the pairs whose standing in meaning alone reaches MEANING_ONLY_Z."""
    vectors, protos = paper_vectors(papers), topic_vectors(topics)
    if vectors is None or protos is None:
        return None
    judged = standing(vectors @ protos.T, [True] * len(papers))
    assert judged is not None
    return {
        (lp.key, t.slug)
        for i, lp in enumerate(papers)
        for j, t in enumerate(topics)
        if judged.z[i, j] >= MEANING_ONLY_Z
    }


def substring_predictions(topics: list[TopicSpec], papers: list[Labelled]) -> set[Pair]:
    """Return the pairs where any keyword occurs in the title or abstract (case-insensitive)."""
    out = set()
    for lp in papers:
        text = (lp.paper.title + " " + lp.paper.abstract).lower()
        for t in topics:
            if any(k.lower() in text for k in t.keywords):
                out.add((lp.key, t.slug))
    return out


def _pairs(topics: list[TopicSpec], papers: list[Labelled], scored: list[Any]) -> set[Pair]:
    return {
        (lp.key, topics[t].slug)
        for lp, found in zip(papers, scored, strict=True)
        for t, _, _ in found
    }


def predictions(topics: list[TopicSpec], papers: list[Labelled]) -> dict[str, set[Pair]]:
    """Return each matcher's pairs, the weakest first, the shipped matcher last."""
    out = {
        "substring": substring_predictions(topics, papers),
        "keywords only": keyword_predictions(topics, papers),
    }
    meaning = meaning_predictions(topics, papers)
    if meaning is not None:
        out["meaning only"] = meaning
        out["matcher"] = combined_predictions(topics, papers) or set()
        out["matcher + 3 examples"] = (
            combined_predictions(topics, papers, choose_examples(topics, papers)) or set()
        )
    return out


# --- scoring ---------------------------------------------------------------------------------


def gold(papers: Iterable[Labelled]) -> set[Pair]:
    return {(lp.key, slug) for lp in papers for slug in lp.topics}


def score(predicted: set[Pair], papers: list[Labelled], slug: str | None = None) -> Scores:
    """Micro-averaged counts over the papers (and one topic when slug is given)."""
    keys = {lp.key for lp in papers}
    pred = {p for p in predicted if p[0] in keys and (slug is None or p[1] == slug)}
    want = {p for p in gold(papers) if slug is None or p[1] == slug}
    return Scores(tp=len(pred & want), fp=len(pred - want), fn=len(want - pred))


def folds(predicted: set[Pair], papers: list[Labelled]) -> tuple[float, float, float]:
    """Return the mean, standard deviation and minimum of F1 over the folds."""
    f1s = [score(predicted, [p for p in papers if p.fold == k]).f1 for k in range(FOLDS)]
    mean = sum(f1s) / len(f1s)
    sd = (sum((f - mean) ** 2 for f in f1s) / (len(f1s) - 1)) ** 0.5
    return mean, sd, min(f1s)


def scored_part(name: str, papers: list[Labelled], examples: dict[str, list[str]]) -> list[Any]:
    """Return the papers a matcher with examples is scored on: all but the examples."""
    used = {k for keys in examples.values() for k in keys}
    return [lp for lp in papers if lp.key not in used]


def _row(name: str, s: Scores) -> str:
    return (
        f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.tp} | {s.fp} | {s.fn} |"
    )


HEADER = "| {} | precision | recall | F1 | TP | FP | FN |\n|---|---|---|---|---|---|---|"


def report_set(name: str, errors: bool = False) -> str:
    """Build the Markdown report of one labelled set."""
    topics, papers = load_set(name)
    matchers = predictions(topics, papers)
    examples = choose_examples(topics, papers)
    parts = {"all": papers}
    if name != "astro":
        parts = {
            "dev": [p for p in papers if not p.held_out],
            "held-out": [p for p in papers if p.held_out],
            "all": papers,
        }
    lines = [
        f"**{name}**: {len(papers)} papers, {len(topics)} topics"
        + ("" if "matcher" in matchers else " (no sentence model: keywords only)"),
        "",
        HEADER.format("part / matcher"),
    ]
    for part, subset in parts.items():
        for matcher, predicted in matchers.items():
            shown = scored_part(name, subset, examples) if "examples" in matcher else subset
            lines.append(_row(f"{part} / {matcher}", score(predicted, shown)))
    best = "matcher" if "matcher" in matchers else "keywords only"
    lines += ["", HEADER.format(f"topic (all papers) / {best}")]
    lines += [_row(t.slug, score(matchers[best], papers, t.slug)) for t in topics]
    if errors:
        lines += ["", *_errors(matchers[best], papers, split=name != "astro")]
    return "\n".join(lines)


def summary(names: Iterable[str]) -> str:
    """One table: each set's held-out (astronomy: all) figures per matcher."""
    lines = [HEADER.format("set (part) / matcher")]
    for name in names:
        topics, papers = load_set(name)
        part = papers if name == "astro" else [p for p in papers if p.held_out]
        label = "all" if name == "astro" else "held-out"
        examples = choose_examples(topics, papers)
        for matcher, predicted in predictions(topics, papers).items():
            shown = scored_part(name, part, examples) if "examples" in matcher else part
            lines.append(_row(f"{name} ({label}) / {matcher}", score(predicted, shown)))
    return "\n".join(lines)


def _errors(predicted: set[Pair], papers: list[Labelled], *, split: bool) -> list[str]:
    index = {lp.key: lp for lp in papers}
    want = gold(papers)
    out = []
    for kind, pairs in (("FP", predicted - want), ("FN", want - predicted)):
        for key, slug in sorted(pairs):
            lp = index[key]
            part = ("held-out " if lp.held_out else "dev ") if split else ""
            out.append(f"{kind} {part}{slug} {key} {lp.paper.title[:70]!r}")
    return out


# --- cost ------------------------------------------------------------------------------------


def speed(papers: int = 10_000, topics: int = 50, day: int = 2_000) -> str:
    """Time matching papers x topics with every signal, and embedding a day of papers."""
    specs, labelled = load_set("fields")
    more_specs, more = load_set("ml")
    specs, labelled = specs + more_specs, labelled + more
    vectors = paper_vectors(labelled)
    many = [
        dataclasses.replace(t, slug=f"{t.slug}-{i}")
        for i in range(topics // len(specs) + 1)
        for t in specs
    ][:topics]
    # Fresh objects: nothing a paper computes for itself is reused from an earlier copy.
    corpus = [
        dataclasses.replace(
            labelled[i % len(labelled)].paper,
            title=f"{i} " + labelled[i % len(labelled)].paper.title,
        )
        for i in range(papers)
    ]
    lines = []
    start, cpu = time.perf_counter(), time.process_time()
    if vectors is None:
        found = index_of(many).score_listing(corpus, 1.0)
        how = "keywords only"
    else:
        copies = vectors[[i % len(labelled) for i in range(papers)]]
        protos = topic_vectors(many)
        measured = combine.measure(index_of(many), corpus, copies, protos)
        assert measured is not None
        found = combine.decide(measured)
        how = "every signal"
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    hits = sum(map(len, found))
    lines.append(
        f"matching {papers} papers x {topics} topics, {how}: {elapsed:.1f}s "
        f"({cpu:.1f}s CPU, {hits} matches)"
    )
    if vectors is not None:
        lines.append(_taught_speed(many, corpus, copies, protos))
    if vectors is not None:
        lines.append(_embedding_speed(labelled, day))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"peak memory of this process: {peak:.0f} MB")
    return "\n".join(lines)


def _taught_speed(
    specs: list[TopicSpec], corpus: list[PaperText], vectors: Any, protos: Any
) -> str:
    """Time the same matching when every topic has EXAMPLES example papers (and a model)."""
    taught = [
        Examples(vectors[t * EXAMPLES : (t + 1) * EXAMPLES], vectors[:0]) for t in range(len(specs))
    ]
    start, cpu = time.perf_counter(), time.process_time()
    measured = combine.measure(index_of(specs), corpus, vectors, protos, examples=taught)
    assert measured is not None
    combine.decide(measured)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return f"the same, every topic with {EXAMPLES} examples: {elapsed:.1f}s ({cpu:.1f}s CPU)"


def _embedding_speed(labelled: list[Labelled], day: int) -> str:
    """Time embedding papers afresh on one core, as ingest does, and scale to a day."""
    encoder = load_encoder()
    texts = [paper_text(lp.paper.title, lp.paper.abstract) for lp in labelled]
    start, cpu = time.perf_counter(), time.process_time()
    encoder.embed(texts)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    scale = day / len(texts)
    return (
        f"embedding {day} papers on one core: {elapsed * scale:.0f}s "
        f"({cpu * scale:.0f}s CPU; measured on {len(texts)})"
    )


def _set_name(value: str) -> str:
    """Accept a set's name or its folder (tests/labelled/astro)."""
    for name, directory in SETS.items():
        if value in (name, str(directory), str(directory.relative_to(REPO))):
            return name
    raise argparse.ArgumentTypeError(f"unknown set {value!r}: choose from {', '.join(SETS)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set", action="append", type=_set_name, help="ml, fields or astro (default: all)"
    )
    parser.add_argument("--errors", action="store_true", help="list each set's mistakes")
    parser.add_argument("--speed", action="store_true", help="also time and measure the cost")
    parser.add_argument("--summary", action="store_true", help="only the held-out summary")
    args = parser.parse_args(argv)
    names = args.set or list(SETS)
    print(summary(names))
    if not args.summary:
        for name in names:
            print("\n" + report_set(name, args.errors))
    if args.speed:
        print("\n" + speed())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
