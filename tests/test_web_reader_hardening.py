"""What an attacker can send the newest reader pages over HTTP to the served app: the first
round's form, the preferences page's uploads and its query, each a page, never a crash."""

from __future__ import annotations

import re

import httpx
import pytest

from newsletter.core import tokens
from newsletter.core.models import Subscriber
from tests.test_web_e2e import _served as served
from tests.test_web_first_round import _start, _votes, listing  # noqa: F401 - a fixture

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAPER = re.compile(r'name="paper" value="(\d+)"')
# More digits than Python's int() reads: a form field of them must not reach it.
DIGITS = 5000


@pytest.fixture
def base(app):
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _manage(app, sid):
    with app.sessions() as s:
        key = s.get(Subscriber, sid).link_key
    return f"/manage/{tokens.make_token(app.settings, 'manage', sid, key)}"


def test_a_paper_number_of_thousands_of_digits_is_a_bad_press_not_a_crash(
    app, base, listing  # noqa: F811
):
    path = _start(app, listing["ada"])
    page = base.get(path).text
    csrf, shown = CSRF.search(page).group(1), PAPER.findall(page)
    for paper in ("9" * DIGITS, "0" * DIGITS + shown[0]):
        refused = base.post(path, data={"csrf_token": csrf, "paper": paper, "vote": "more"})
        assert refused.status_code == 400, paper[:20]
        assert "Press one of the buttons of the page." in refused.text
    assert _votes(app) == {}
    assert base.post(path, data={"csrf_token": csrf, "paper": shown[0], "vote": "more"}
                     ).status_code == 303  # fmt: skip
    assert _votes(app) == {(listing["ada"], int(shown[0])): 1}


def test_a_left_out_count_of_thousands_of_digits_still_shows_the_page(
    app, base, listing  # noqa: F811
):
    path = _manage(app, listing["ada"])
    page = base.get(path, params={"done": "papers", "left": "9" * DIGITS})
    assert page.status_code == 200 and "Your papers are saved" in page.text
    shown = base.get(path, params={"done": "papers", "left": "12"}).text
    assert re.search(r"\b12\b", shown)
