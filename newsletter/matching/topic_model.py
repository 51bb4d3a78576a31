"""A topic's own model, learned from its example papers: a linear classifier over the vectors.

As arxiv-sanity trains a linear classifier per tag, a topic with examples (or enough of its
readers' votes) gets a weight vector over the sentence model's space. On one side are the
papers it should take (its examples; the papers its readers liked, weaker); on the other the
papers it must not take (its not-examples, the papers its readers disliked, the other topics'
examples) and the recent listings, which are mostly not the topic's. It is a weighted ridge
regression (a linear discriminant) in which each class weighs as much as the other whatever its
size, pulled toward the topic's own words (`PRIOR`): three examples are samples of a topic, not
its definition, so they bend the words' direction rather than replace it (the more examples,
the surer the direction they bend it toward). Where the words place the examples poorly they
are no guide, and the model learns from the examples alone.

Fitting needs one d x d system per taught topic; the listings' scatter is shared by all. A
paper's decision value is judged as its standing among the recent listings (`model_standing`),
as the meaning is. Nothing is stored: the models are refitted from the stored vectors whenever
a listing is matched, so a topic follows its examples as soon as they change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.matching.meaning import MIN_VOTED, VOTES_WEIGHT, Examples, standing

# How hard the weights are pulled toward the topic's words (unit vectors: the listings'
# scatter has a trace under 1). Chosen on the dev parts of the labelled sets, with 3, 6 and 10
# examples per topic (benchmarks/fit_matching.py --topic-model).
RIDGE = 0.3
PRIOR = 1.0  # the length of the words' direction the weights are pulled toward


@dataclass(frozen=True)
class Listing:
    """The recent listings' papers with a vector, as the models see them: centred rows."""

    centre: Any  # the mean vector
    scatter: Any  # d x d: the mean outer product of the centred rows


def listing_of(vectors: Any, reference: Any) -> Listing:
    """Summarise the reference rows (papers with a vector) once for every topic's model."""
    import numpy as np

    rows = np.asarray(vectors, dtype=np.float64)[np.asarray(reference, dtype=bool)]
    centre = rows.mean(axis=0)
    centred = rows - centre
    return Listing(centre, centred.T @ centred / len(rows))


def fit_weights(listing: Listing, words: Any, taught: Examples, others: Any = ()) -> Any:
    """Return a topic's weights (d) from its examples, its words and the other topics' examples.

    Targets are 1 for the papers the topic should take and 0 for the others. The listing, the
    positives and the labelled negatives each weigh 1 in all, however many papers they hold.
    """
    import numpy as np

    d = len(listing.centre)
    system = np.zeros((d + 1, d + 1))  # the last row and column: the intercept
    system[:d, :d] = listing.scatter + RIDGE * np.eye(d)
    system[d, d] = 1.0  # the listing's centred rows sum to zero: only its weight is left
    target = np.zeros(d + 1)
    target[:d] = RIDGE * PRIOR * np.asarray(words, dtype=np.float64)
    for rows, weights, label in _classes(taught, others):
        centred = np.hstack([rows - listing.centre, np.ones((len(rows), 1))])
        system += (centred * weights[:, None]).T @ centred
        target += label * (weights @ centred)
    return np.linalg.solve(system, target)[:d]


def is_taught(found: Examples | None) -> bool:
    """Tell whether a topic has a model: examples or not-examples, or enough readers' votes."""
    return found is not None and any(len(rows) for rows, _, _ in _classes(found, ()))


def model_standing(
    vectors: Any,
    reference: Any,
    words: Any,
    examples: Sequence[Examples | None],
    unheld: Sequence[bool] = (),
) -> Any:
    """Return papers x topics: each paper's standing under its topic's model (0 without one).

    `words` holds one unit prototype per topic from its own words; a topic has a model when
    its examples teach it (`is_taught`); the other topics' example papers are its negatives. A
    topic marked in `unheld` (its words miss its examples) learns from its examples alone.
    """
    import numpy as np

    out = np.zeros((len(vectors), len(words)))
    taught = [t for t, found in enumerate(examples) if is_taught(found)]
    if not taught:
        return out
    listing = listing_of(vectors, reference)
    for t in taught:
        found = examples[t]
        assert found is not None
        prior = words[t] * (0.0 if t < len(unheld) and unheld[t] else 1.0)
        weights = fit_weights(listing, prior, found, _others(examples, t))
        judged = standing(((vectors - listing.centre) @ weights)[:, None], reference)
        if judged is not None:
            out[:, t] = judged.z[:, 0]
    return out


def _classes(taught: Examples, others: Any) -> list[tuple[Any, Any, float]]:
    """Return each class that has papers as (rows, weights summing to 1, target)."""
    liked = taught.liked if len(taught.liked) >= MIN_VOTED else ()
    disliked = taught.disliked if len(taught.disliked) >= MIN_VOTED else ()
    classes = [
        (_weighted([(taught.positive, 1.0), (liked, VOTES_WEIGHT)]), 1.0),
        (_weighted([(taught.negative, 1.0), (disliked, VOTES_WEIGHT), (others, 1.0)]), 0.0),
    ]
    return [(rows, weights, label) for (rows, weights), label in classes if len(rows)]


def _weighted(groups: list[tuple[Any, float]]) -> tuple[Any, Any]:
    """Stack groups of rows, each row weighing its group's weight, the whole weighing 1."""
    import numpy as np

    kept = [(np.asarray(rows, dtype=np.float64), w) for rows, w in groups if len(rows)]
    if not kept:
        return np.zeros((0, 0)), np.zeros(0)
    rows = np.vstack([r for r, _ in kept])
    weights = np.concatenate([np.full(len(r), w) for r, w in kept])
    return rows, weights / weights.sum()


def _others(examples: Sequence[Examples | None], t: int) -> Any:
    """Return the other topics' example papers that are not also topic t's examples."""
    import numpy as np

    own = examples[t]
    mine = {np.asarray(r).tobytes() for r in (own.positive if own is not None else ())}
    rows = [
        r
        for s, found in enumerate(examples)
        if s != t and found is not None
        for r in found.positive
        if np.asarray(r).tobytes() not in mine
    ]
    return np.asarray(rows) if rows else ()
