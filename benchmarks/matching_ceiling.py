"""How far the matcher's signals can go: a logistic regression over all of them, fitted on dev.

Run: `.venv/bin/python benchmarks/matching_ceiling.py` (needs the embeddings extra).
For each (paper, topic) pair of the labelled set it collects what the matcher can know: the
keyword score (capped at 3) and whether it passes the threshold or is above zero, the cosine
of the paper's sentence vector with the topic's own text (name, description, keywords) and
that cosine's z-score over the listing, and the share of the paper's 8 most similar papers
that the keywords place in the topic (alone and above twice the topic's share of the
listing). A logistic regression fitted on dev, with the threshold that gives dev its best F1,
is scored on the held-out papers, across the five folds (fitted on the other four each time)
and on the other field's set (fitted on all machine-learning papers). It is no matcher to
ship, tuned as it is on the labels: it tells how much the signals at hand carry, so that a
goal beyond it is known to need another signal rather than another rule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from matching import (  # noqa: E402
    LABELLED,
    Labelled,
    _compile,
    load_labelled,
    load_topics,
    paper_vectors,
)

from newsletter.matching.embeddings import load_encoder  # noqa: E402
from newsletter.matching.neighbours import NEIGHBOURS  # noqa: E402
from newsletter.matching.scoring import TopicIndex  # noqa: E402
from newsletter.matching.topics import TopicSpec  # noqa: E402

FEATURES = (
    "keyword score",
    "passes",
    "some evidence",
    "cosine to topic",
    "cosine z-score",
    "neighbours' share",
    "neighbours' excess",
)
THRESHOLDS = np.arange(0.05, 0.95, 0.05)
L2 = 1.0
STEPS = 3000
RATE = 0.1


def signals(topics: list[TopicSpec], papers: list[Labelled]) -> tuple[Any, Any]:
    """Return the feature array (papers x topics x FEATURES) and the gold labels."""
    vectors = paper_vectors(papers)
    if vectors is None:
        raise SystemExit("needs the embeddings extra: pip install -e '.[embeddings]'")
    encoder = load_encoder()
    topic_vectors = encoder.embed(
        [f"{t.name}. {t.description} {', '.join(t.keywords)}" for t in topics]
    )
    cosine = vectors @ topic_vectors.T
    zscore = (cosine - cosine.mean(axis=0)) / cosine.std(axis=0)
    index = TopicIndex([_compile(t) for t in topics])
    keyword = np.zeros(cosine.shape)
    for i, found in enumerate(index.score_listing([lp.paper for lp in papers], 0.0)):
        for t, value, _ in found:
            keyword[i, t] = value
    placed = (keyword >= 1.0).astype(float)
    similar = vectors @ vectors.T
    np.fill_diagonal(similar, -np.inf)
    nearest = np.argsort(-similar, axis=1)[:, :NEIGHBOURS]
    share = placed[nearest].mean(axis=1)
    features = np.stack(
        [
            np.minimum(keyword, 3.0),
            placed,
            (keyword > 0).astype(float),
            cosine,
            zscore,
            share,
            share - 2 * placed.mean(axis=0),
        ],
        axis=-1,
    )
    gold = np.array([[t.slug in lp.topics for t in topics] for lp in papers])
    return features, gold


class Regression:
    """An L2-regularised logistic regression on standardised features, by gradient descent."""

    def __init__(self, x: Any, y: Any) -> None:
        x, y = x.reshape(-1, x.shape[-1]), y.ravel().astype(float)
        self.mean, self.sd = x.mean(axis=0), x.std(axis=0) + 1e-9
        xs = (x - self.mean) / self.sd
        self.w, self.b = np.zeros(x.shape[1]), 0.0
        for _ in range(STEPS):
            p = 1 / (1 + np.exp(-(xs @ self.w + self.b)))
            self.w -= RATE * (xs.T @ (p - y) + L2 * self.w) / len(y)
            self.b -= RATE * float((p - y).mean())
        best = max(THRESHOLDS, key=lambda t: prf(self.predict(x, t), y)[2])
        self.threshold = float(best)

    def predict(self, x: Any, threshold: float | None = None) -> Any:
        t = self.threshold if threshold is None else threshold
        flat = (x.reshape(-1, x.shape[-1]) - self.mean) / self.sd
        return (1 / (1 + np.exp(-(flat @ self.w + self.b))) >= t).reshape(x.shape[:-1])


def prf(predicted: Any, gold: Any) -> tuple[float, float, float]:
    predicted, gold = predicted.ravel().astype(bool), gold.ravel().astype(bool)
    tp = int((predicted & gold).sum())
    fp, fn = int((predicted & ~gold).sum()), int((~predicted & gold).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _oracle(model: Regression, x: Any, y: Any) -> tuple[float, float, float]:
    """The best the scores could do on a set if its own labels chose the threshold."""
    return max((prf(model.predict(x, t), y) for t in THRESHOLDS), key=lambda s: s[2])


def _most_recall(model: Regression, x: Any, y: Any) -> tuple[float, float, float]:
    """The most recall the scores reach on a set while precision stays at the goal's 0.88."""
    fine = [prf(model.predict(x, t), y) for t in np.arange(0.01, 1.0, 0.01)]
    return max((s for s in fine if s[0] >= 0.88), key=lambda s: s[1], default=(0.0, 0.0, 0.0))


def report() -> str:
    topics, papers = load_topics(), load_labelled()
    x, y = signals(topics, papers)
    held = np.array([lp.held_out for lp in papers])
    fold = np.array([lp.fold for lp in papers])
    fitted = Regression(x[~held], y[~held])
    own = Regression(x[held], y[held])
    f1s = []
    for k in range(5):
        model = Regression(x[fold != k], y[fold != k])
        f1s.append(prf(model.predict(x[fold == k]), y[fold == k])[2])
    rows = [
        ("dev (fitted)", prf(fitted.predict(x[~held]), y[~held])),
        ("held-out", prf(fitted.predict(x[held]), y[held])),
        ("held-out, its own best threshold (oracle)", _oracle(fitted, x[held], y[held])),
        ("held-out, fitted on itself (oracle)", _oracle(own, x[held], y[held])),
        (
            "held-out, fitted on itself, most recall at P >= 0.88",
            _most_recall(own, x[held], y[held]),
        ),
    ]
    other = LABELLED / "astro"
    ax, ay = signals(load_topics(other / "topics.toml"), load_labelled(other))
    rows.append(("astronomy (fitted on all ML)", prf(Regression(x, y).predict(ax), ay)))
    lines = [
        "Logistic regression over the matcher's signals: " + ", ".join(FEATURES),
        "",
        "| set | precision | recall | F1 |",
        "|---|---|---|---|",
        *(f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} |" for name, (p, r, f) in rows),
        f"| 5 folds, mean (sd) | | | {np.mean(f1s):.3f} ({np.std(f1s, ddof=1):.3f}) |",
        "",
        "Weights (standardised features): "
        + ", ".join(f"{n} {w:+.2f}" for n, w in zip(FEATURES, fitted.w, strict=True))
        + f"; threshold {fitted.threshold:.2f}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
