"""Measure whether semantic similarity to a topic's text improves the lexical matcher.

A paper's and a topic's vectors are normalised sums of static WordPiece token vectors
distilled from all-MiniLM-L6-v2 by scripts/build_static_embeddings.py (no network, no torch
here: a table lookup and numpy). The table is not shipped: on the labelled papers it did
not beat the lexical matcher (see the report this prints), so the product does not use it.

Run: `.venv/bin/python benchmarks/semantic.py --table /tmp/minilm_static` (needs numpy).
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MAX_WORD_CHARS = 100  # longer "words" are [UNK], as in BERT's WordPiece
SPECIAL = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
_SPLIT = re.compile(r"[^\W_]+|\S")  # "_" and other punctuation stand alone, as in BERT


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


class WordPiece:
    """BERT's uncased tokenizer: lowercase, strip accents, split punctuation, longest pieces."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.unknown = self.ids["[UNK]"]
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        """Return the token ids of a text (without [CLS] and [SEP])."""
        out: list[int] = []
        for word in _SPLIT.findall(text.lower()):
            ids = self._cache.get(word)
            if ids is None:
                ids = self._cache[word] = self._pieces(_strip_accents(word))
            out.extend(ids)
        return out

    def _pieces(self, word: str) -> list[int]:
        """Split one word greedily into the longest vocabulary pieces, or [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unknown]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    pieces.append(self.ids[piece])
                    start = end
                    break
            else:
                return [self.unknown]
        return pieces


class StaticEmbedder:
    """Embed texts as normalised sums of static token vectors."""

    def __init__(self, vocab: Sequence[str], vectors: Any) -> None:
        self.tokenizer = WordPiece(vocab)
        self.vectors = vectors.astype("float32")
        for token in SPECIAL:  # they carry no meaning of their own
            self.vectors[self.tokenizer.ids[token]] = 0.0

    @classmethod
    def load(cls, directory: Path) -> StaticEmbedder:
        """Read vocab.txt (one token a line) and vectors.npy (one row per token)."""
        import numpy as np

        vocab = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
        return cls(vocab, np.load(directory / "vectors.npy", allow_pickle=False))

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one unit-length row per text (zeros for a text without known tokens)."""
        import numpy as np

        out = np.zeros((len(texts), self.vectors.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self.tokenizer.encode(text)
            if ids:
                out[row] = self.vectors[ids].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def similarities(embedder: StaticEmbedder, topics: list[Any], papers: list[Any]) -> Any:
    """Return papers x topics cosine similarities and their z-scores across each paper's row."""
    paper_vecs = embedder.embed([f"{p.paper.title}. {p.paper.abstract}" for p in papers])
    topic_vecs = embedder.embed(
        [f"{t.name}: {t.description} {', '.join(t.keywords)}" for t in topics]
    )
    sims = paper_vecs @ topic_vecs.T
    return sims, (sims - sims.mean(1, keepdims=True)) / sims.std(1, keepdims=True)


def combined_predictions(
    lexical: Any, z: Any, topics: list[Any], papers: list[Any], weight: float, centre: float
) -> set[tuple[str, str]]:
    """Accept pairs whose lexical score plus weight * clip(z - centre, -1, 1) reaches 1.0."""
    import numpy as np

    total = lexical + weight * np.clip(z - centre, -1.0, 1.0)
    return {(papers[i].key, topics[j].slug) for i, j in zip(*np.nonzero(total >= 1.0), strict=True)}


def report(table: Path) -> str:
    """Pick the semantic weight on the dev part only, then score every part."""
    import matching as bench
    import numpy as np

    from newsletter.matching import TopicMatcher

    topics, papers = bench.load_topics(), bench.load_labelled()
    compiled = [
        TopicMatcher.compile(t.slug, t.keywords, t.description, t.categories, name=t.name)
        for t in topics
    ]
    lexical = np.array([[m.score(p.paper)[0] for m in compiled] for p in papers])
    _, z = similarities(StaticEmbedder.load(table), topics, papers)
    dev = [p for p in papers if not p.held_out]
    grid = [(w, c) for w in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0) for c in (0.5, 1.0, 1.5, 2.0)]
    scored = {g: combined_predictions(lexical, z, topics, papers, *g) for g in grid}
    # Ties go to the smaller weight: semantic must earn its place on dev.
    best = max(grid, key=lambda g: (round(bench.score(scored[g], dev).f1, 4), -g[0]))
    lines = [f"semantic weight {best[0]}, centre z {best[1]} (chosen on dev)", ""]
    lines.append(bench.HEADER.format("set / matcher"))
    for name, subset in (("dev", dev), ("held-out", [p for p in papers if p.held_out])):
        lines.append(bench._row(f"{name} / lexical", bench.score(scored[(0.0, 0.5)], subset)))
        lines.append(bench._row(f"{name} / + semantic", bench.score(scored[best], subset)))
    held = [p for p in papers if p.held_out]
    lines += ["", "| weight | centre z | dev F1 | held-out F1 |", "|---|---|---|---|"]
    for g in grid:
        dev_f1, held_f1 = bench.score(scored[g], dev).f1, bench.score(scored[g], held).f1
        lines.append(f"| {g[0]} | {g[1]} | {dev_f1:.3f} | {held_f1:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="vocab.txt + vectors.npy")
    print(report(parser.parse_args(argv).table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
