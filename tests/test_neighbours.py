"""Weak matches that the nearest neighbours confirm: the rule, then stored papers end to end."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import date

import numpy as np
import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import PaperEmbedding, PaperTopic, Topic
from newsletter.matching import embeddings
from newsletter.matching.embeddings import MODEL_ID, load_encoder
from newsletter.matching.matches import embed_papers, match_papers
from newsletter.matching.neighbours import NEIGHBOURS, admit_by_neighbours, score_with_neighbours
from newsletter.matching.scoring import PaperText, TopicIndex, TopicMatcher
from newsletter.papers.fetch import store_records
from newsletter.papers.sources import PaperRecord

DAY = date(2026, 11, 27)


def _cluster(n: int, seed: int, spread: float = 0.05) -> np.ndarray:
    """n unit vectors close to one random direction."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=16)
    rows = centre + spread * rng.normal(size=(n, 16))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_weak_pair_joins_when_most_neighbours_match_and_only_then() -> None:
    # Papers 0-8 are one kind, 9-17 another; topic 0 matched papers 1-8 on their keywords.
    vectors = np.vstack([_cluster(9, 1), _cluster(9, 2)]).astype(np.float32)
    scored: list[list] = [[] for _ in range(18)]
    for i in range(1, 9):
        scored[i] = [(0, 1.5, ['title: "LLM"'])]
    scored[0] = [(0, 0.6, ["category: cs.CL"])]  # some evidence, below the threshold
    scored[9] = [(0, 0.6, ["category: cs.CL"])]  # the same, among papers of another kind
    out = admit_by_neighbours(scored, vectors, 1.0)
    assert out[0] == [(0, 0.6, ["category: cs.CL", "neighbours: 8 of the 8 most similar papers"])]
    assert out[9] == []
    assert out[1:9] == scored[1:9]


def test_no_evidence_or_no_vector_is_never_admitted() -> None:
    # Papers 0-9 are one kind: 0-4 match topic 0, 5 and 6 have some evidence, 7-9 none.
    vectors = np.vstack([_cluster(10, 3), _cluster(9, 5)]).astype(np.float32)
    scored: list[list] = [[(0, 1.2, ["x"])] for _ in range(5)] + [[] for _ in range(14)]
    scored[5] = [(0, 0.3, ["late mention"])]
    scored[6] = [(0, 0.3, ["late mention"])]
    vectors[6] = 0.0  # stored without a vector: neither admitted nor anyone's neighbour
    out = admit_by_neighbours(scored, vectors, 1.0)
    assert out[5] == [(0, 0.3, ["late mention", "neighbours: 5 of the 8 most similar papers"])]
    assert out[6] == [] and all(out[i] == [] for i in range(7, 19))
    # Four keyword matches among the eight are enough; three are not.
    scored[4] = []
    assert admit_by_neighbours(scored, vectors, 1.0)[5][0][2][-1].startswith("neighbours: 4 ")
    scored[3] = []
    assert admit_by_neighbours(scored, vectors, 1.0)[5] == []


def test_a_listing_smaller_than_the_neighbourhood_admits_nothing() -> None:
    vectors = _cluster(NEIGHBOURS, 4).astype(np.float32)
    scored = [[(0, 2.0, ["x"])] for _ in range(NEIGHBOURS - 1)] + [[(0, 0.5, ["y"])]]
    assert admit_by_neighbours(scored, vectors, 1.0)[-1] == []


def test_a_paper_of_a_whole_category_topic_needs_no_neighbours() -> None:
    members = TopicMatcher.compile("sc", [], "", ["cond-mat"], whole_categories=True)
    papers = [PaperText(f"Paper {i}", "", categories=["cond-mat.str-el"]) for i in range(3)]
    papers += [PaperText(f"Other {i}", "", categories=["cs.LG"]) for i in range(9)]
    vectors = _cluster(12, 6).astype(np.float32)
    out = score_with_neighbours(TopicIndex([members]), papers, vectors, threshold=1.5)
    assert out[:3] == [[(0, 1.5, ["category: cond-mat.str-el"])]] * 3
    assert out[3:] == [[]] * 9


LLM_PAPERS = [
    ("Scaling instruction tuning for large language models", "We fine-tune large language "
     "models on instructions and measure how answers improve with more data."),
    ("Prompting large language models to reason", "Chain prompts make large language models "
     "solve arithmetic word problems step by step."),
    ("Evaluating large language models as judges", "Large language models grade answers; we "
     "compare their grades with people's."),
    ("Long context in large language models", "We extend the context window of large language "
     "models to a million tokens of text."),
    ("Large language models forget facts during fine-tuning", "Fine-tuning large language "
     "models on new text erases facts they knew; we measure how much."),
    ("Tokenizers for large language models", "The vocabulary of large language models decides "
     "how text is split; we compare tokenizers on many languages."),
    ("Large language models write code", "Large language models generate programs from "
     "descriptions; we test them on programming problems."),
    ("Calibrating the confidence of large language models", "Large language models are "
     "overconfident; we calibrate the probabilities they give their answers."),
    ("Distilling large language models", "Small students learn from the text a large "
     "language model writes."),
]  # fmt: skip
ROBOT_PAPERS = [
    ("Robot arms grasp unseen objects", "A robot learns to pick up objects it has never seen."),
    ("Legged robots walk on ice", "A quadruped robot keeps its balance on slippery ground."),
    ("Drones map forests", "A drone flies under the canopy and maps the trees."),
]
# The rest of a listing, so that "large language model" is not in most of its papers.
OTHER_PAPERS = [
    (f"A study of {subject}", f"We measure {subject} in new ways and report what we find.")
    for subject in (
        "protein folding", "crop yields", "river floods", "bird migration", "solar cells",
        "battery aging", "earthquake early warning", "traffic lights", "coral reefs",
        "glacier melt", "wind turbines", "heart rhythms", "sleep stages", "soil carbon",
        "ocean waves", "bridge cracks", "air quality", "forest fires", "star formation",
        "galaxy shapes", "gene expression", "cell division", "drug doses", "bone density",
        "urban heat", "rainfall", "power grids", "water pipes", "snow cover", "dust storms",
    )
]  # fmt: skip
# Names the topic's keyword once, late: too little alone; its subject is the topic's.
WEAK = ("Chatbots that answer from their training text", "A pretrained transformer chatbot "
        "answers questions from what it read during pre-training. We probe its answers on "
        "trivia. Its answers resemble those of a large language model.")  # fmt: skip


@pytest.fixture
def neighbours_app(settings: Settings) -> App:
    application = App(dataclasses.replace(settings, match_neighbours=True))
    application.ensure_schema()
    yield application
    application.close()


def _records(papers: list[tuple[str, str]], categories: list[str] = ()) -> list[PaperRecord]:
    return [
        PaperRecord(title=t, abstract=a, source="test", categories=list(categories))
        for t, a in papers
    ]


def test_stored_papers_are_embedded_once_and_a_weak_one_joins_its_neighbours(
    neighbours_app: App,
) -> None:
    app = neighbours_app
    with app.transaction() as s:
        s.add(Topic(slug="llm", name="LLMs", keywords=["large language model"]))
    listing = LLM_PAPERS + ROBOT_PAPERS + OTHER_PAPERS
    first = store_records(app, _records(listing), DAY)
    assert first.embedded == len(listing)
    report = store_records(app, _records([WEAK]), DAY)
    assert report.embedded == 1 and report.topic_matches == 1
    with app.transaction() as s:
        rows = s.scalars(select(PaperTopic).where(PaperTopic.paper_id == report.paper_ids[0]))
        (row,) = rows.all()
        assert row.score < 1.0 and row.evidence[0] == 'abstract: "large language model"'
        assert row.evidence[-1].startswith("neighbours: ")
        stored = s.scalar(select(func.count()).select_from(PaperEmbedding))
        assert stored == len(listing) + 1
        assert embed_papers(session=s, paper_ids=report.paper_ids, encoder=load_encoder()) == 0
    # Matching without neighbours (or without vectors) leaves the weak paper out.
    with app.transaction() as s:
        stats = match_papers(session=s, paper_ids=report.paper_ids, neighbours=False)
    assert stats.matches == 0


def test_a_vector_of_another_model_is_replaced(neighbours_app: App) -> None:
    app = neighbours_app
    report = store_records(app, _records(ROBOT_PAPERS), DAY)
    with app.transaction() as s:
        for row in s.scalars(select(PaperEmbedding)):
            row.model = "an-older-model"
    with app.transaction() as s:
        done = embed_papers(session=s, paper_ids=report.paper_ids, encoder=load_encoder())
    assert done == len(ROBOT_PAPERS)
    with app.transaction() as s:
        assert set(s.scalars(select(PaperEmbedding.model))) == {MODEL_ID}


def test_without_the_model_papers_are_stored_and_matched_by_keywords(
    neighbours_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "a_model_package_that_is_not_installed")
    load_encoder.cache_clear()
    try:
        with neighbours_app.transaction() as s:
            s.add(Topic(slug="robots", name="Robotics", keywords=["robot"]))
        report = store_records(neighbours_app, _records(ROBOT_PAPERS), DAY)
    finally:
        load_encoder.cache_clear()
    assert report.embedded is None and report.topic_matches == 2


def test_the_model_runs_before_the_write_transaction_opens(
    neighbours_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedding costs CPU seconds on a big listing: the write lock must not wait for it."""
    app = neighbours_app
    in_transaction = []
    calls: list[bool] = []
    real_transaction = App.transaction

    def watched_transaction(self: App, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        in_transaction.append(True)
        try:
            with real_transaction(self, *args, **kwargs) as session:
                yield session
        finally:
            in_transaction.pop()

    real_embed = embeddings.Encoder.embed

    def watched_embed(self, texts):  # noqa: ANN001, ANN202
        calls.append(bool(in_transaction))
        return real_embed(self, texts)

    monkeypatch.setattr(App, "transaction", contextlib.contextmanager(watched_transaction))
    monkeypatch.setattr(embeddings.Encoder, "embed", watched_embed)
    report = store_records(app, _records(ROBOT_PAPERS + OTHER_PAPERS[:5]), DAY)
    assert report.embedded == len(ROBOT_PAPERS) + 5
    assert calls == [False]  # once, for the whole batch, and outside any transaction


def test_a_topic_most_of_the_listing_matches_admits_only_on_a_clear_majority() -> None:
    # One kind of paper, and topic 0 matches 7 of its 12: any paper's neighbours are mostly
    # topic 0 by chance alone, so a weak pair needs more than half of them to join.
    vectors = _cluster(13, 6, spread=0.3).astype(np.float32)
    scored: list[list] = [[(0, 1.5, ["x"])] for _ in range(7)] + [[] for _ in range(5)]
    scored.append([(0, 0.6, ["weak"])])
    assert admit_by_neighbours(scored, vectors, 1.0)[-1] == []
