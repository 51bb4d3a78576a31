"""A reader's votes rank their next digests: more of what they liked, less of what they did not."""

from __future__ import annotations

import email
import email.policy
import mailbox
from datetime import timedelta

import pytest

from newsletter.core.deliveries import ClaimedDelivery
from newsletter.core.models import Edition, FeedbackVote
from newsletter.delivery import service as sending
from newsletter.editions import readers as readers_module
from newsletter.editions.readers import Reader
from newsletter.editions.selection import EditionPapers, why_from_evidence
from newsletter.matching import feedback, profiles
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


def test_a_few_votes_do_not_condemn_a_topic(app, two_topics, monkeypatch):
    from newsletter.editions import selection

    reader, quiet = two_topics
    monkeypatch.setattr(selection, "MIN_VOTES_TO_DROP", 50)
    after, _ = _day2_titles(app, reader, ("vision", "speech"))
    before, _ = _day2_titles(app, quiet, ("vision", "speech"))
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
