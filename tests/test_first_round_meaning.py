"""The first round of a reader who wrote a sentence or gave their own papers, and no topic:
it asks about papers along what they wrote or gave, nearest the cut from which those bring a
paper, not a spread of the day's listing. Through the Flask app, with the shipped model."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from newsletter.audience import subscribers as svc
from newsletter.core import tokens
from newsletter.core.app import App
from newsletter.core.models import Paper, Subscriber
from newsletter.matching import seeds as seeds_store
from newsletter.matching.first_round import INTERESTS, OWN_PAPERS
from newsletter.matching.seeds import Seed
from tests import factories as f
from tests.test_interests import (  # noqa: F401 - the fixture is used by name
    CONDENSED,
    CONDENSED_TOPICS,
    SENTENCES,
    STORED,
    _fields,
    neighbours_app,
    store_fields_papers,
)

ADA = "ada@example.org"
CARD = re.compile(r'<p class="meta">([^<]+)</p>\s*<h2 id="title-(\d+)">')


def _round(app: App, email: str) -> list[tuple[str, str]]:
    """Return (strand, arXiv id) of each paper the reader's first round asks about."""
    with app.sessions() as s:
        reader = s.scalar(select(Subscriber).where(Subscriber.email == email))
        path = f"/start/{tokens.make_token(app.settings, 'start', reader.id, reader.link_key)}"
    page = f.web_app(app).test_client().get(path)
    assert page.status_code == 200
    found = CARD.findall(page.get_data(as_text=True))
    with app.sessions() as s:
        keys = dict(s.execute(select(Paper.id, Paper.arxiv_id)).all())
    return [(html.unescape(strand), keys[int(pid)]) for strand, pid in found]


def _share(keys: list[str], labels: dict[str, set[str]], field: set[str]) -> float:
    """Return the share of these papers that are of a field."""
    return sum(1 for k in keys if labels[k] & field) / len(keys)


def test_a_sentence_alone_is_asked_about_along_it(neighbours_app: App) -> None:  # noqa: F811
    app = neighbours_app
    labels = store_fields_papers(app)
    with app.transaction() as s:
        svc.add_subscriber(session=s, email=ADA, interests=CONDENSED, confirmed=True)
    shown = _round(app, ADA)
    assert len(shown) == 10 and {strand for strand, _ in shown} == {INTERESTS}
    everyone = _share(list(labels), labels, CONDENSED_TOPICS)
    assert _share([k for _, k in shown], labels, CONDENSED_TOPICS) > everyone  # not a spread


def test_own_papers_are_asked_about_along_them_beside_the_sentence(neighbours_app: App) -> None:  # noqa: F811
    app = neighbours_app
    labels = store_fields_papers(app)
    papers, tags = _fields()
    own = [p for p in papers[STORED:] if set(tags[p["key"]]) & CONDENSED_TOPICS][:3]
    maths, maths_topics = SENTENCES["mathematics"]
    with app.transaction() as s:
        sid = svc.add_subscriber(session=s, email=ADA, interests=maths, confirmed=True).id
        given = [Seed(p["title"], p["abstract"], p["key"], None) for p in own]
        seeds_store.replace_seeds(sid, seeds_store.embedded(given, enabled=True), session=s)
    shown = _round(app, ADA)
    assert len(shown) == 10
    by_strand = {
        name: [k for strand, k in shown if strand == name] for name in (INTERESTS, OWN_PAPERS)
    }
    assert len(by_strand[INTERESTS]) == len(by_strand[OWN_PAPERS]) == 5  # in turn
    assert [strand for strand, _ in shown][:2] in ([INTERESTS, OWN_PAPERS], [OWN_PAPERS, INTERESTS])
    everyone = _share(list(labels), labels, CONDENSED_TOPICS)
    assert _share(by_strand[OWN_PAPERS], labels, CONDENSED_TOPICS) > everyone
    assert _share(by_strand[INTERESTS], labels, maths_topics) > _share(
        list(labels), labels, maths_topics
    )
