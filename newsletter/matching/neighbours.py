"""A paper's nearest papers in the sentence model's space, among the recent listings.

Keywords miss papers whose subject the abstract names in its own words; such a paper's nearest
papers often name it. `combine` reads, for each pair, the share of the paper's NEIGHBOURS
nearest papers that the topic's keywords take: a signal beside meaning and keywords.
"""

from __future__ import annotations

from typing import Any

NEIGHBOURS = 8
CHUNK = 1024  # papers whose similarities are held at once: CHUNK x listing floats


def nearest(vectors: Any, rows: list[int], pool: Any) -> Any:
    """Return, for each row, the NEIGHBOURS papers of the pool most similar to it (not itself).

    Every row must be in `pool` (a sorted array of row numbers with a vector).
    """
    import numpy as np

    out = np.zeros((len(rows), NEIGHBOURS), dtype=np.int64)
    candidates = vectors[pool]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        sims = vectors[chunk] @ candidates.T
        own = np.searchsorted(pool, chunk)
        sims[np.arange(len(chunk)), own] = -np.inf
        top = np.argpartition(sims, -NEIGHBOURS, axis=1)[:, -NEIGHBOURS:]
        out[start : start + len(chunk)] = pool[top]
    return out
