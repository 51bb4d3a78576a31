"""Fit the matcher's weights (`newsletter.matching.combine`) on the dev parts of labelled sets.

Run: `.venv/bin/python benchmarks/fit_matching.py` (needs the sentence model).
Collects every (paper, topic) pair of the dev parts of the sets in FITTED_ON (machine learning
and a faculty of science), measured as the matcher measures them, once without examples and
once with three example papers per topic (the examples' own pairs left out), and fits a
logistic regression over combine.SIGNALS (L2 penalty L2, Newton steps). The chance from
which a pair is kept is the one that gives the pooled dev pairs their best F1; the one standing
of "meaning alone" in benchmarks/matching.py is chosen the same way. Prints the values to copy
into combine.py and matching.py, then the held-out figures they give. The astronomy set and
every held-out part stay out of the fit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import matching  # noqa: E402
from newsletter.matching import combine  # noqa: E402

L2 = 1.0
STEPS = 50
CHANCES = np.arange(0.10, 0.80, 0.02)
STANDINGS = np.arange(0.8, 3.0, 0.1)


def dev_pairs() -> tuple[Any, Any, Any]:
    """Return the dev pairs' signals (n x SIGNALS), labels, and their standing in meaning."""
    xs, ys, zs = [], [], []
    for name in matching.FITTED_ON:
        topics, papers = matching.load_set(name)
        for examples in (None, matching.choose_examples(topics, papers)):
            measured = matching.signals(topics, papers, examples)
            if measured is None:
                raise SystemExit("the sentence model is not installed: nothing to fit")
            used = {k for keys in (examples or {}).values() for k in keys}
            for i, lp in enumerate(papers):
                if lp.held_out or lp.key in used:
                    continue
                xs.append(measured.values[i])
                ys.append([t.slug in lp.topics for t in topics])
                zs.append(measured.standing.z[i])
    return np.concatenate(xs), np.concatenate(ys).astype(float), np.concatenate(zs)


def fit(x: Any, y: Any) -> tuple[Any, float]:
    """Return the weights and bias of an L2-penalised logistic regression (Newton's method)."""
    design = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(design.shape[1])
    penalty = L2 * np.eye(len(w))
    penalty[-1, -1] = 0.0  # the bias is not penalised
    for _ in range(STEPS):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + penalty @ w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        w -= np.linalg.solve(hessian, gradient)
    return w[:-1], float(w[-1])


def best_cut(scores: Any, y: Any, cuts: Any) -> tuple[float, float]:
    """Return the cut giving the best F1 and that F1."""
    best = (0.0, float(cuts[0]))
    for cut in cuts:
        pred = scores >= cut
        tp = float((pred * y).sum())
        f1 = 2 * tp / (pred.sum() + y.sum()) if pred.sum() + y.sum() else 0.0
        best = max(best, (f1, float(cut)))
    return best[1], best[0]


def main() -> int:
    x, y, z = dev_pairs()
    weights, bias = fit(x, y)
    named = dict(zip(combine.SIGNALS, (round(float(w), 2) for w in weights), strict=True))
    admit, dev_f1 = best_cut(combine.chance(x, named, bias), y, CHANCES)
    meaning_z, meaning_f1 = best_cut(z, y, STANDINGS)
    print(f"dev pairs: {len(y)} ({int(y.sum())} positive)")
    print(f"WEIGHTS = {named}")
    print(f"BIAS = {bias:.2f}")
    print(f"ADMIT = {admit:.2f}  # dev F1 {dev_f1:.3f}")
    print(f"MEANING_ONLY_Z = {meaning_z:.1f}  # dev F1 of meaning alone {meaning_f1:.3f}")
    combine.WEIGHTS, combine.BIAS, combine.ADMIT = named, round(bias, 2), round(admit, 2)
    matching.MEANING_ONLY_Z = round(meaning_z, 1)
    print("\nWith these values:\n" + matching.summary(matching.SETS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
