"""One decision from every signal the matcher has: keywords, meaning, categories, neighbours,
examples.

Each (paper, topic) pair gets a few signals (`SIGNALS`), all measured so that they mean the same
in any field: the keyword score and whether it passes the threshold, the paper's standing in
meaning among recent papers and its margin over the paper's next best topic (`meaning`), a
category of the topic's, the share of its nearest papers that the topic's keywords take, and its
standing under the model the topic learns from its example papers and its readers' votes
(`topic_model`). A logistic model over them gives the chance that
the pair belongs; a pair is kept at `ADMIT` or above. The weights are not written by hand: they
are fitted by `benchmarks/fit_matching.py` on the dev parts of labelled sets of several fields
(machine learning and a faculty of science) and copied here, so no field decides alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.matching.meaning import Examples, Standing, prototypes, standing, with_examples
from newsletter.matching.neighbours import NEIGHBOURS, nearest
from newsletter.matching.scoring import PaperText, Scored, TopicIndex
from newsletter.matching.topic_model import is_taught, model_standing

SIGNALS = (
    "keywords",  # the keyword score, capped at KEYWORDS_CAP
    "keywords_pass",  # 1 when the keyword score reaches the threshold
    "meaning",  # z-score of the similarity to the topic's prototype among recent papers
    "margin",  # that z-score minus the paper's best one for another topic, capped
    "category",  # 1 when the paper is listed in one of the topic's categories
    "neighbours",  # share of the paper's nearest papers that the topic's keywords take
    "neighbours_close",  # share of them the keywords take or that stand out in meaning
    "examples",  # standing under the topic's own model of its examples (0 without any)
)
KEYWORDS_CAP = 3.0
MARGIN_CAP = 3.0
# Fitted by benchmarks/fit_matching.py (see there for the data and the figures).
WEIGHTS = {
    "keywords": 1.05,
    "keywords_pass": 0.94,
    "meaning": 0.93,
    "margin": 0.67,
    "category": 3.61,
    "neighbours": 0.53,
    "neighbours_close": 3.27,
    "examples": -0.2,
}
BIAS = -3.54
ADMIT = 0.36  # the chance from which a pair is kept (the best F1 of the dev pairs)
MEANING_NOTE = 1.5  # a standing from which the evidence says "close in meaning"
WORDS_PLACE_EXAMPLES = 1.0  # the examples' mean standing under the words that shows they fit
CLOSE = 2.0  # a standing from which a neighbour counts as the topic's, without keywords
PLACERS = ("keywords", "category", "meaning", "neighbours")  # what a stored pair is placed by


@dataclass(frozen=True)
class Signals:
    """The signals of a listing: papers x topics x SIGNALS, and the keyword results."""

    values: Any
    keyword_results: list[list[Scored]]
    standing: Standing
    categories: dict[tuple[int, int], str]  # (paper, topic) -> the topic's category it is in
    members: frozenset[tuple[int, int]]  # pairs a whole-category topic takes whatever else


def chance(values: Any, weights: dict[str, float] | None = None, bias: float | None = None) -> Any:
    """Return the logistic model's chance for each pair of a papers x topics x SIGNALS array."""
    import numpy as np

    w = weights or WEIGHTS
    vector = np.array([w[name] for name in SIGNALS])
    return 1.0 / (1.0 + np.exp(-(values @ vector + (BIAS if bias is None else bias))))


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

    weak = index.score_listing(papers, 0.0, counted=counted, members_at=threshold)
    reference = np.abs(vectors).max(axis=1) > 0
    words = prototypes(topic_vectors)
    judged = standing(vectors @ words.T, reference)
    if judged is None:
        return None
    shape = judged.z.shape
    keyword = np.zeros(shape)
    for i, found in enumerate(weak):
        for t, value, _ in found:
            keyword[i, t] = value
    listed = _listed(index, papers)
    category = np.zeros(shape)
    for pair in listed:
        category[pair] = 1.0
    judged, by_model = _with_models(judged, vectors, reference, words, examples)
    passed = keyword >= threshold
    close = passed | (judged.z >= CLOSE)
    near = _nearest_rows(vectors, reference)
    values = np.stack(
        [
            np.minimum(keyword, KEYWORDS_CAP),
            passed.astype(float),
            judged.z,
            np.clip(judged.margin, -MARGIN_CAP, MARGIN_CAP),
            category,
            _neighbour_share(passed, near),
            _neighbour_share(close, near),
            by_model,
        ],
        axis=-1,
    )
    whole = {t for t, topic in enumerate(index.topics) if topic.whole_categories}
    members = frozenset(pair for pair in listed if pair[1] in whole)
    return Signals(values, weak, judged, listed, members)


def decide(signals: Signals, threshold: float = 1.0) -> list[list[Scored]]:
    """Keep each pair whose chance reaches ADMIT, and every member of a whole-category topic,
    with its evidence and its score.

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
        admitted = set(np.flatnonzero(row >= ADMIT).tolist())
        admitted |= {t for (paper, t) in signals.members if paper == i}
        for t in sorted(admitted):
            value, evidence = found.get((i, t), (0.0, []))
            if value < threshold:
                value = min(round(float(row[t]), 3), threshold * 0.999)
                evidence = [*evidence, *_why(signals, i, t, evidence)]
            elif signals.standing.z[i, t] >= MEANING_NOTE:
                evidence = [*evidence, _meaning_note(signals.standing.z[i, t])]
            kept.append((t, value, evidence))
        out.append(kept)
    return out


def boundary_margin(score: float, threshold: float = 1.0) -> float:
    """Return how far inside the admit boundary a stored pair stands: 0 at ADMIT, 1 at the
    threshold, more the further its keywords pass it.

    A stored score is a keyword score (at or above the threshold) or, for a pair the other
    signals admitted, its chance (from ADMIT to just under the threshold, see `decide`): each
    is measured over its own range, so the two sides meet at the threshold.
    """
    if score >= threshold:
        return 1.0 + (score - threshold) / threshold
    if threshold <= ADMIT:  # no chance range under the threshold: at the boundary
        return 0.0
    return max(0.0, (score - ADMIT) / (threshold - ADMIT))


def placed_by(
    score: float, evidence: Sequence[str], threshold: float = 1.0, *, whole_categories: bool = False
) -> str:
    """Name the one signal of PLACERS that placed a stored pair, from its score and evidence.

    A whole-category topic's paper of its categories is the category's; a pair at the
    threshold is the keywords' (their score holds the category's and the description's
    share); one under it was admitted by the note `decide` gave it: a category, else meaning,
    else its neighbours. One under it with no note was stored under a lower threshold.
    """
    notes = {e.split(": ", 1)[0] for e in evidence}
    if whole_categories and "category" in notes:
        return "category"
    if score < threshold:
        for signal in ("category", "meaning", "neighbours"):
            if signal in notes:
                return signal
    return "keywords"


def _why(signals: Signals, i: int, t: int, evidence: list[str]) -> list[str]:
    """Say what admitted a pair that the keywords alone did not."""
    z = signals.standing.z[i, t]
    share = signals.values[i, t, SIGNALS.index("neighbours")]
    notes = []
    listed = signals.categories.get((i, t))
    if listed is not None and not any(e.startswith("category: ") for e in evidence):
        notes.append(f"category: {listed}")
    if z >= MEANING_NOTE or (share < 0.5 and listed is None):
        notes.append(_meaning_note(z))
    if share >= 0.5:
        votes = round(share * NEIGHBOURS)
        notes.append(f"neighbours: {votes} of the {NEIGHBOURS} most similar papers")
    return notes


def _meaning_note(z: float) -> str:
    return f"meaning: close to the topic (standing {z:.1f})"


def _listed(index: TopicIndex, papers: Sequence[PaperText]) -> dict[tuple[int, int], str]:
    """Return the pairs whose paper is listed in one of the topic's categories, with it.

    A topic's archive (`cond-mat`) holds its subject classes (`cond-mat.supr-con`).
    """
    found: dict[tuple[int, int], str] = {}
    wanted = [topic.categories for topic in index.topics]
    for i, paper in enumerate(papers):
        for c in paper.categories:
            archive = c.split(".", 1)[0]
            for t, categories in enumerate(wanted):
                if (c in categories or archive in categories) and (i, t) not in found:
                    found[i, t] = c
    return found


def _nearest_rows(vectors: Any, reference: Any) -> tuple[Any, Any] | None:
    """Return the rows with a vector and, for each, its nearest such rows (None: too few)."""
    import numpy as np

    pool = np.flatnonzero(reference)
    if len(pool) <= NEIGHBOURS:
        return None
    return pool, nearest(vectors, pool.tolist(), pool)


def _neighbour_share(members: Any, near: tuple[Any, Any] | None) -> Any:
    """Return, per pair, the share of the paper's nearest papers that are the topic's members."""
    import numpy as np

    share = np.zeros(members.shape)
    if near is not None:
        pool, rows = near
        share[pool] = members[rows].mean(axis=1)
    return share


def _with_models(
    judged: Standing, vectors: Any, reference: Any, words: Any, examples: Sequence[Examples | None]
) -> tuple[Standing, Any]:
    """Return the standings in meaning with the taught topics' models, and the models' own.

    A topic with examples stands each paper as high as its model places it (`topic_model`).
    """
    unheld = _words_miss_examples(vectors @ words.T, reference, words, examples)
    by_model = model_standing(vectors, reference, words, examples, unheld)
    taught = [is_taught(found) for found in examples]
    if any(taught):
        judged = with_examples(judged, by_model, taught + [False] * (len(words) - len(taught)))
    return judged, by_model


def _words_miss_examples(
    similarity: Any, reference: Any, protos: Any, examples: Sequence[Examples | None]
) -> list[bool]:
    """Tell, per topic, whether its own words place its example papers poorly.

    Only then does the topic's model place papers as its meaning (`meaning.with_examples`):
    where the words already stand the examples out, they describe the topic better than a
    model of three papers does.
    """
    import numpy as np

    out = []
    ref = similarity[np.asarray(reference, dtype=bool)]
    for t, found in enumerate(examples):
        if found is None or len(found.positive) == 0:
            out.append(False)
            continue
        spread = ref[:, t].std() or 1.0
        placed = (np.asarray(found.positive) @ protos[t] - ref[:, t].mean()) / spread
        out.append(float(placed.mean()) < WORDS_PLACE_EXAMPLES)
    return out
