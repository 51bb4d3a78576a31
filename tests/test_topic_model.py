"""A topic's own model of its examples: a linear classifier over the vectors, and its standing."""

from __future__ import annotations

import numpy as np

from newsletter.matching import combine, topic_model
from newsletter.matching.meaning import MIN_VOTED, Examples, standing
from newsletter.matching.scoring import PaperText, TopicIndex, TopicMatcher
from newsletter.matching.topic_model import is_taught, listing_of, model_standing


def _cluster(n: int, seed: int, spread: float = 0.3) -> np.ndarray:
    """n unit vectors around one random direction of 16 dimensions."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=16) + spread * rng.normal(size=(n, 16))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _listing() -> tuple[np.ndarray, np.ndarray]:
    """Ten papers of kind A, ten of kind B, forty others; and words that point at neither."""
    vectors = np.vstack([_cluster(10, 11), _cluster(10, 12), _cluster(40, 14, spread=0.8)])
    words = _cluster(1, 13, spread=0.0)
    return vectors, words


def _none() -> np.ndarray:
    return np.zeros((0, 16))


def test_a_topic_without_examples_has_no_model_and_stands_by_its_words_as_before():
    vectors, words = _listing()
    reference = np.ones(len(vectors), dtype=bool)
    assert not is_taught(None) and not is_taught(Examples(_none(), _none()))
    assert not model_standing(vectors, reference, words, [None]).any()
    papers = [PaperText(f"Paper {i}", "We study things.") for i in range(len(vectors))]
    index = TopicIndex([TopicMatcher.compile("t", ["a word nobody writes"])])
    signals = combine.measure(index, papers, vectors, words, examples=[None])
    assert signals is not None
    assert not signals.values[..., combine.SIGNALS.index("examples")].any()
    by_words = standing(vectors @ words.T, reference)
    assert by_words is not None
    assert np.allclose(signals.standing.z, by_words.z)  # meaning: the words', untouched


def test_the_model_follows_its_examples_and_changes_when_they_change():
    vectors, words = _listing()
    reference = np.ones(len(vectors), dtype=bool)
    of_a = model_standing(vectors, reference, words, [Examples(vectors[:3], _none())])[:, 0]
    of_b = model_standing(vectors, reference, words, [Examples(vectors[10:13], _none())])[:, 0]
    assert of_a[3:10].mean() > of_a[20:].mean() + 1.5, "papers like A's examples stand out"
    assert of_b[13:20].mean() > of_b[20:].mean() + 1.5
    assert of_a[3:10].mean() > of_a[13:20].mean() + 1.5
    assert of_b[13:20].mean() > of_b[3:10].mean() + 1.5


def test_not_examples_and_the_other_topics_examples_stand_low_under_a_topics_model():
    vectors, words = _listing()
    reference = np.ones(len(vectors), dtype=bool)
    # A topic about A and B whose not-examples are three of B's papers.
    mixed = Examples(vectors[[0, 1, 10, 11]], _none())
    apart = Examples(vectors[[0, 1, 10, 11]], vectors[12:15])
    before = model_standing(vectors, reference, words, [mixed])[:, 0]
    after = model_standing(vectors, reference, words, [apart])[:, 0]
    assert after[15:20].mean() < before[15:20].mean() - 0.5
    # Another topic's examples of B are the first topic's negatives too.
    other = Examples(vectors[12:15], _none())
    both = model_standing(vectors, reference, np.vstack([words, words]), [mixed, other])
    assert both[15:20, 0].mean() < before[15:20].mean() - 0.5


def test_readers_likes_teach_a_topic_once_there_are_enough():
    vectors, words = _listing()
    reference = np.ones(len(vectors), dtype=bool)
    liked = vectors[:MIN_VOTED]
    few = Examples(_none(), _none(), liked[:-1], ())
    assert not is_taught(few)
    assert not model_standing(vectors, reference, words, [few]).any()
    enough = Examples(_none(), _none(), liked, ())
    assert is_taught(enough)
    standing_ = model_standing(vectors, reference, words, [enough])[:, 0]
    assert standing_[MIN_VOTED:10].mean() > standing_[20:].mean() + 1.0


def test_votes_weigh_less_than_examples():
    vectors, words = _listing()
    listing = listing_of(vectors, np.ones(len(vectors), dtype=bool))
    a_liked = Examples(vectors[10:12], _none(), vectors[:MIN_VOTED], ())
    b_liked = Examples(vectors[:2], _none(), vectors[10 : 10 + MIN_VOTED], ())
    centre_a, centre_b = vectors[:10].mean(axis=0), vectors[10:20].mean(axis=0)
    w = topic_model.fit_weights(listing, words[0] * 0, a_liked)
    assert w @ (centre_b - centre_a) > 0, "two examples of B outweigh three likes of A"
    w = topic_model.fit_weights(listing, words[0] * 0, b_liked)
    assert w @ (centre_a - centre_b) > 0


def test_the_words_pull_the_weights_unless_they_miss_the_examples():
    vectors, words = _listing()
    reference = np.ones(len(vectors), dtype=bool)
    listing = listing_of(vectors, reference)
    taught = Examples(vectors[:3], _none())
    pulled = topic_model.fit_weights(listing, words[0], taught)
    alone = topic_model.fit_weights(listing, words[0] * 0, taught)
    cosine = pulled @ words[0] / np.linalg.norm(pulled)
    assert cosine > alone @ words[0] / np.linalg.norm(alone) + 0.2
    # A topic whose words miss its examples ("unheld") learns from the examples alone.
    free = model_standing(vectors, reference, words, [taught], unheld=[True])[:, 0]
    judged = standing(((vectors - listing.centre) @ alone)[:, None], reference)
    assert judged is not None and np.allclose(free, judged.z[:, 0])
