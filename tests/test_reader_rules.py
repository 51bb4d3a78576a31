"""A reader's own rules: followed authors first, muted words never, personal keywords as a topic."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re

import pytest
from sqlalchemy import select

from newsletter.core import tokens
from newsletter.core.models import Edition, Subscriber
from newsletter.delivery import service as sending
from newsletter.editions.readers import load_reader
from newsletter.matching.personal import FOLLOWED_KEPT, EditionText, author_key, same_author
from newsletter.matching.scoring import PaperText
from tests import factories as f


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Jane Doe", "Doe, Jane"),
        ("Jane Doe", "J. Doe"),
        ("Jané Döe", "Jane Doe"),
        ("JANE DOE", "jane doe"),
        ("Jane A. Doe", "Doe, J."),
        ("Jane Doe Jr.", "Jane Doe"),
    ],
)
def test_author_names_match_across_sources(a, b):
    assert same_author(author_key(a), author_key(b))


def test_different_people_do_not_match():
    assert not same_author(author_key("Jane Doe"), author_key("John Doe"))
    assert not same_author(author_key("Jane Doe"), author_key("Jane Roe"))
    assert author_key("  ") is None


def test_followed_authors_are_matched_once_per_list_of_them():
    papers = {
        1: (PaperText("Agents", "A survey."), ("Jane Doe", "Bo Chen")),
        2: (PaperText("Memory", "A benchmark."), ("Doe, J.",)),
        3: (PaperText("Proteins", "Folding."), ("John Roe",)),
    }
    edition = EditionText(papers, 1.0)
    found = edition.by_followed(["J. Doe"])
    assert found == {1: "Jane Doe", 2: "Doe, J."}
    assert edition.by_followed(("J. Doe",)) is found  # a second reader: no new matching
    assert edition.by_followed(["John Roe", "Bo Chen"]) == {1: "Bo Chen", 3: "John Roe"}
    for n in range(FOLLOWED_KEPT + 5):
        edition.by_followed([f"Reader{n} Doe"])
    assert len(edition._followed) == FOLLOWED_KEPT  # bounded: memory flat in readers


@pytest.fixture
def day(app):
    with app.transaction() as s:
        ml = f.topic(s, "ml")
        f.topic(s, "bio")
        papers = {}
        specs = [
            ("A survey of agents", ["Ann Lee"], 90, {ml: 2.0}, "We review language agents."),
            ("Benchmarks for agent memory", ["Bo Chen"], 80, {ml: 2.0}, "A benchmark suite."),
            ("Sparse attention at scale", ["Cy Park"], 70, {ml: 2.0}, "Attention made sparse."),
            ("Protein folding by diffusion", ["Doe, Jane"], 5, {}, "Proteins fold."),
            ("Low-rank adapters revisited", ["Eve Moss"], 3, {}, "We study LoRA adapters."),
        ]
        for title, authors, upvotes, topics, abstract in specs:
            paper = f.paper(s, title, topics=topics, upvotes=upvotes)
            paper.authors, paper.abstract = authors, abstract
            papers[title] = paper.id
        f.subscriber(s, "ada@example.org", [ml])
        f.subscriber(s, "bob@example.org", [ml])
    return papers


def _titles(app, address):
    selection = sending.make_selection(app, Edition(listing_date=f.DAY, kind="daily"))
    with app.sessions() as s:
        sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
        reader = load_reader(sub, session=s)
    papers = selection.papers_for(reader)
    return [p.title for p in papers], papers


def test_a_followed_authors_paper_comes_first_with_a_label(app, run, day):
    result = run("subscribers", "edit", "ada@example.org", "--follow-authors", "J. Doe; Zed")
    assert result.exit_code == 0, result.output
    titles, papers = _titles(app, "ada@example.org")
    assert titles[0] == "Protein folding by diffusion"
    assert papers[0].reason == "You follow Doe, Jane"
    assert _titles(app, "bob@example.org")[0][0] == "A survey of agents"  # others unchanged


def test_a_muted_word_keeps_its_papers_out_whatever_its_form(app, run, day):
    muted = run("subscribers", "edit", "ada@example.org", "--mute", "benchmark;survey")
    assert muted.exit_code == 0
    titles, _ = _titles(app, "ada@example.org")
    assert "Benchmarks for agent memory" not in titles  # "benchmarks" is "benchmark"
    assert "A survey of agents" not in titles
    assert titles == ["Sparse attention at scale"]


def test_personal_keywords_match_like_a_private_topic(app, run, day):
    assert run("subscribers", "edit", "ada@example.org", "--keywords", "LoRA").exit_code == 0
    titles, papers = _titles(app, "ada@example.org")
    assert "Low-rank adapters revisited" in titles
    mine = next(p for p in papers if p.title == "Low-rank adapters revisited")
    assert mine.why == "matches your keyword \u201cLoRA\u201d"
    assert "Protein folding by diffusion" not in titles


def test_the_digest_shows_the_followed_paper_first(app, run, day):
    run("subscribers", "edit", "ada@example.org", "--follow-authors", "Jane Doe")
    sending.send(app, f.DAY)
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    messages = {
        m["To"].addresses[0].addr_spec: m
        for m in (email.message_from_bytes(bytes(x), policy=email.policy.default) for x in box)
    }
    text = messages["ada@example.org"].get_body(("plain",)).get_content()
    assert text.index("Protein folding by diffusion") < text.index("A survey of agents")
    assert "You follow Doe, Jane" in text


def test_edit_changes_only_what_is_given_and_shows_it(app, run, day):
    result = run("subscribers", "edit", "ada@example.org", "--hour", "6", "--max-papers", "3",
                 "--timezone", "Asia/Tokyo", "--topics", "ml,bio", "--json")  # fmt: skip
    data = json.loads(result.stdout)
    assert (data["hour"], data["max_papers"], data["timezone"]) == (6, 3, "Asia/Tokyo")
    assert sorted(data["topics"]) == ["bio", "ml"] and data["follow_authors"] == []
    run("subscribers", "edit", "ada@example.org", "--mute", "survey")
    cleared = run("subscribers", "edit", "ada@example.org", "--mute", "", "--json")
    cleared = json.loads(cleared.stdout)
    assert cleared["muted_words"] == [] and cleared["hour"] == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hour", "25"], "hour"),
        (["--topics", "nope"], "nope"),
        (["--mute", "a\x01b"], "control character"),
        (["--keywords", ";".join(f"k{i}" for i in range(51))], "at most 50"),
        (["--follow-authors", "x" * 101], "over 100 characters"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(app, run, day, args, message):
    before = json.loads(run("subscribers", "show", "ada@example.org", "--json").stdout)
    result = run("subscribers", "edit", "ada@example.org", *args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    after = json.loads(run("subscribers", "show", "ada@example.org", "--json").stdout)
    assert after == before


def test_editing_an_unknown_address_is_one_line(run, day):
    result = run("subscribers", "edit", "nobody@example.org", "--hour", "7")
    assert result.exit_code == 2 and "nobody@example.org" in result.output


def test_the_preferences_page_sets_the_rules(app, day):
    web = f.web_app(app).test_client()
    with app.sessions() as s:
        ada = s.scalar(select(Subscriber).where(Subscriber.email == "ada@example.org"))
    path = f"/manage/{tokens.make_token(app.settings, 'manage', ada.id, ada.link_key)}"
    page = web.get(path).get_data(as_text=True)
    assert 'name="follow_authors"' in page and 'name="muted_words"' in page
    form = {
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1),
        "topics": ["ml"], "frequency": "daily", "hour": "8", "timezone": "UTC",
        "max_papers": "10", "weekly_day": "0", "follow_authors": "Doe, Jane; Bo Chen",
        "muted_words": "survey", "personal_keywords": "LoRA",
    }  # fmt: skip
    saved = web.post(path, data=form)
    assert saved.status_code == 303
    titles, papers = _titles(app, "ada@example.org")
    assert titles[0] in ("Protein folding by diffusion", "Benchmarks for agent memory")
    assert "A survey of agents" not in titles and "Low-rank adapters revisited" in titles
    shown = web.get(path).get_data(as_text=True)
    assert 'value="Doe, Jane; Bo Chen"' in shown
    bad = web.post(path, data={**form, "muted_words": "ok; bad\x01word"})
    assert bad.status_code == 400 and "control character" in bad.get_data(as_text=True)
    with app.sessions() as s:
        assert s.get(Subscriber, ada.id).muted_words == ["survey"]
