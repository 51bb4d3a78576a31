"""Readers' profiles in the sentence model's space: stored, written as votes and own papers
arrive, rebuilt when missing, and read by the send."""

from __future__ import annotations

import json
import urllib.request
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from newsletter.core import tokens
from newsletter.core.models import Delivery, Paper, PaperEmbedding, StoredProfile, Subscriber
from newsletter.delivery import service as sending
from newsletter.editions.readers import load_reader
from newsletter.matching.embeddings import MODEL_ID, from_bytes, load_encoder
from newsletter.matching.matches import embed_papers
from tests import factories as f
from tests.conftest import Cli
from tests.test_invitations import served
from tests.test_seeds import FIELDS, MATHS, QUANTUM, _paper

ADDRESS = "ada@example.org"
YESTERDAY = f.DAY - timedelta(days=1)
PAST = [p for p in FIELDS if p["categories"][0] == "quant-ph"][8:14]


@pytest.fixture
def world(app):
    """Today's quantum and mathematics papers in one topic, yesterday's quantum papers (to
    vote on and give as one's own), all with their sentence vectors, and a reader."""
    with app.transaction() as s:
        physics = f.topic(s, "physics")
        for p in QUANTUM + MATHS:
            _paper(s, physics, title=p["title"], abstract=p["abstract"], arxiv_id=p["key"])
        past = [
            _paper(s, physics, title=p["title"], abstract=p["abstract"], arxiv_id=p["key"],
                   day=YESTERDAY).id
            for p in PAST
        ]  # fmt: skip
        bare = _paper(s, physics, title="A paper without a vector", abstract="", day=YESTERDAY)
        reader = f.subscriber(s, ADDRESS, [physics], max_papers=5)
        ids = [i for i in s.scalars(select(Paper.id)) if i != bare.id]
        embed_papers(session=s, paper_ids=ids, encoder=load_encoder())
        return reader.id, reader.link_key, past, bare.id


def _vote(app, base: str, reader, paper_id: int, direction: str) -> None:
    """Press a digest's vote button over HTTP, as a reader's browser does."""
    sid, key = reader[:2]
    url = tokens.feedback_url(app.settings, sid, key, paper_id)
    path = url.split(app.settings.base_url, 1)[1]
    target = f"{base}{path}/{direction}"
    with urllib.request.urlopen(urllib.request.Request(target, data=b""), timeout=30) as answer:
        assert answer.status == 200


def _undo(app, base: str, reader, paper_id: int) -> None:
    token = tokens.feedback_url(app.settings, *reader[:2], paper_id).rsplit("/", 1)[1]
    request = urllib.request.Request(f"{base}/feedback/{token}/undo", data=b"")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def _row(app, sid: int) -> StoredProfile | None:
    with app.reading() as s:
        row = s.get(StoredProfile, sid)
        if row is not None:
            s.expunge(row)
        return row


def _vector(app, paper_id: int) -> np.ndarray:
    with app.reading() as s:
        blob = s.scalar(select(PaperEmbedding.vector).where(PaperEmbedding.paper_id == paper_id))
    vector = from_bytes([blob])[0]
    return vector / np.linalg.norm(vector)


def _unit(blob: bytes) -> np.ndarray:
    return from_bytes([blob])[0]


def test_a_vote_through_the_link_writes_the_readers_profile_and_a_new_vote_rewrites_it(
    app, world
):
    sid, _, past, _ = world
    assert _row(app, sid) is None  # nothing told yet
    with served(app) as base:
        _vote(app, base, world, past[0], "more")
        liked = _row(app, sid)
        assert liked is not None and liked.model == MODEL_ID and liked.updated_at is not None
        assert (liked.likes, liked.dislikes, liked.seeds) == (1, 0, 0)
        assert _unit(liked.liked) @ _vector(app, past[0]) > 0.999 and liked.disliked is None
        _vote(app, base, world, past[1], "more")
        both = (_vector(app, past[0]) + _vector(app, past[1])) / 2
        assert _unit(_row(app, sid).liked) @ (both / np.linalg.norm(both)) > 0.999
        _vote(app, base, world, past[0], "less")  # the like is superseded by a dislike
        changed = _row(app, sid)
        assert (changed.likes, changed.dislikes) == (1, 1)
        assert _unit(changed.liked) @ _vector(app, past[1]) > 0.999
        assert _unit(changed.disliked) @ _vector(app, past[0]) > 0.999
        _undo(app, base, world, past[0])
        _undo(app, base, world, past[1])
    assert _row(app, sid) is None  # nothing left to tell


def test_own_papers_count_as_likes_and_clearing_them_rewrites_the_profile(app, env, world):
    sid, _, past, _ = world
    run = Cli({**env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"})
    given = ",".join(p["key"] for p in PAST[:3])
    assert run("subscribers", "edit", ADDRESS, "--seed-papers", given).exit_code == 0
    row = _row(app, sid)
    assert (row.likes, row.seeds) == (3, 3)
    mean = sum(_vector(app, pid) for pid in past[:3])
    assert _unit(row.own) @ (mean / np.linalg.norm(mean)) > 0.999
    assert _unit(row.liked) @ _unit(row.own) > 0.999  # no votes: their likes are their papers
    assert run("subscribers", "edit", ADDRESS, "--clear-seeds").exit_code == 0
    assert _row(app, sid) is None


def _digest_ids(app, sid: int) -> list[int]:
    with app.reading() as s:
        return s.scalar(select(Delivery.paper_ids).where(Delivery.subscriber_id == sid))


def _papers_worked_out_afresh(app, sid: int) -> list[int]:
    """Return the reader's papers with every stored profile gone: worked out from the votes
    and own papers as they were before profiles were stored (and as a rebuild would)."""
    from newsletter.core.models import Edition

    with app.transaction() as s:
        s.execute(delete(StoredProfile))
    with app.reading() as s:
        reader = load_reader(s.get(Subscriber, sid), session=s)
        edition = s.scalar(select(Edition))
    selection = sending.make_selection(app, edition, [sid])
    return [p.paper_id for p in selection.papers_for(reader)]


def test_a_send_after_votes_and_own_papers_ranks_as_they_say(app, env, world):
    sid, _, past, _ = world
    run = Cli({**env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"})
    given = ",".join(p["key"] for p in PAST[3:6])
    assert run("subscribers", "edit", ADDRESS, "--seed-papers", given).exit_code == 0
    with served(app) as base:
        _vote(app, base, world, past[0], "more")
        _vote(app, base, world, past[1], "less")
    assert _row(app, sid).own is not None
    sending.send(app, f.DAY)
    sent = _digest_ids(app, sid)
    assert sent and sent == _papers_worked_out_afresh(app, sid)


def test_the_send_reads_the_meaning_of_own_papers_from_the_stored_profile(app, env, world):
    sid = world[0]
    run = Cli({**env, "NEWSLETTER_MATCH_NEIGHBOURS": "true"})
    given = ",".join(p["key"] for p in PAST[3:6])
    assert run("subscribers", "edit", ADDRESS, "--seed-papers", given).exit_code == 0
    with app.reading() as s:
        maths = s.scalar(select(Paper.id).where(Paper.arxiv_id == MATHS[-1]["key"]))
        toward = s.scalar(select(PaperEmbedding.vector).where(PaperEmbedding.paper_id == maths))
    with app.transaction() as s:  # as if their own papers were that one mathematics paper
        s.get(StoredProfile, sid).own = toward
    sending.send(app, f.DAY)
    sent = _digest_ids(app, sid)
    assert maths in sent[:2]  # brought up by the stored direction alone
    assert maths not in _papers_worked_out_afresh(app, sid)  # their own papers' would not


def test_rebuild_restores_a_deleted_profile(app, run, world):
    sid, _, past, _ = world
    with served(app) as base:
        _vote(app, base, world, past[0], "more")
    before = _row(app, sid)
    with app.transaction() as s:
        s.execute(delete(StoredProfile).where(StoredProfile.subscriber_id == sid))
    shown = json.loads(run("feedback", "profiles", "--json").output)
    assert shown == {"model": MODEL_ID, "readers": 1, "current": 0, "missing": 1,
                     "other_model": 0, "rebuilt": 0}  # fmt: skip
    result = run("feedback", "profiles", "--rebuild", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["rebuilt"] == 1
    after = _row(app, sid)
    assert (after.liked, after.likes, after.model) == (before.liked, before.likes, MODEL_ID)
    assert "1 profiles of" in run("feedback", "profiles").output


def test_a_profile_of_another_model_is_rebuilt_and_never_read(app, run, world):
    sid, _, past, _ = world
    with served(app) as base:
        _vote(app, base, world, past[0], "more")
    with app.transaction() as s:
        s.get(StoredProfile, sid).model = "another-model"
    assert json.loads(run("feedback", "profiles", "--json").output)["other_model"] == 1
    result = run("feedback", "profiles", "--rebuild")
    assert result.exit_code == 0 and "rebuilt 1" in result.output
    assert _row(app, sid).model == MODEL_ID


def test_a_vote_on_a_paper_without_a_vector_leaves_the_profile_valid(app, world):
    sid, _, past, bare = world
    with served(app) as base:
        _vote(app, base, world, bare, "more")
        row = _row(app, sid)
        assert row is not None and (row.likes, row.liked, row.model) == (0, None, MODEL_ID)
        _vote(app, base, world, past[0], "more")
    row = _row(app, sid)
    assert row.likes == 1 and _unit(row.liked) @ _vector(app, past[0]) > 0.999
    assert np.isfinite(_unit(row.liked)).all()
    sending.send(app, f.DAY)
    assert _digest_ids(app, sid)  # the send reads it and ranks


def test_removing_a_reader_leaves_no_row_of_theirs_in_any_table(app, world):
    """Erasure is whole: their votes, own papers, stored profile and every other row that
    names them go with them, whatever table a later feature adds."""
    from newsletter.audience import service as audience
    from newsletter.core.models import Base
    from newsletter.matching.feedback import MORE, record_vote
    from newsletter.matching.seeds import Seed, replace_seeds

    sid, _, past, _ = world
    with app.transaction() as s:
        record_vote(sid, past[0], MORE, session=s)
        replace_seeds(sid, [Seed(PAST[1]["title"], PAST[1]["abstract"], PAST[1]["key"])],
                      session=s)  # fmt: skip
    sending.send(app, f.DAY)
    assert _row(app, sid) is not None

    audience.remove_subscriber(app, ADDRESS)

    naming = [t for t in Base.metadata.sorted_tables if "subscriber_id" in t.c]
    assert {"reader_profiles", "reader_seeds", "feedback_votes"} <= {t.name for t in naming}
    with app.reading() as s:
        left = {t.name: s.scalar(select(func.count()).select_from(t)
                                 .where(t.c.subscriber_id == sid)) for t in naming}  # fmt: skip
    assert {name: n for name, n in left.items() if n} == {}
