"""The sentence model: BERT's tokenizer, the shipped MiniLM on onnxruntime, stored vectors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from newsletter.matching import embeddings
from newsletter.matching.embeddings import (
    DIMENSIONS,
    MAX_TOKENS,
    EmbeddingsUnavailable,
    from_bytes,
    load_encoder,
    load_tokenizer,
    paper_text,
    to_bytes,
)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        # The ids the model's own tokenizer (Hugging Face `tokenizers`) gives these texts.
        (
            "Héllo wörld! LLMs fine-tune 東京.",
            [101, 7592, 2088, 999, 2222, 5244, 2986, 1011, 8694, 1879, 1755, 1012, 102],
        ),
        (
            "Self-Distillation (β-OPSD) at 10.5%",
            [101, 2969, 1011, 4487, 16643, 20382, 1006, 1156, 1011, 23092, 2094, 1007, 2012,
             2184, 1012, 1019, 1003, 102],
        ),
    ],
)  # fmt: skip
def test_word_pieces_are_the_models_own(text: str, ids: list[int]) -> None:
    assert load_tokenizer().encode(text).ids == ids


def test_long_texts_are_cut_to_the_models_length() -> None:
    ids = load_tokenizer().encode("word " * 1000).ids
    assert len(ids) == MAX_TOKENS and ids[0] == 101 and ids[-1] == 102


def test_control_characters_and_overlong_words_do_not_break_the_tokenizer() -> None:
    tokenizer = load_tokenizer()
    assert tokenizer.encode("a\x00b\x07c").ids == tokenizer.encode("abc").ids
    assert tokenizer.encode("x" * 150).ids == [101, tokenizer.token_to_id("[UNK]"), 102]


def test_similar_sentences_are_closer_than_unrelated_ones() -> None:
    vectors = load_encoder().embed(
        ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]
    )
    assert vectors.shape == (3, DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    # The published all-MiniLM-L6-v2 similarities are 0.755 and -0.04 (int8: within 0.01).
    assert abs(sims[0, 1] - 0.755) < 0.01 and abs(sims[0, 2]) < 0.1


def test_a_paper_is_the_same_vector_alone_or_in_a_batch_with_longer_ones() -> None:
    encoder = load_encoder()
    short = paper_text("Speculative decoding for LLMs", "We draft tokens with a small model.")
    longer = paper_text("Robot grasping", "We train a robot arm to grasp objects. " * 20)
    alone = encoder.embed([short])[0]
    batched = encoder.embed([longer, short, longer])[1]
    assert float(alone @ batched) > 0.999


def test_stored_vectors_round_trip_as_float16() -> None:
    vectors = load_encoder().embed(["quantization of LLMs", "robot navigation"])
    blobs = list(to_bytes(vectors))
    assert [len(b) for b in blobs] == [2 * DIMENSIONS] * 2
    assert np.allclose(from_bytes(blobs), vectors, atol=1e-3)
    assert from_bytes([]).shape == (0, DIMENSIONS)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sentence model's package as on a machine where it could not be installed."""
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "a_model_package_that_is_not_installed")
    load_encoder.cache_clear()
    yield
    load_encoder.cache_clear()


def test_without_the_model_loading_says_what_to_install(no_model: None) -> None:
    with pytest.raises(EmbeddingsUnavailable, match=r"pip install daily-papers-newsletter"):
        load_encoder()
