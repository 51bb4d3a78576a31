"""Readers' votes on papers: signed links, pages that change nothing on GET, POST votes, undo."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re

import pytest
from sqlalchemy import func, select

from newsletter.audience import signup as svc
from newsletter.core import tokens
from newsletter.core.models import FeedbackVote, Subscriber
from newsletter.delivery import service as sending
from newsletter.matching import feedback
from tests import factories as f

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(app):
    return f.web_app(app)


@pytest.fixture
def reader(app):
    with app.transaction() as s:
        topic = f.topic(s, "llm")
        sub = f.subscriber(s, "ada@example.org", [topic])
        paper = f.paper(s, "Scaling laws for tiny models", topics={topic: 2.0})
        other = f.paper(s, "Another paper", topics={topic: 1.0})
        return sub.id, sub.link_key, paper.id, other.id


def _path(app, sid, key, paper_id, direction):
    url = tokens.feedback_url(app.settings, sid, key, paper_id)
    return url.split("news.example.test", 1)[1] + f"/{direction}"


def _votes(app):
    with app.sessions() as s:
        return {(v.subscriber_id, v.paper_id): v.vote for v in s.scalars(select(FeedbackVote))}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_fetching_a_vote_link_changes_nothing(app, web, reader, method):
    sid, key, paper_id, _ = reader
    response = web.test_client().open(_path(app, sid, key, paper_id, "less"), method=method)
    assert response.status_code == 200 and _votes(app) == {}
    if method == "GET":
        page = response.get_data(as_text=True)
        assert "Scaling laws for tiny models" in page and page.count('type="submit"') == 1


def test_a_post_without_body_or_cookie_votes_and_answers_200(app, web, reader):
    sid, key, paper_id, _ = reader
    client = web.test_client(use_cookies=False)
    path = _path(app, sid, key, paper_id, "more")
    response = client.post(path)
    assert response.status_code == 200 and "Location" not in response.headers
    assert "Undo" in response.get_data(as_text=True)
    assert _votes(app) == {(sid, paper_id): feedback.MORE}
    assert client.post(path).status_code == 200  # idempotent
    assert _votes(app) == {(sid, paper_id): feedback.MORE}
    client.post(_path(app, sid, key, paper_id, "less"))  # a later vote replaces it
    assert _votes(app) == {(sid, paper_id): feedback.LESS}


def test_undo_removes_the_vote(app, web, reader):
    sid, key, paper_id, _ = reader
    client = web.test_client(use_cookies=False)
    client.post(_path(app, sid, key, paper_id, "more"))
    token = _path(app, sid, key, paper_id, "more").split("/")[2]
    undone = client.post(f"/feedback/{token}/undo")
    assert undone.status_code == 200 and "Vote removed" in undone.get_data(as_text=True)
    assert _votes(app) == {}


def test_a_link_is_for_one_reader_and_one_paper(app, web, reader):
    sid, key, paper_id, other_id = reader
    client = web.test_client(use_cookies=False)
    good = _path(app, sid, key, paper_id, "more")
    token = good.split("/")[2]
    payload, signature = token.rsplit(".", 1)
    forged = payload.rsplit(".", 1)[0] + f".{other_id}.{signature}"
    assert client.post(f"/feedback/{forged}/more").status_code == 400
    manage = tokens.make_token(app.settings, "manage", sid, key)
    assert client.post(f"/feedback/{manage}/more").status_code == 400
    assert client.post(good.replace("/more", "/sideways")).status_code == 404
    assert _votes(app) == {}


def test_votes_go_with_the_export_and_with_deletion(app, web, reader):
    sid, key, paper_id, _ = reader
    client = web.test_client(use_cookies=False)
    client.post(_path(app, sid, key, paper_id, "less"))
    with app.sessions() as s:
        exported = svc.export_my_data(sid, session=s)
    assert exported["feedback"][0]["paper"] == "Scaling laws for tiny models"
    assert exported["feedback"][0]["vote"] == "less"
    json.dumps(exported)  # JSON-ready
    with app.transaction() as s:
        svc.delete_my_data(sid, session=s)
    with app.sessions() as s:
        assert s.scalar(select(func.count(FeedbackVote.id))) == 0
    # The link died with the subscription: a later reader never inherits it.
    with app.transaction() as s:
        f.subscriber(s, "next@example.org", [])
    assert client.get(_path(app, sid, key, paper_id, "more")).status_code == 404
    assert client.post(_path(app, sid, key, paper_id, "more")).status_code == 404


def test_paper_votes_count_likes_and_dislikes(app, reader):
    sid, _, paper_id, other_id = reader
    with app.transaction() as s:
        second = f.subscriber(s, "bob@example.org", []).id
        feedback.record_vote(sid, paper_id, feedback.MORE, session=s)
        feedback.record_vote(second, paper_id, feedback.LESS, session=s)
        feedback.record_vote(second, other_id, feedback.LESS, session=s)
    with app.sessions() as s:
        counts = feedback.paper_votes([paper_id, other_id], session=s)
    assert (counts[paper_id].likes, counts[paper_id].dislikes) == (1, 1)
    assert (counts[other_id].likes, counts[other_id].dislikes) == (0, 1)
    with app.sessions() as s:
        assert s.get(Subscriber, sid) is not None


def test_every_paper_in_a_digest_carries_its_own_vote_links(app, web, reader):
    sid, _, paper_id, other_id = reader
    sending.send(app, f.DAY)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    (raw,) = [bytes(m) for m in box]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    pattern = r"https://news\.example\.test(/feedback/[A-Za-z0-9_.-]+)/(more|less)"
    html_links = re.findall(pattern, html)
    text_links = re.findall(pattern, text)
    assert len(html_links) == len(text_links) == 4  # two papers, two links each
    named = {tokens.read_paper_token(app.settings, p.split("/")[2])[1] for p, _ in html_links}
    assert named == {paper_id, other_id}
    client = web.test_client(use_cookies=False)
    less = next(
        f"{p}/less" for p, d in html_links
        if d == "less" and tokens.read_paper_token(app.settings, p.split("/")[2])[1] == other_id
    )  # fmt: skip
    assert client.get(less).status_code == 200 and _votes(app) == {}
    assert client.post(less).status_code == 200
    assert _votes(app) == {(sid, other_id): feedback.LESS}


def test_the_admin_sees_votes_per_paper_per_reader_and_per_edition(app, run, reader):
    sid, _, paper_id, other_id = reader
    sending.send(app, f.DAY)
    with app.transaction() as s:
        feedback.record_vote(sid, paper_id, feedback.MORE, session=s)
        feedback.record_vote(sid, other_id, feedback.LESS, session=s)
    listed = json.loads(run("papers", "list", "--date", f.DAY.isoformat(), "--json").stdout)
    by_id = {p["id"]: p for p in listed}
    assert (by_id[paper_id]["likes"], by_id[paper_id]["dislikes"]) == (1, 0)
    assert (by_id[other_id]["likes"], by_id[other_id]["dislikes"]) == (0, 1)
    text = run("papers", "list", "--date", f.DAY.isoformat()).stdout
    assert "readers +1/-0" in text and "readers +0/-1" in text
    votes = json.loads(run("feedback", "list", "--email", "ADA@example.org", "--json").stdout)
    assert sorted(v["vote"] for v in votes) == ["less", "more"]
    assert all(v["email"] == "ada@example.org" for v in votes)
    assert "no votes from nobody@example.org" in run(
        "feedback", "list", "--email", "nobody@example.org"
    ).stdout
    status = json.loads(run("status", "--date", f.DAY.isoformat(), "--json").stdout)
    assert status["votes"] == {"likes": 1, "dislikes": 1, "readers": 1}
    assert "votes: 1 more like this, 1 less like this, from 1 readers" in run(
        "status", "--date", f.DAY.isoformat()
    ).stdout
