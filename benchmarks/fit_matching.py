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

`--topic-model` first chooses the topic model's RIDGE and PRIOR (`matching/topic_model.py`): on
the same dev parts, with 3, 6 and 10 example papers per topic (its earliest dev papers), it
prints the mean ROC AUC over topics of the other dev papers, ranked by the topic's words alone
and by its model under each pair of values in RIDGES x PRIORS.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import matching  # noqa: E402
from newsletter.matching import combine, topic_model  # noqa: E402
from newsletter.matching.meaning import Examples  # noqa: E402

L2 = 1.0
STEPS = 50
CHANCES = np.arange(0.10, 0.80, 0.02)
STANDINGS = np.arange(0.8, 3.0, 0.1)
RIDGES = (0.1, 0.3, 1.0)
PRIORS = (0.3, 1.0, 3.0)
TAUGHT = (3, 6, 10)  # example papers per topic when the topic model is chosen


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


def auc(scores: Any, labels: Any) -> float:
    """Return the ROC AUC of scores for boolean labels (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    above = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(above)


def topic_model_aucs() -> dict[tuple[int, str], float]:
    """Return the mean ROC AUC per (examples per topic, ranking) over the dev parts' topics."""
    out: dict[tuple[int, str], list[float]] = {}
    for name in matching.FITTED_ON:
        topics, papers = matching.load_set(name)
        vectors, words = matching.paper_vectors(papers), matching.topic_vectors(topics)
        if vectors is None or words is None:
            raise SystemExit("the sentence model is not installed: nothing to fit")
        dev = [i for i, lp in enumerate(papers) if not lp.held_out]
        listing = topic_model.listing_of(vectors, np.ones(len(papers), dtype=bool))
        for k in TAUGHT:
            chosen = [[i for i in dev if t.slug in papers[i].topics][:k] for t in topics]
            used = {i for rows in chosen for i in rows}
            scored = np.array([i in dev and i not in used for i in range(len(papers))])
            for t, topic in enumerate(topics):
                labels = np.array([topic.slug in lp.topics for lp in papers])[scored]
                if labels.sum() < 2:
                    continue
                out.setdefault((k, "words"), []).append(auc((vectors @ words[t])[scored], labels))
                others = vectors[sorted(used - set(chosen[t]))]
                for ridge in RIDGES:
                    for prior in PRIORS:
                        topic_model.RIDGE, topic_model.PRIOR = ridge, prior
                        taught = Examples(vectors[chosen[t]], vectors[:0])
                        w = topic_model.fit_weights(listing, words[t], taught, others)
                        decision = (vectors - listing.centre) @ w
                        key = (k, f"RIDGE {ridge}, PRIOR {prior}")
                        out.setdefault(key, []).append(auc(decision[scored], labels))
    return {key: float(np.mean(values)) for key, values in out.items()}


def choose_topic_model() -> None:
    """Print the topic model's ROC AUCs and keep the values with the best mean over TAUGHT."""
    aucs = topic_model_aucs()
    rankings = sorted({r for _, r in aucs}, key=lambda r: (r != "words", r))
    print("| ranking | " + " | ".join(f"{k} examples" for k in TAUGHT) + " |")
    print("|---|" + "---:|" * len(TAUGHT))
    for r in rankings:
        print(f"| {r} | " + " | ".join(f"{aucs[k, r]:.3f}" for k in TAUGHT) + " |")
    best = max((r for r in rankings if r != "words"),
               key=lambda r: sum(aucs[k, r] for k in TAUGHT))  # fmt: skip
    ridge, prior = (float(part.split()[1]) for part in best.split(", "))
    topic_model.RIDGE, topic_model.PRIOR = ridge, prior
    print(f"RIDGE = {ridge}\nPRIOR = {prior}\n")


def main(argv: list[str] | None = None) -> int:
    if "--topic-model" in (sys.argv[1:] if argv is None else argv):
        choose_topic_model()
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
