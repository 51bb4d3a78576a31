"""A reader's votes rank their next digests: more of what they liked, less of what they did not."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import mailbox
from datetime import timedelta

import pytest

from newsletter.core.app import App
from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.models import Delivery, Edition, FeedbackVote
from newsletter.delivery import service as sending
from newsletter.editions import readers as readers_module
from newsletter.editions.readers import Reader
from newsletter.editions.selection import EditionPapers, why_from_evidence
from newsletter.matching import feedback, profiles
from newsletter.matching.interests import InterestStandings
from newsletter.matching.seeds import Seed
from newsletter.ranking.inputs import (
    NO_RULES,
    Candidate,
    Candidates,
    EditionRules,
    Pick,
    Reason,
    Taste,
    Why,
)
from newsletter.ranking.rank import rank
from newsletter.ranking.weights import RankingWeights
from tests import factories as f

DAY1, DAY2 = f.DAY, f.DAY + timedelta(days=1)
GRAPHS = [
    ("Message passing graph neural networks for molecule property prediction",
     "We train graph neural networks with message passing over molecular graphs and atoms."),
    ("Scalable graph transformers on citation graphs",
     "Graph transformers with node attention scale message passing to large citation graphs."),
    ("Graph neural networks for traffic forecasting over road graphs",
     "Node embeddings and message passing on road network graphs forecast traffic."),
]  # fmt: skip
ROBOTS = [
    ("Reinforcement learning for legged robot locomotion",
     "A policy trained with reinforcement learning walks legged robots over rough terrain."),
    ("Sim-to-real reinforcement learning for robot grasping",
     "Robot grasping policies learned with reinforcement learning in simulation transfer."),
    ("Reward shaping for robot manipulation with reinforcement learning",
     "Reward shaping speeds reinforcement learning of robot manipulation policies."),
]  # fmt: skip
PROTEINS = [
    ("Protein structure prediction with geometric deep learning",
     "Protein folding and residue contacts predicted from amino acid sequences."),
    ("Protein language models for enzyme function",
     "Protein sequence embeddings predict enzyme function and amino acid mutations."),
    ("Designing protein binders with diffusion",
     "Diffusion over protein backbones designs binders for target proteins and residues."),
]  # fmt: skip


@pytest.fixture
def world(app):
    """Two days of a machine-learning topic with graph and robot papers, and two readers."""
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        bio = f.topic(s, "bio")
        ids = {}
        for day, offset in ((DAY1, 0), (DAY2, 10)):
            for n, (title, abstract) in enumerate(GRAPHS + ROBOTS):
                # Robots are the day's most upvoted papers: first without votes.
                votes = 50 + offset + n if (title, abstract) in ROBOTS else 10 + n
                paper = f.paper(s, f"{title} ({day.isoformat()})", day=day, topics={ml: 2.0},
                                upvotes=votes)  # fmt: skip
                paper.abstract = abstract
                ids[(day, title)] = paper.id
            for n, (title, abstract) in enumerate(PROTEINS):
                paper = f.paper(s, f"{title} ({day.isoformat()})", day=day, topics={bio: 2.0},
                                upvotes=5 + n)  # fmt: skip
                paper.abstract = abstract
                ids[(day, title)] = paper.id
        voter = f.subscriber(s, "voter@example.org", [ml]).id
        quiet = f.subscriber(s, "quiet@example.org", [ml]).id
        for sub_id in (voter, quiet):
            s.get(f.Subscriber, sub_id).max_papers = 6
    return ids, voter, quiet


def _day2_titles(app, subscriber_id, topics=("ml",)):
    selection = sending.make_selection(app, Edition(listing_date=DAY2, kind="daily"))
    with app.sessions() as s:
        topic_ids = tuple(t.id for t in s.query(f.Topic).filter(f.Topic.slug.in_(topics)))
    papers = selection.papers_for(Reader(subscriber_id, tuple(sorted(topic_ids)), 6))
    return [p.title.rsplit(" (", 1)[0] for p in papers], papers


def _vote(app, subscriber_id, paper_id, vote):
    with app.transaction() as s:
        feedback.record_vote(subscriber_id, paper_id, vote, session=s)


def test_without_votes_the_order_is_todays(app, world):
    _, voter, quiet = world
    titles, _ = _day2_titles(app, quiet)
    assert titles[:3] == [t for t, _ in ROBOTS][::-1]  # most upvoted first


def test_less_like_this_sinks_or_drops_similar_papers(app, world):
    ids, voter, quiet = world
    for title, _ in ROBOTS[:2]:
        _vote(app, voter, ids[(DAY1, title)], feedback.LESS)
    titles, _ = _day2_titles(app, voter)
    robots = {t for t, _ in ROBOTS}
    assert titles[0] not in robots
    baseline, _ = _day2_titles(app, quiet)
    moved = [t for t in robots if t not in titles or titles.index(t) > baseline.index(t)]
    assert len(moved) == len(robots)  # every robot paper sank or dropped out


def test_more_like_this_raises_similar_papers(app, world):
    ids, voter, _ = world
    _vote(app, voter, ids[(DAY1, GRAPHS[0][0])], feedback.MORE)
    titles, _ = _day2_titles(app, voter)
    assert titles[0] in {t for t, _ in GRAPHS}


def test_enough_likes_bring_up_to_two_papers_from_outside_the_topics(app, world):
    ids, voter, _ = world
    for title, _ in PROTEINS:
        _vote(app, voter, ids[(DAY1, title)], feedback.MORE)
    titles, papers = _day2_titles(app, voter)
    outside = [p for p in papers if p.reason]
    assert 1 <= len(outside) <= 2 and len(papers) <= 6
    assert all(p.reason.startswith("Because you liked \u201c") for p in outside)
    assert all(p.title.rsplit(" (", 1)[0] in {t for t, _ in PROTEINS} for p in outside)


def test_the_digest_shows_why_an_outside_paper_is_there(app, world):
    ids, voter, quiet = world
    for title, _ in PROTEINS:
        _vote(app, voter, ids[(DAY1, title)], feedback.MORE)
    sending.send(app, DAY2)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    messages = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    by_to = {m["To"].addresses[0].addr_spec: m for m in messages}
    voter_text = by_to["voter@example.org"].get_body(("plain",)).get_content()
    quiet_text = by_to["quiet@example.org"].get_body(("plain",)).get_content()
    assert "Because you liked" in voter_text and "Because you liked" not in quiet_text


def test_why_a_paper_is_there_in_a_few_words():
    assert why_from_evidence(['abstract: "LoRA" x3', 'title: "Low-rank adapters"']) == (
        "title mentions Low-rank adapters"
    )
    assert why_from_evidence(['abstract: "LoRA" x3']) == "abstract mentions LoRA 3 times"
    assert why_from_evidence(["category: cs.CL"]) == "listed in cs.CL"
    assert why_from_evidence(["description: design"]) is None


def test_each_paper_of_a_digest_says_why_it_is_there(app, world):
    ids, _, quiet = world
    with app.transaction() as s:
        for (day, title), paper_id in ids.items():
            if day == DAY2:
                for match in s.get(f.Paper, paper_id).topics:
                    match.evidence = [f'title: "{title.split()[0]}"']
    _, papers = _day2_titles(app, quiet)
    assert papers[0].why == "most upvoted in Ml"
    assert all(p.why and p.why.startswith("title mentions") for p in papers[1:])
    sending.send(app, DAY2)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    texts = [
        email.message_from_bytes(bytes(m), policy=email.policy.default)
        .get_body(("plain",)).get_content()
        for m in box
    ]  # fmt: skip
    assert all("Why: most upvoted in Ml" in t for t in texts)


def test_personal_selections_are_kept_for_a_few_batches_only(app, world, monkeypatch):
    ids, voter, quiet = world
    with app.transaction() as s:
        ml = s.query(f.Topic).filter_by(slug="ml").one()
        readers = [f.subscriber(s, f"r{n}@example.org", [ml]).id for n in range(3)]
    for sid in (voter, *readers):
        _vote(app, sid, ids[(DAY1, ROBOTS[0][0])], feedback.LESS)
    expected = {sid: _day2_titles(app, sid)[0] for sid in (voter, *readers)}
    monkeypatch.setattr(readers_module, "PERSONAL_MEMO", 2)
    monkeypatch.setattr(profiles, "PROFILES_KEPT", 2)
    selection = sending.make_selection(app, Edition(listing_date=DAY2, kind="daily"))
    with app.sessions() as s:
        topic_ids = (s.query(f.Topic).filter_by(slug="ml").one().id,)
    for _ in range(2):  # asked again after eviction: chosen again, the same
        for sid in (voter, *readers):
            papers = selection.papers_for(Reader(sid, topic_ids, 6))
            assert [p.title.rsplit(" (", 1)[0] for p in papers] == expected[sid]
    assert len(selection._personal) == 2 and len(selection.signals._profiles) == 2
    first = selection.papers_for(Reader(readers[-1], topic_ids, 6))
    assert selection.papers_for(Reader(readers[-1], topic_ids, 6)) is first  # not chosen twice


WORDS = (
    "amber", "basalt", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "kelp", "lagoon", "meadow", "nectar", "opal", "prairie", "quartz", "reef",
)  # fmt: skip


def test_topic_lean_counts_which_topics_come_with_likes_and_dislikes():
    votes = [((1,), True)] * 4 + [((2,), False)] * 4 + [((1, 2), True)]
    lean = profiles.TopicLean.from_votes(votes)
    assert lean.chance_of_like([1]) > 0.8
    assert lean.chance_of_like([2]) < 0.2
    assert lean.chance_of_like([2]) < lean.chance_of_like([1, 2]) < lean.chance_of_like([1])
    assert lean.chance_of_like([7]) == pytest.approx(lean.chance_of_like([]))  # unseen: no say
    only_dislikes = profiles.TopicLean.from_votes([((2,), False)] * 6)
    assert only_dislikes.chance_of_like([2]) > 0.3  # no likes to compare with: no verdict
    assert only_dislikes.chance_of_like([1]) > 0.5
    assert profiles.TopicLean.from_votes([]).chance_of_like([1]) == pytest.approx(0.5)


@pytest.fixture
def two_topics(app):
    """A reader of two topics who liked one's papers and disliked the other's, in other words."""
    with app.transaction() as s:
        vision, speech = f.topic(s, "vision"), f.topic(s, "speech")
        reader = f.subscriber(s, "reader@example.org", [vision, speech]).id
        quiet = f.subscriber(s, "quiet2@example.org", [vision, speech]).id
        day1 = {}
        for n in range(6):
            for topic, vote in ((vision, feedback.MORE), (speech, feedback.LESS)):
                title = f"{topic.slug} {WORDS[n]} study"
                day1[f.paper(s, title, topics={topic: 2.0}).id] = vote
        # The next day's papers share no word with the voted ones: only their topics can tell.
        day2 = {}
        for n in range(3):
            for topic, upvotes in ((vision, 1), (speech, 90)):
                title = f"{WORDS[9 + n + (3 if topic is speech else 0)]} method"
                day2[title] = f.paper(s, title, day=DAY2, topics={topic: 2.0}, upvotes=upvotes + n)
                day2[title].abstract = f"We propose the {title}."
        both = f.paper(s, "reef survey", day=DAY2, topics={vision: 2.0, speech: 2.0}, upvotes=80)
        both.abstract = "We propose the reef survey."
    for paper_id, vote in day1.items():
        _vote(app, reader, paper_id, vote)
    return reader, quiet


def test_papers_of_a_topic_the_reader_keeps_disliking_sink_and_drop(app, two_topics):
    reader, quiet = two_topics
    speech = {f"{w} method" for w in WORDS[12:15]}
    before, _ = _day2_titles(app, quiet, ("vision", "speech"))
    assert set(before[:3]) <= speech  # the day's most upvoted come first without votes
    after, _ = _day2_titles(app, reader, ("vision", "speech"))
    assert not speech & set(after)  # every paper only of the disliked topic is gone
    assert "reef survey" in after  # one of both topics stays: the liked topic speaks for it
    assert {f"{w} method" for w in WORDS[9:12]} <= set(after)


def test_a_few_votes_do_not_condemn_a_topic(app, two_topics):
    reader, quiet = two_topics
    patient = App(dataclasses.replace(app.settings, ranking_min_votes_to_drop=50))
    try:
        after, _ = _day2_titles(patient, reader, ("vision", "speech"))
        before, _ = _day2_titles(patient, quiet, ("vision", "speech"))
    finally:
        patient.close()
    assert after == before


def test_votes_are_read_per_batch_of_readers_with_the_same_digests(app, world):
    """A send holds only the votes of the batch it prepares, and chooses what all votes would."""
    ids, voter, quiet = world
    with app.transaction() as s:
        ml = s.query(f.Topic).filter_by(slug="ml").one()
        readers = [f.subscriber(s, f"r{n}@example.org", [ml]).id for n in range(4)]
    for n, sid in enumerate((voter, *readers)):
        for title, _ in (GRAPHS + ROBOTS)[n : n + 3]:
            _vote(app, sid, ids[(DAY1, title)], feedback.MORE if n % 2 else feedback.LESS)
    with app.sessions() as s:
        papers = EditionPapers.load(DAY2, session=s)
        everyone = profiles.ReaderSignals.load(papers.paper_ids(), session=s)
    preparer = sending.make_preparer(app, Edition(listing_date=DAY2, kind="daily"), "skip")
    signals = preparer.selection.signals
    assert signals is not None and not signals._votes  # nothing read before a batch
    topic_ids = (ml.id,)
    for batch in ((voter, quiet, readers[0]), tuple(readers[1:])):
        rows = [ClaimedDelivery(sid, 1, sid, f"{sid}@x.org", "", 6, topic_ids, "k")
                for sid in batch]  # fmt: skip
        preparer.warm(rows)
        assert set(signals._votes) <= set(batch)  # this batch's votes only
        for sid in batch:
            expected = papers.for_reader(
                topic_ids, 6, frozenset(), everyone.profile(sid), everyone, everyone.rules(sid)
            ) if everyone.profile(sid) else papers.for_topics(topic_ids, 6)  # fmt: skip
            assert preparer.selection.papers_for(Reader(sid, topic_ids, 6)) == expected
    with pytest.raises(LookupError):  # never a reader's digest without their votes
        signals.profile(quiet)  # of the batch before, and not kept


def test_products_through_the_word_index_equal_the_cosines():
    texts = {n: (title, abstract) for n, (title, abstract) in enumerate(GRAPHS + ROBOTS + PROTEINS)}
    vectors = profiles.TextVectors(texts)
    liked = profiles._centroid(vectors.vector(n) for n in (0, 3))
    found = vectors.products(liked, texts)
    for n in texts:
        assert found.get(n, 0.0) == pytest.approx(profiles.cosine(vectors.vector(n), liked))
    assert found[1] > found[6] and found[4] > found[7]  # graphs near graphs, robots near robots


def test_votes_older_than_the_profile_window_are_forgotten(app, world):
    ids, voter, quiet = world
    for title, _ in ROBOTS[:2]:
        _vote(app, voter, ids[(DAY1, title)], feedback.LESS)
    assert _day2_titles(app, voter)[0] != _day2_titles(app, quiet)[0]
    with app.transaction() as s:
        for vote in s.query(FeedbackVote).filter_by(subscriber_id=voter):
            vote.updated_at -= timedelta(days=profiles.PROFILE_DAYS + 1)
    assert _day2_titles(app, voter)[0] == _day2_titles(app, quiet)[0]  # today's order again
    with app.sessions() as s:
        assert profiles.ReaderSignals.load([], session=s) is None  # nothing left to read


# --- the ranking itself, on hand-built candidates: no database, no cards ----------------------

ML, BIO = 1, 2


def _edition() -> tuple[Candidates, dict[int, tuple[str, str]]]:
    """Today's graph and robot papers of ML (robots most upvoted), protein papers of BIO, and
    yesterday's papers 101-109 of the same texts (the ones readers voted on)."""
    items, texts = [], {}
    for n, (title, abstract) in enumerate(GRAPHS + ROBOTS + PROTEINS, start=1):
        topic = BIO if (title, abstract) in PROTEINS else ML
        upvotes = {ML: 50 if (title, abstract) in ROBOTS else 10, BIO: 5}[topic] + n
        items.append(Candidate(n, title, upvotes, {topic: 2.0}))
        texts[n] = texts[100 + n] = (title, abstract)
    return Candidates(items), texts


def _taste(texts, votes=(), seeds=(), **fields) -> Taste:
    """A reader of ML with these (paper id, vote) pairs, built as a send builds them."""
    signals = profiles.ReaderSignals({7: list(votes)}, texts, seeds={7: list(seeds)})
    profile = signals.profile(7) if votes or seeds else None
    fields.setdefault("topic_ids", frozenset({ML}))
    fields.setdefault("max_papers", 6)
    return Taste(profile=profile, words=signals.vectors, titles=signals.titles, **fields)


def _ids(picks: list[Pick]) -> list[int]:
    return [p.paper_id for p in picks]


def test_rank_without_signals_keeps_todays_order_and_says_topic():
    candidates, texts = _edition()
    picks = rank(candidates, _taste(texts, max_papers=4, exclude=frozenset({5})), NO_RULES,
                 RankingWeights())  # fmt: skip
    assert _ids(picks) == [6, 4, 3, 2]  # most upvoted first; 5 received already; four of them
    assert all(p.reasons == (Reason(Why.TOPIC),) for p in picks)


def test_rank_puts_followed_authors_first_and_never_a_muted_paper():
    candidates, texts = _edition()
    rules = EditionRules(followed={1: "Ada Lovelace", 8: "Ada Lovelace"}, muted=frozenset({6, 8}))
    picks = rank(candidates, _taste(texts, max_papers=3), rules, RankingWeights())
    assert _ids(picks) == [1, 5, 4]  # followed first, however few upvotes; 6 and 8 muted
    assert picks[0].reasons[0] == Reason(Why.FOLLOWED, "Ada Lovelace")
    assert 6 not in _ids(rank(candidates, _taste(texts, max_papers=9), rules, RankingWeights()))


def test_rank_adds_papers_of_a_readers_keyword_beyond_their_topics():
    candidates, texts = _edition()
    rules = EditionRules(keywords=(("protein", frozenset({7, 8, 9, 2})),))
    picks = rank(candidates, _taste(texts, max_papers=9), rules, RankingWeights())
    keyword = [p for p in picks if p.reasons[0].kind is Why.KEYWORD]
    assert _ids(keyword) == [9, 8, 7]  # in today's order among the others; 2 is of ML already
    assert {p.reasons[0].detail for p in keyword} == {"protein"}
    # Placed by upvotes among the topic's papers; on a tie, the topic's own match goes first.
    assert _ids(picks) == [6, 5, 4, 9, 3, 8, 2, 7, 1]


def test_rank_alternates_papers_close_to_interests_with_the_topics_ones():
    import numpy as np

    candidates, texts = _edition()
    rng = np.random.default_rng(3)
    window = rng.normal(size=(40, 4))
    vectors = np.zeros((9, 4))
    vectors[6:, 0] = 5.0  # the protein papers stand far out along the interests' direction
    standings = InterestStandings.from_vectors(range(1, 10), vectors, window)
    taste = _taste(texts, interests=np.array([1.0, 0, 0, 0]), standings=standings)
    picks = rank(candidates, taste, NO_RULES, RankingWeights())
    assert _ids(picks) == [6, 9, 5, 8, 4, 7]  # one of each in turn, each side in its order
    assert {p.reasons[0].kind for p in picks[1::2]} == {Why.INTERESTS}
    strict = RankingWeights(interest_standing=1e6)  # none stands out this far: topics only
    assert _ids(rank(candidates, taste, NO_RULES, strict)) == [6, 5, 4, 3, 2, 1]


def test_rank_raises_what_is_like_a_like_and_drops_what_is_like_a_dislike():
    candidates, texts = _edition()
    votes = [(101, 1), (105, -1), (106, -1)]  # liked a graph paper, disliked two robot ones
    picks = rank(candidates, _taste(texts, votes), NO_RULES, RankingWeights())
    assert _ids(picks)[0] in {1, 2, 3}  # a graph paper leads, over the day's most upvoted
    assert 5 not in _ids(picks) and 6 not in _ids(picks)  # the disliked ones' twins dropped
    lenient = RankingWeights(drop_similarity=2.0, drop_chance=0.0)  # nothing drops
    assert {5, 6} <= set(_ids(rank(candidates, _taste(texts, votes), NO_RULES, lenient)))


def test_rank_brings_discoveries_from_outside_the_topics_naming_the_liked_paper():
    candidates, texts = _edition()
    votes = [(107, 1), (108, 1), (109, 1)]  # three protein papers liked: BIO is not theirs
    picks = rank(candidates, _taste(texts, votes), NO_RULES, RankingWeights())
    found = [p for p in picks if p.discovery]
    assert len(picks) == 6 and len(found) == 2  # `discoveries` of them, in place of the last
    assert set(_ids(found)) <= {7, 8, 9}
    assert all(p.reasons[0].kind is Why.LIKED and p.reasons[0].detail in {t for t, _ in PROTEINS}
               for p in found)  # fmt: skip
    assert not [p for p in rank(candidates, _taste(texts, votes[:2]), NO_RULES,
                                RankingWeights()) if p.discovery]  # fewer likes than needed
    none = RankingWeights(discoveries=0)
    assert not [p for p in rank(candidates, _taste(texts, votes), NO_RULES, none) if p.discovery]


def test_rank_names_a_readers_own_paper_a_discovery_is_like():
    candidates, texts = _edition()
    own = [Seed(title, abstract) for title, abstract in PROTEINS]
    picks = rank(candidates, _taste(texts, seeds=own), NO_RULES, RankingWeights())
    found = [p for p in picks if p.discovery]
    assert found and all(p.reasons[0].kind is Why.OWN_PAPER for p in found)


def _spy_on_rank(monkeypatch) -> list[tuple[bool, tuple[int, ...]]]:
    """Record (whether the reader had a profile, the picks) of every ranking, as it ranks."""
    from newsletter.editions import selection as selection_module

    ranked: list[tuple[bool, tuple[int, ...]]] = []
    real = selection_module.rank

    def recording(candidates, taste, rules, weights):
        picks = real(candidates, taste, rules, weights)
        ranked.append((taste.profile is not None, tuple(p.paper_id for p in picks)))
        return picks

    monkeypatch.setattr(selection_module, "rank", recording)
    return ranked


def _outbox(app) -> list[email.message.EmailMessage]:
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    return [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]


def test_preview_dry_run_test_copy_and_send_give_the_voters_ranking(app, world, monkeypatch):
    from sqlalchemy import select

    ids, voter, _ = world
    for title, _ in ROBOTS[:2]:
        _vote(app, voter, ids[(DAY1, title)], feedback.LESS)
    ranked = _spy_on_rank(monkeypatch)
    preview = sending.build_preview(app, "voter@example.org", DAY2)
    order = tuple(p.paper_id for p in preview.papers)
    assert (True, order) in ranked
    assert order != tuple(p.paper_id for p in _day2_titles(app, world[2])[1])  # not today's
    ranked.clear()
    _, planned = sending.dry_run(app, DAY2)
    by_email = {d.email: tuple(p.paper_id for p in d.papers) for d in planned}
    assert by_email["voter@example.org"] == order and (True, order) in ranked
    ranked.clear()
    sending.send_test_copy(app, "voter@example.org", DAY2)
    (copy,) = _outbox(app)
    text = copy.get_body(("plain",)).get_content()
    places = [text.find(" ".join(p.title.split()[:3])) for p in preview.papers]  # wrapped later
    assert (True, order) in ranked and -1 not in places and places == sorted(places)
    ranked.clear()
    sending.send(app, DAY2)
    with app.reading() as s:
        sent = s.scalar(select(Delivery.paper_ids).where(Delivery.subscriber_id == voter))
    assert tuple(sent) == order and (True, order) in ranked


def test_the_ranking_settings_weigh_the_send(app, world):
    ids, voter, _ = world
    for title, _ in PROTEINS:
        _vote(app, voter, ids[(DAY1, title)], feedback.MORE)
    none = App(dataclasses.replace(app.settings, ranking_discoveries=0))
    try:
        sending.send(none, DAY2)
    finally:
        none.close()
    by_to = {m["To"].addresses[0].addr_spec: m for m in _outbox(app)}
    assert "Because you liked" not in by_to["voter@example.org"].get_body(("plain",)).get_content()


def test_planning_counts_the_likes_discoveries_need_as_the_setting_says(app, world):
    ids, _, _ = world
    with app.transaction() as s:
        reader = f.subscriber(s, "no-topic@example.org", []).id
    for title, _ in PROTEINS[:2]:
        _vote(app, reader, ids[(DAY1, title)], feedback.MORE)
    assert sending.preview_plan(app, DAY2).skipped == 1  # two likes: fewer than three
    eager = App(dataclasses.replace(app.settings, ranking_discovery_min_likes=2))
    try:
        assert sending.preview_plan(eager, DAY2).skipped == 0
        sending.send(eager, DAY2)
    finally:
        eager.close()
    by_to = {m["To"].addresses[0].addr_spec: m for m in _outbox(app)}
    assert "Because you liked" in by_to["no-topic@example.org"].get_body(("plain",)).get_content()
