"""Choose the standing from which a paper is close to a reader's interests, on labelled sets.

Run: `.venv/bin/python benchmarks/fit_interests.py` (needs the sentence model).
A reader's interests are one sentence of their own; the nearest thing the labelled sets hold
is each topic's line, "Name. Description." (written as an admin writes them, never from the
papers). Each line is embedded the way `subscribers edit --interests` embeds a reader's, and
each paper's standing against it among the set's papers is its z-score, as
`newsletter.matching.interests` judges a day's papers against the recent listings. The cut
is the one that gives the pooled dev pairs of the sets in FITTED_ON their best F1 (the same
split and the same sets as `fit_matching.py`); prints it, the figures it gives on the dev and
held-out parts of every set (astronomy is never fitted on), and the mean precision of the
ten papers that stand highest per topic.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import matching  # noqa: E402
from benchmarks.fit_matching import best_cut  # noqa: E402
from newsletter.core.config import default  # noqa: E402
from newsletter.matching import interests  # noqa: E402
from newsletter.matching.meaning import standing, topic_parts  # noqa: E402

CUTS = np.arange(0.8, 3.5, 0.1)
TOP = 10
SHIPPED = default("ranking_interest_standing")  # the setting's default, as shipped


def standings(name: str) -> tuple[Any, Any, Any]:
    """Return the papers x topics standings of a set against its topics' lines, the labels
    and which papers are held out."""
    topics, papers = matching.load_set(name)
    vectors = matching.paper_vectors(papers)
    if vectors is None:
        raise SystemExit("the sentence model is not installed: nothing to fit")
    lines = [reader_vector(topic_parts(t.name, t.description, ())[0]) for t in topics]
    judged = standing(vectors @ np.stack(lines).T, [True] * len(papers))
    assert judged is not None
    labels = np.array([[t.slug in lp.topics for t in topics] for lp in papers], dtype=float)
    held_out = np.array([lp.held_out for lp in papers])
    return judged.z, labels, held_out


def reader_vector(text: str) -> Any:
    """Embed a sentence as a reader's interests are embedded and stored."""
    (embedded,) = interests.embed_interests([text])
    assert embedded is not None
    return interests.stored_vector(*embedded)


def scores(z: Any, y: Any, cut: float) -> tuple[float, float, float]:
    """Return micro precision, recall and F1 of the pairs standing at the cut or above."""
    pred = z >= cut
    tp = float((pred * y).sum())
    precision = tp / pred.sum() if pred.sum() else 1.0
    recall = tp / y.sum() if y.sum() else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def top_precision(z: Any, y: Any) -> float:
    """Return the mean, over topics, of the share of labelled papers among the TOP highest."""
    found = [y[np.argsort(-z[:, t])[:TOP], t].mean() for t in range(z.shape[1]) if y[:, t].sum()]
    return float(np.mean(found))


def main() -> int:
    measured = {name: standings(name) for name in matching.SETS}
    dev_z = np.concatenate([z[~h].ravel() for z, _, h in map(measured.get, matching.FITTED_ON)])
    dev_y = np.concatenate([y[~h].ravel() for _, y, h in map(measured.get, matching.FITTED_ON)])
    cut, f1 = best_cut(dev_z, dev_y, CUTS)
    print(f"ranking_interest_standing = {cut:.1f}  (pooled dev F1 {f1:.3f}; shipped: "
          f"{SHIPPED})\n")  # fmt: skip
    print("| set | part | precision | recall | F1 | P@10 |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (z, y, held_out) in measured.items():
        parts = {"dev": ~held_out, "held-out": held_out}
        if name not in matching.FITTED_ON:
            parts = {"all (never fitted)": np.ones_like(held_out)}
        for part, rows in parts.items():
            p, r, f = scores(z[rows], y[rows], SHIPPED)
            top = top_precision(z[rows], y[rows])
            print(f"| {name} | {part} | {p:.3f} | {r:.3f} | {f:.3f} | {top:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
