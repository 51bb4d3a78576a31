"""One decision from every signal the matcher has: keywords, meaning, categories, neighbours,
examples.

Each (paper, topic) pair gets a few signals (`SIGNALS`), all measured so that they mean the same
in any field: the keyword score and whether it passes the threshold, the paper's standing in
meaning among recent papers and its margin over the paper's next best topic (`meaning`), a
category of the topic's, the share of its nearest papers that the topic's keywords take, and its
standing against the topic's example papers. A logistic model over them gives the chance that
the pair belongs; a pair is kept at `ADMIT` or above. The weights are not written by hand: they
are fitted by `benchmarks/fit_matching.py` on the dev parts of labelled sets of several fields
(machine learning and a faculty of science) and copied here, so no field decides alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.matching.meaning import Examples, Standing, prototypes, standing
from newsletter.matching.neighbours import NEIGHBOURS, nearest
from newsletter.matching.scoring import PaperText, Scored, TopicIndex

SIGNALS = (
    "keywords",  # the keyword score, capped at KEYWORDS_CAP
    "keywords_pass",  # 1 when the keyword score reaches the threshold
    "meaning",  # z-score of the similarity to the topic's prototype among recent papers
    "margin",  # that z-score minus the paper's best one for another topic, capped
    "category",  # 1 when the paper is listed in one of the topic's categories
    "neighbours",  # share of the paper's nearest papers that the topic's keywords take
    "examples",  # z-score of the similarity to the topic's example papers (0 without any)
)
KEYWORDS_CAP = 3.0
MARGIN_CAP = 3.0
# Fitted by benchmarks/fit_matching.py (see there for the data and the figures).
WEIGHTS = {
    "keywords": 1.0,
    "keywords_pass": 1.0,
    "meaning": 0.9,
    "margin": 0.7,
    "category": 3.0,
    "neighbours": 2.5,
    "examples": 0.0,
}
BIAS = -3.0
ADMIT = 0.3  # the chance from which a pair is kept
MEANING_NOTE = 1.5  # a standing from which the evidence says "close in meaning"


@dataclass(frozen=True)
class Signals:
    """The signals of a listing: papers x topics x SIGNALS, and the keyword results."""

    values: Any
    keyword_results: list[list[Scored]]
    standing: Standing


def chance(values: Any, weights: dict[str, float] | None = None, bias: float = BIAS) -> Any:
    """Return the logistic model's chance for each pair of a papers x topics x SIGNALS array."""
    import numpy as np

    w = weights or WEIGHTS
    vector = np.array([w[name] for name in SIGNALS])
    return 1.0 / (1.0 + np.exp(-(values @ vector + bias)))


def measure(
    index: TopicIndex,
    papers: Sequence[PaperText],
    vectors: Any,
    topic_vectors: Any,
    threshold: float = 1.0,
    *,
    examples: Sequence[Examples | None] = (),
    counted: Callable[[int], bool] | None = None,
) -> Signals | None:
    """Measure every signal of a listing; None when too few papers have a vector to judge.

    `vectors` holds one unit row per paper (zeros for a paper without one), `topic_vectors`
    one per topic of the index, in its order; `examples` the topics' example papers.
    """
    import numpy as np

    weak = index.score_listing(papers, 0.0, counted=counted)
    reference = np.abs(vectors).max(axis=1) > 0
    protos = prototypes(topic_vectors, examples)
    judged = standing(vectors @ protos.T, reference)
    if judged is None:
        return None
    shape = judged.z.shape
    keyword = np.zeros(shape)
    for i, found in enumerate(weak):
        for t, value, _ in found:
            keyword[i, t] = value
    category = _category_flags(index, papers, shape)
    passed = keyword >= threshold
    values = np.stack(
        [
            np.minimum(keyword, KEYWORDS_CAP),
            passed.astype(float),
            judged.z,
            np.clip(judged.margin, -MARGIN_CAP, MARGIN_CAP),
            category,
            _neighbour_share(passed, vectors, reference),
            _examples_standing(vectors, reference, examples, shape),
        ],
        axis=-1,
    )
    return Signals(values=values, keyword_results=weak, standing=judged)


def decide(signals: Signals, threshold: float = 1.0) -> list[list[Scored]]:
    """Keep each pair whose chance reaches ADMIT, with its evidence and its score.

    A pair the keywords admit keeps its keyword score; one admitted by the other signals
    scores its chance (under the threshold, so it ranks after keyword matches) and says why.
    """
    import numpy as np

    p = chance(signals.values)
    found = {(i, t): (value, evidence) for i, r in enumerate(signals.keyword_results)
             for t, value, evidence in r}  # fmt: skip
    out: list[list[Scored]] = []
    for i, row in enumerate(p):
        kept: list[Scored] = []
        for t in np.flatnonzero(row >= ADMIT).tolist():
            value, evidence = found.get((i, t), (0.0, []))
            if value < threshold:
                value = min(round(float(row[t]), 3), threshold * 0.999)
                evidence = [*evidence, *_why(signals, i, t)]
            elif signals.standing.z[i, t] >= MEANING_NOTE:
                evidence = [*evidence, _meaning_note(signals.standing.z[i, t])]
            kept.append((t, value, evidence))
        out.append(kept)
    return out


def _why(signals: Signals, i: int, t: int) -> list[str]:
    """Say what admitted a pair that the keywords alone did not."""
    z = signals.standing.z[i, t]
    share = signals.values[i, t, SIGNALS.index("neighbours")]
    notes = []
    if z >= MEANING_NOTE or share < 0.5:
        notes.append(_meaning_note(z))
    if share >= 0.5:
        votes = round(share * NEIGHBOURS)
        notes.append(f"neighbours: {votes} of the {NEIGHBOURS} most similar papers")
    return notes


def _meaning_note(z: float) -> str:
    return f"meaning: close to the topic (standing {z:.1f})"


def _category_flags(index: TopicIndex, papers: Sequence[PaperText], shape: tuple[int, int]) -> Any:
    """Return 1 for each pair whose paper is listed in one of the topic's categories.

    A topic's archive (`cond-mat`) holds its subject classes (`cond-mat.supr-con`).
    """
    import numpy as np

    flags = np.zeros(shape)
    wanted = [topic.categories for topic in index.topics]
    for i, paper in enumerate(papers):
        for c in paper.categories:
            archive = c.split(".", 1)[0]
            for t, categories in enumerate(wanted):
                if c in categories or archive in categories:
                    flags[i, t] = 1.0
    return flags


def _neighbour_share(passed: Any, vectors: Any, reference: Any) -> Any:
    """Return, per pair, the share of the paper's nearest papers that the topic's keywords take."""
    import numpy as np

    share = np.zeros(passed.shape)
    pool = np.flatnonzero(reference)
    if len(pool) <= NEIGHBOURS:
        return share
    share[pool] = passed[nearest(vectors, pool.tolist(), pool)].mean(axis=1)
    return share


def _examples_standing(
    vectors: Any, reference: Any, examples: Sequence[Examples | None], shape: tuple[int, int]
) -> Any:
    """Return each pair's standing against the topic's example papers (0 without examples)."""
    import numpy as np

    out = np.zeros(shape)
    for t, found in enumerate(examples):
        if found is None or len(found.positive) == 0:
            continue
        centre = np.asarray(found.positive).mean(axis=0)
        judged = standing((vectors @ centre)[:, None], reference)
        if judged is not None:
            out[:, t] = judged.z[:, 0]
    return out
