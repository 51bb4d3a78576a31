"""A reader's interests in their own words, matched by meaning like a private topic.

The text ("spin liquids in frustrated magnets") is embedded once, when it is set, as the mean
of the vectors of the whole text and of its phrases (split at commas, colons, semicolons and
"and"), as a topic's prototype is the mean of its line and its keywords. A paper is close to
the interests when its standing among the recent listings reaches the setting
`ranking_interest_standing`: the z-score of its similarity to that vector over the papers of
the recent window, the measure topics are judged by (`meaning.standing`). The cut is not
written by hand: it is the one
that gives the dev parts of the labelled sets of several fields their best F1, each topic's
line standing in for a reader's sentence (`benchmarks/fit_interests.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from newsletter.core.config import default
from newsletter.matching.embeddings import (
    MODEL_ID,
    EmbeddingsUnavailable,
    from_bytes,
    load_encoder,
    to_bytes,
)
from newsletter.matching.matches import paper_vectors, recent_paper_ids
from newsletter.matching.meaning import MIN_REFERENCE

MAX_INTERESTS_LENGTH = 1000  # characters: a short paragraph; the model reads 256 word pieces
MAX_PARTS = 24  # phrases embedded beside the whole text: bounded whatever the text
WHY = "close to your interests"
_PHRASES = re.compile(r"[,;:]|\band\b", re.IGNORECASE)


def interest_parts(text: str) -> list[str]:
    """Return the texts a reader's interests are the mean of: the whole, then its phrases."""
    phrases = [p.strip(" .") for p in _PHRASES.split(text)]
    kept = list(dict.fromkeys(p for p in phrases if len(p) > 2 and p != text.strip(" .")))
    return [text, *kept[:MAX_PARTS]]


def embed_interests(texts: Sequence[str]) -> list[tuple[str, bytes] | None]:
    """Return (model, float16 vector) per text, None for an empty one or without the model."""
    wanted = [t for t in dict.fromkeys(texts) if t]
    if not wanted:
        return [None] * len(texts)
    try:
        encoder = load_encoder()
    except EmbeddingsUnavailable:
        return [None] * len(texts)
    import numpy as np

    parts = [interest_parts(t) for t in wanted]
    flat = encoder.embed([p for group in parts for p in group])
    means, start = [], 0
    for group in parts:
        means.append(flat[start : start + len(group)].mean(axis=0))
        start += len(group)
    stacked = np.stack(means)
    unit = stacked / np.linalg.norm(stacked, axis=1, keepdims=True)
    found = dict(zip(wanted, to_bytes(unit), strict=True))
    return [(MODEL_ID, found[t]) if t in found else None for t in texts]


def stored_vector(model: str | None, blob: bytes | None) -> Any | None:
    """Return a stored interests vector as a float32 row, None when absent or of another model."""
    if blob is None or model != MODEL_ID:
        return None
    return from_bytes([blob])[0]


def reader_vector(text: str, model: str | None, blob: bytes | None) -> Any | None:
    """Return a reader's interests vector: the stored one, else (the model was missing when
    the text was set, or is another now) embedded again; None without the model."""
    stored = stored_vector(model, blob)
    if stored is not None or not text:
        return stored
    (embedded,) = embed_interests([text])
    return None if embedded is None else stored_vector(*embedded)


@dataclass(frozen=True)
class InterestStandings:
    """An edition's papers, ready to be judged against any reader's interests vector (or
    the mean of their own papers').

    The standing of a paper is its similarity's z-score over the recent window's papers, as
    `meaning.standing` computes it; from the window's mean vector and covariance it costs
    one product per reader, however many papers the window holds.
    """

    paper_ids: tuple[int, ...]
    vectors: Any  # papers x dimensions, unit rows (zeros: a paper without a vector)
    mean: Any  # the window's mean vector
    covariance: Any  # the window's covariance, dimensions x dimensions

    @classmethod
    def from_vectors(
        cls, paper_ids: Iterable[int], vectors: Any, reference: Any
    ) -> InterestStandings | None:
        """Build from the papers' vectors and the window's; None when too few to judge by."""
        import numpy as np

        ref = np.asarray(reference, dtype=np.float64)
        ref = ref[np.abs(ref).max(axis=1) > 0] if len(ref) else ref
        if len(ref) < MIN_REFERENCE:
            return None
        mean = ref.mean(axis=0)
        centred = ref - mean
        covariance = centred.T @ centred / len(ref)
        return cls(tuple(paper_ids), np.asarray(vectors, dtype=np.float64), mean, covariance)

    def close(
        self, vector: Any, cut: float = default("ranking_interest_standing")
    ) -> dict[int, float]:
        """Return the papers whose standing reaches `cut`, with their standing."""
        return {pid: z for pid, z in self.standing(vector).items() if z >= cut}

    def standing(self, vector: Any) -> dict[int, float]:
        """Return every paper's standing along a vector (papers without a vector left out)."""
        import numpy as np

        v = np.asarray(vector, dtype=np.float64)
        spread = self._spread(v)
        if spread <= 1e-9 or not len(self.paper_ids):
            return {}
        z = (self.vectors @ v - self.mean @ v) / spread
        rows = np.flatnonzero(np.abs(self.vectors).max(axis=1) > 0)
        return {self.paper_ids[i]: round(float(z[i]), 3) for i in rows}

    def similarity_at(self, vector: Any, cut: float) -> float | None:
        """Return the similarity to a vector from which a paper stands `cut` out (None: the
        window's papers do not spread along it). Two small products, whatever the papers."""
        import numpy as np

        v = np.asarray(vector, dtype=np.float64)
        spread = self._spread(v)
        return None if spread <= 1e-9 else float(self.mean @ v + cut * spread)

    def _spread(self, v: Any) -> float:
        """Return the standard deviation of the window's similarities to v."""
        return float(max(v @ self.covariance @ v, 0.0) ** 0.5)


def load_standings(candidate_ids: Sequence[int], *, session: Session) -> InterestStandings | None:
    """Load an edition's papers and the recent window as stored vectors; None where meaning
    cannot be judged (no vectors, or too few)."""
    ids = list(candidate_ids)
    reference = paper_vectors(session=session, paper_ids=recent_paper_ids(session=session))
    vectors = paper_vectors(session=session, paper_ids=ids)
    if reference is None or vectors is None:
        return None
    return InterestStandings.from_vectors(ids, vectors, reference)
