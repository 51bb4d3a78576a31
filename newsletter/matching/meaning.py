"""What a paper is about, against what a topic says: the sentence model's similarity, judged
against the recent listings.

A cosine alone says little: how close "Combinatorics. Discrete mathematics: ..." comes to a
paper depends on how the topic is worded and on the model, and differs from topic to topic. What
carries across topics and fields is the paper's standing among recent papers for that topic
(the z-score of its similarity over the listing window, `standing`) and whether the topic is
the paper's closest one (its margin over the paper's next best topic). A topic's prototype is
the mean of the vectors of its own words: "name. description" and each keyword apart, which
places it better than one text of them all (`topic_parts`, `embed_topics`). Example papers and
readers' votes do not move it: they teach the topic a model of its own (`topic_model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIN_REFERENCE = 20  # fewer recent papers with vectors: no standing can be judged
# Readers' votes on a topic's papers are weak examples: many readers, each with a taste. A
# liked paper weighs this much beside an example paper in the topic's model.
VOTES_WEIGHT = 0.25
MIN_VOTED = 3  # papers a topic's readers must have liked (or disliked) before they count


def topic_parts(name: str, description: str, keywords: Sequence[str]) -> list[str]:
    """Return the texts a topic's prototype is the mean of: its line, then each keyword."""
    line = ". ".join(p.strip().rstrip(".") for p in (name, description) if p.strip())
    return [line + "." if line else "", *(k.strip() for k in keywords if k.strip())]


def embed_topics(embed: Any, topics: Sequence[tuple[str, str, Sequence[str]]]) -> Any:
    """Return one unit prototype per (name, description, keywords), embedding with `embed`."""
    import numpy as np

    parts = [[p for p in topic_parts(*t) if p] or ["topic"] for t in topics]
    flat = [p for group in parts for p in group]
    vectors = np.asarray(embed(flat), dtype=np.float32) if flat else np.zeros((0, 0))
    out, start = [], 0
    for group in parts:
        out.append(vectors[start : start + len(group)].mean(axis=0))
        start += len(group)
    if not out:
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    stacked = np.stack(out)
    return stacked / np.linalg.norm(stacked, axis=1, keepdims=True)


@dataclass(frozen=True)
class Examples:
    """A topic's example papers and the papers it must not take, as vectors (rows)."""

    positive: Any  # k x dimensions, possibly 0 rows
    negative: Any
    liked: Any = ()  # papers the topic placed that its readers voted "more like this" on
    disliked: Any = ()


def prototypes(text_vectors: Any) -> Any:
    """Return one unit prototype per topic from the vectors of its own words."""
    import numpy as np

    out = np.array(text_vectors, dtype=np.float32, copy=True)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class Standing:
    """Papers x topics: each pair's z-score among the reference papers, and its margin over
    the paper's next best topic (the z-score itself when there is one topic)."""

    z: Any
    margin: Any


def standing(similarity: Any, reference: Any) -> Standing | None:
    """Judge papers x topics similarities against the reference rows (the recent listings).

    `reference` is a boolean row mask (papers that have a vector). Rows outside it get zeros.
    None when too few reference papers exist to judge anything.
    """
    import numpy as np

    sims = np.asarray(similarity, dtype=np.float64)
    ref = np.asarray(reference, dtype=bool)
    if ref.sum() < MIN_REFERENCE or sims.shape[1] == 0:
        return None
    mean = sims[ref].mean(axis=0)
    spread = sims[ref].std(axis=0)
    z = (sims - mean) / np.where(spread > 1e-9, spread, 1.0)
    z[~ref] = 0.0
    return Standing(z=z, margin=margins(z))


def with_examples(judged: Standing, by_model: Any, taught: Sequence[bool]) -> Standing:
    """Let a taught topic's pairs stand as high as their standing under the topic's model.

    Where an admin's words miss what the examples are about, the model still places the
    papers like them; where the words are right, the higher of the two changes little.
    """
    import numpy as np

    z = judged.z.copy()
    columns = np.flatnonzero(np.asarray(taught, dtype=bool))
    z[:, columns] = np.maximum(z[:, columns], by_model[:, columns])
    return Standing(z=z, margin=margins(z))


def margins(z: Any) -> Any:
    """Return each pair's z-score minus the paper's best z-score among its other topics."""
    import numpy as np

    if z.shape[1] < 2:
        return z.copy()
    order = np.sort(z, axis=1)
    best, second = order[:, -1:], order[:, -2:-1]
    return z - np.where(z >= best, second, best)
