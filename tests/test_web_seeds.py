"""Uploading one's own papers on the preferences page, over HTTP to the served app: CSRF,
size caps, malformed files as form messages, and forgetting them."""

from __future__ import annotations

import dataclasses
import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from newsletter.core import tokens
from newsletter.core.models import ReaderSeed, Subscriber
from newsletter.web import create_app
from tests import factories as f
from tests.conftest import FIXTURES

LIBRARIES = FIXTURES / "libraries"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextmanager
def _served(app) -> Iterator[str]:
    """Serve the web app on 127.0.0.1 in a thread; base_url is its real address."""
    server = make_server("127.0.0.1", 0, lambda env, start: web(env, start), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.settings = dataclasses.replace(app.settings, base_url=base)
    web = create_app(app.settings, app=app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def page(app) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client on a reader's preferences page, and that page's path."""
    with app.transaction() as s:
        sid = f.subscriber(s, "ada@example.org", [f.topic(s, "physics")]).id
        key = s.get(Subscriber, sid).link_key
    with _served(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client, f"/manage/{tokens.make_token(app.settings, 'manage', sid, key)}"


def _csrf(client: httpx.Client, path: str) -> str:
    return CSRF.search(client.get(path).text).group(1)


def _upload(client, path, name: str, data: bytes, *, csrf: bool = True) -> httpx.Response:
    fields = {"csrf_token": _csrf(client, path)} if csrf else {}
    return client.post(f"{path}/papers", data=fields, files={"library": (name, data)})


def _stored(app) -> list[tuple[str | None, str]]:
    with app.reading() as s:
        rows = s.scalars(select(ReaderSeed).order_by(ReaderSeed.id))
        return [(r.arxiv_id, r.title) for r in rows]


@pytest.mark.parametrize(
    ("name", "count"),
    [("zotero_quantum.json", 1), ("zotero_event_extraction.bib", 1), ("zotero_microbiome.ris", 5)],
)
def test_an_uploaded_library_becomes_the_readers_papers(app, page, name, count):
    client, path = page
    response = _upload(client, path, name, (LIBRARIES / name).read_bytes())
    assert response.status_code == 303
    shown = html.unescape(client.get(response.headers["location"]).text)
    assert "Your papers are saved" in shown
    assert f"{count} {'paper' if count == 1 else 'papers'} of yours" in shown
    stored = _stored(app)
    assert len(stored) == count and all(title in shown for _, title in stored)
    mine = client.post(f"{path}/export", data={"csrf_token": _csrf(client, path)}).json()
    assert [p["title"] for p in mine["seed_papers"]] == [title for _, title in stored]


def test_an_upload_without_the_form_token_is_refused_and_stores_nothing(app, page):
    client, path = page
    data = (LIBRARIES / "zotero_quantum.json").read_bytes()
    response = _upload(client, path, "lib.json", data, csrf=False)
    assert response.status_code == 400 and "could not be verified" in response.text
    assert _stored(app) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"@article{x, title = {Unclosed", "not readable as BibTeX"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
        (b"Some notes about papers.", "not a BibTeX, RIS or CSL-JSON file"),
        (b'[{"title": 3}]', "no entry with a title"),
        (b"@misc{x, note = {" + b"a" * (1024 * 1024) + b"}}", "larger than 1024 KB"),
        # A CSL-JSON file nested past the parser's stack, or more entries than a reader has.
        (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
        (b"".join(b"@article{k%d, title = {T}}\n" % n for n in range(2000)), "more than 200"),
        (b"@article{x, title = {Caf\xe9}}", "not UTF-8 text (byte 24)"),
    ],
)
def test_a_bad_file_is_a_form_message_and_changes_nothing(app, page, data, message):
    client, path = page
    assert _upload(client, path, "first.json", (LIBRARIES / "zotero_quantum.json").read_bytes())
    before = _stored(app)
    response = _upload(client, path, "mine.bib", data)
    assert response.status_code == 400
    assert "Please correct this" in response.text and message in response.text
    assert 'id="field-library"' in response.text and "Traceback" not in response.text
    assert _stored(app) == before


def test_a_request_beyond_twice_the_cap_is_refused_unread(app, page):
    client, path = page
    response = _upload(client, path, "huge.bib", b"%" * (2 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert "larger than 1024 KB" in response.text
    assert _stored(app) == []


def test_forgetting_ones_papers(app, page):
    client, path = page
    _upload(client, path, "lib.ris", (LIBRARIES / "zotero_microbiome.ris").read_bytes())
    assert len(_stored(app)) == 5
    response = client.post(f"{path}/papers/clear", data={"csrf_token": _csrf(client, path)})
    assert response.status_code == 303
    assert "Your papers are forgotten" in client.get(response.headers["location"]).text
    assert _stored(app) == []
