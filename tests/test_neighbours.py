"""Matching by meaning: standings, neighbours and the combined decision, then stored papers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import FeedbackVote, Paper, PaperEmbedding, PaperTopic, Topic
from newsletter.editions.selection import why_from_evidence
from newsletter.matching import combine, embeddings, matches, neighbours
from newsletter.matching.embeddings import MODEL_ID, load_encoder
from newsletter.matching.matches import embed_papers, match_papers
from newsletter.matching.meaning import MIN_REFERENCE, Examples, standing
from newsletter.matching.neighbours import nearest
from newsletter.matching.scoring import PaperText, TopicIndex, TopicMatcher
from newsletter.matching.topics import parse_topics_toml
from newsletter.papers.fetch import store_records
from newsletter.papers.sources import PaperRecord
from tests import factories as f

DAY = date(2026, 11, 27)


def _cluster(n: int, seed: int, spread: float = 0.05) -> np.ndarray:
    """n unit vectors close to one random direction."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=16)
    rows = centre + spread * rng.normal(size=(n, 16))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_standing_is_a_z_score_among_the_reference_papers_and_a_margin_over_the_next_topic():
    sims = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]] * 10)
    reference = np.ones(len(sims), dtype=bool)
    reference[-1] = False  # a paper without a vector: judged as nothing
    judged = standing(sims, reference)
    assert judged is not None
    z0 = (0.9 - sims[:-1, 0].mean()) / sims[:-1, 0].std()
    assert judged.z[0, 0] == pytest.approx(z0)
    assert judged.margin[0, 0] == pytest.approx(judged.z[0, 0] - judged.z[0, 1])
    assert judged.margin[0, 1] == pytest.approx(judged.z[0, 1] - judged.z[0, 0])
    assert (judged.z[-1] == 0).all()
    assert standing(sims[: MIN_REFERENCE - 1], reference[: MIN_REFERENCE - 1]) is None


def test_nearest_finds_the_most_similar_other_papers_in_chunks(monkeypatch) -> None:
    vectors = np.vstack([_cluster(12, 1), _cluster(12, 2)]).astype(np.float32)
    pool = np.arange(len(vectors))
    monkeypatch.setattr(neighbours, "CHUNK", 5)  # several chunks, one of them short
    near = nearest(vectors, pool.tolist(), pool)
    for row, found in enumerate(near):
        assert row not in found
        assert set(found) <= (set(range(12)) if row < 12 else set(range(12, 24)))


def _listing(with_word: int, without: int, others: int) -> tuple[list[PaperText], np.ndarray]:
    """Papers of one kind (the first name the topic's keyword, the next do not) and others."""
    papers = [PaperText(f"Graph colouring {i}", "We colour graphs.") for i in range(with_word)]
    papers += [PaperText(f"Paper {i}", "We count paths in networks.") for i in range(without)]
    papers += [PaperText(f"Other {i}", "We measure rainfall.") for i in range(others)]
    kind = _cluster(with_word + without, 7, spread=0.3)
    rest = _cluster(others, 8, spread=0.6)
    return papers, np.vstack([kind, rest]).astype(np.float32)


def test_a_paper_naming_no_keyword_joins_when_its_meaning_stands_out_and_others_do_not():
    papers, vectors = _listing(with_word=6, without=6, others=40)
    index = TopicIndex([TopicMatcher.compile("graphs", ["graph colouring"])])
    topic = _unit(vectors[:12].mean(axis=0))[None, :]
    signals = combine.measure(index, papers, vectors, topic)
    assert signals is not None
    found = combine.decide(signals)
    assert all(f and f[0][1] >= 1.0 for f in found[:6])  # the keywords' own, as they were
    joined = [i for i in range(6, 12) if found[i]]
    assert joined, "papers of the topic's kind that name no keyword join by meaning"
    for i in joined:
        ((_, score, evidence),) = found[i]
        assert score < 1.0 and any(e.startswith("meaning: close to the topic") for e in evidence)
    assert not any(found[12:]), "papers of another kind never join"


def test_a_category_of_the_topic_is_a_signal_and_an_archive_holds_its_classes():
    papers, vectors = _listing(with_word=0, without=2, others=40)
    papers[0] = PaperText("Paper A", "We count paths.", categories=("math.CO",))
    papers[1] = PaperText("Paper B", "We count paths.", categories=("cs.DS",))
    index = TopicIndex([TopicMatcher.compile("maths", ["unheard of"], categories=["math"])])
    signals = combine.measure(index, papers, vectors, _unit(vectors[:2].mean(axis=0))[None, :])
    assert signals is not None
    assert signals.categories == {(0, 0): "math.CO"}
    assert signals.values[0, 0, combine.SIGNALS.index("category")] == 1.0
    assert signals.values[1, 0, combine.SIGNALS.index("category")] == 0.0


def test_every_paper_of_a_whole_category_topic_is_taken_whatever_its_meaning():
    papers, vectors = _listing(with_word=0, without=3, others=30)
    for i in range(3):
        papers[i] = PaperText(f"Paper {i}", "", categories=("cond-mat.str-el",))
    members = TopicMatcher.compile("sc", [], "", ["cond-mat"], whole_categories=True)
    far = _unit(vectors[-1:])  # the topic's words are nothing like these papers
    signals = combine.measure(TopicIndex([members]), papers, vectors, far, threshold=1.5)
    assert signals is not None
    found = combine.decide(signals, threshold=1.5)
    assert [f[0][:2] for f in found[:3]] == [(0, 1.5)] * 3
    assert all("category: cond-mat.str-el" in f[0][2] for f in found[:3])
    assert found[3:] == [[]] * 30


def test_too_few_papers_with_vectors_leave_the_decision_to_keywords():
    papers, vectors = _listing(with_word=3, without=3, others=10)
    vectors[: len(vectors) - MIN_REFERENCE + 1] = 0.0
    index = TopicIndex([TopicMatcher.compile("graphs", ["graph colouring"])])
    assert combine.measure(index, papers, vectors, _unit(vectors[-1:])) is None


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


FIELDS = Path(__file__).parent / "labelled" / "fields"


def test_a_stored_paper_naming_none_of_a_topics_keywords_joins_it_by_meaning(
    neighbours_app: App,
) -> None:
    # Real papers of several fields and a topic an admin wrote in words: the paper on spanning
    # trees names none of the combinatorics topic's keywords, but that is what it is about.
    app = neighbours_app
    papers = json.loads((FIELDS / "papers.json").read_text(encoding="utf-8"))[:120]
    (spec,) = [
        t
        for t in parse_topics_toml((FIELDS / "topics.toml").read_text(encoding="utf-8"))
        if t.slug == "combinatorics"
    ]
    with app.transaction() as s:
        s.add(Topic(slug=spec.slug, name=spec.name, description=spec.description,
                    keywords=list(spec.keywords)))  # fmt: skip
    records = [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test",
                    arxiv_id=p["key"], categories=p["categories"])
        for p in papers
    ]  # fmt: skip
    store_records(app, records, DAY)
    with app.reading() as s:
        rows = s.execute(
            select(Paper.title, PaperTopic.score, PaperTopic.evidence).join(PaperTopic)
        ).all()
    by_title = {title: (score, evidence) for title, score, evidence in rows}
    score, evidence = by_title["Weighted spanning trees on some self-similar graphs"]
    assert score < 1.0 and evidence[0].startswith("meaning: close to the topic")
    assert why_from_evidence(evidence) == "close in meaning to the topic"
    # Without the sentence model's signals, keywords alone leave it out.
    with app.transaction() as s:
        match_papers(session=s, neighbours=False)
    with app.reading() as s:
        titles = set(s.scalars(select(Paper.title).join(PaperTopic)))
    assert "Weighted spanning trees on some self-similar graphs" not in titles


def test_a_topic_learns_from_its_example_papers_what_its_words_do_not_say():
    papers, vectors = _listing(with_word=0, without=10, others=40)
    index = TopicIndex([TopicMatcher.compile("kind", ["a word nobody writes"])])
    words = _unit(_cluster(1, 99))  # the topic's text says nothing about these papers
    alone = combine.measure(index, papers, vectors, words)
    assert alone is not None and not any(combine.decide(alone))
    examples = [Examples(vectors[:3], vectors[:0])]
    taught = combine.measure(index, papers, vectors, words, examples=examples)
    assert taught is not None
    found = combine.decide(taught)
    assert all(found[i] for i in range(3, 10)), "papers like the examples join"
    assert not any(found[10:]), "papers of another kind do not"


def test_stored_example_papers_teach_a_topic_through_the_cli(neighbours_app: App, run) -> None:
    # A topic whose words fit none of the papers: its three examples say what it is about.
    app = neighbours_app
    papers = json.loads((FIELDS / "papers.json").read_text(encoding="utf-8"))[:120]
    records = [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test",
                    arxiv_id=p["key"], categories=p["categories"])
        for p in papers
    ]  # fmt: skip
    store_records(app, records, DAY)
    labels = json.loads((FIELDS / "labels.json").read_text(encoding="utf-8"))
    kind = [p["key"] for p in papers if "combinatorics" in labels[p["key"]]]
    run.env["NEWSLETTER_MATCH_NEIGHBOURS"] = "true"
    examples = ",".join(kind[:3])
    result = run("topics", "add", "kind", "--name", "Our reading group",
                 "--keywords", "a word nobody writes", "--examples", examples)  # fmt: skip
    assert result.exit_code == 0, result.output
    with app.reading() as s:
        taken = set(s.scalars(select(Paper.arxiv_id).join(PaperTopic)))
    assert set(kind[:3]) <= taken, "the examples themselves"
    assert taken & set(kind[3:]), "a paper like them that names none of the topic's words"
    # Without its examples the topic's words alone do not take it.
    assert run("topics", "edit", "kind", "--examples", "").exit_code == 0
    with app.reading() as s:
        untaught = set(s.scalars(select(Paper.arxiv_id).join(PaperTopic)))
    assert (taken & set(kind[3:])) - untaught


def test_a_topics_model_follows_its_examples_and_without_them_it_matches_as_before(
    neighbours_app: App, run
) -> None:
    app = neighbours_app
    papers = json.loads((FIELDS / "papers.json").read_text(encoding="utf-8"))[:120]
    records = [
        PaperRecord(title=p["title"], abstract=p["abstract"], source="test",
                    arxiv_id=p["key"], categories=p["categories"])
        for p in papers
    ]  # fmt: skip
    store_records(app, records, DAY)
    labels = json.loads((FIELDS / "labels.json").read_text(encoding="utf-8"))
    of = {k: [p["key"] for p in papers if k in labels[p["key"]]] for k in ("pde", "nanoscale")}
    run.env["NEWSLETTER_MATCH_NEIGHBOURS"] = "true"

    def stored() -> set[tuple[str, float, tuple[str, ...]]]:
        with app.reading() as s:
            rows = s.execute(select(Paper.arxiv_id, PaperTopic.score, PaperTopic.evidence)
                             .join(PaperTopic))  # fmt: skip
            return {(a, score, tuple(evidence)) for a, score, evidence in rows}

    words = ("--name", "Our reading group", "--keywords", "a word nobody writes")
    assert run("topics", "add", "kind", *words).exit_code == 0
    untaught = stored()
    taken: dict[str, set[str]] = {}
    for kind, keys in of.items():
        result = run("topics", "edit", "kind", "--examples", ",".join(keys[:3]))
        assert result.exit_code == 0, result.output
        taken[kind] = {a for a, _, _ in stored()}
        assert taken[kind] & set(keys[3:]), f"papers like the {kind} examples join"
    for kind, other in (("pde", "nanoscale"), ("nanoscale", "pde")):
        like = set(of[kind][3:]) - set(of[other]) - {a for a, _, _ in untaught}
        assert len(taken[kind] & like) > len(taken[other] & like), "it left the earlier examples"
    assert run("topics", "edit", "kind", "--examples", "").exit_code == 0
    assert stored() == untaught, "without examples: the same matches as before it had any"


def test_only_a_topics_own_readers_votes_on_its_papers_teach_it(app: App) -> None:
    with app.transaction() as s:
        llm, rl = f.topic(s, "llm"), f.topic(s, "rl")
        liked = f.paper(s, "Liked", topics={llm: 2.0})
        disliked = f.paper(s, "Disliked", topics={llm: 2.0})
        other = f.paper(s, "Of another topic", topics={rl: 2.0})
        reader = f.subscriber(s, "reader@example.org", [llm])
        stranger = f.subscriber(s, "stranger@example.org", [rl])
        s.add_all([
            FeedbackVote(subscriber_id=reader.id, paper_id=liked.id, vote=1),
            FeedbackVote(subscriber_id=reader.id, paper_id=disliked.id, vote=-1),
            FeedbackVote(subscriber_id=stranger.id, paper_id=disliked.id, vote=1),  # not llm's
            FeedbackVote(subscriber_id=reader.id, paper_id=other.id, vote=1),  # not rl's reader
        ])  # fmt: skip
    with app.reading() as s:
        votes = matches._readers_votes(s)
    assert votes == {llm.id: ([liked.id], [disliked.id])}
