"""What the list calls itself, in any field: its name, subject line, List-Id, wording, pages."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import http.client
import mailbox
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from newsletter.content import headers
from newsletter.core import identity
from newsletter.core.config import load_settings
from newsletter.core.errors import ConfigError
from newsletter.web import create_app
from tests import factories as f
from tests.factories import dump_database

ASTRO = """\
list_name = "Galaxies & Cosmology"
list_tagline = "new astro-ph papers for the department"
subject = "{list_name}, {date}: {top_title} ({count})"
"""


@pytest.fixture
def listing(app) -> None:
    with app.transaction() as s:
        cosmo = f.topic(s, "cosmology")
        f.paper(s, "Baryon acoustic oscillations in the DESI year-one data", topics={cosmo: 2.0})
        f.paper(s, "A cosmology of dark energy with a varying equation of state",
                topics={cosmo: 1.5})  # fmt: skip
        f.subscriber(s, "vera@example.org", [cosmo])


def _sent(app) -> list[email.message.EmailMessage]:
    path = Path(app.settings.transport.removeprefix("maildir:"))
    if not path.exists():
        return []
    return [
        email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        for m in mailbox.Maildir(path, create=False)
    ]


def test_the_list_name_subject_and_list_id_are_the_operators(app, listing, run, tmp_path):
    (tmp_path / "newsletter.toml").write_text(ASTRO, encoding="utf-8")
    run.env = {**run.env, "NEWSLETTER_FROM": "Astro list <astro@dept.example.edu>"}

    result = run("send", "--yes", "--date", f.DAY.isoformat())

    assert result.exit_code == 0, result.output
    (message,) = _sent(app)
    assert message["Subject"] == (
        f"Galaxies & Cosmology, {f.DAY:%b} {f.DAY.day}: "
        "Baryon acoustic oscillations in the DESI year-one data (2)"
    )
    # The List-Id is the list's name under the From domain, a valid header.
    assert message["List-Id"] == (
        "Galaxies & Cosmology <galaxies-cosmology.dept.example.edu>"
    )
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Galaxies &amp; Cosmology" in html
    assert text.startswith("Galaxies & Cosmology · ")


def test_the_default_subject_is_unchanged_and_the_list_id_follows_the_from_domain(settings):
    assert settings.subject == "Your {kind} papers — {date}: {top_title}{more}"
    assert identity.list_id(settings) == "Daily Papers <daily-papers.news.example.test>"
    named = load_settings(env={}, from_address="papers@lab.example.org", secret_key="k" * 32)
    assert identity.list_name(named) == "Daily Papers"
    assert identity.list_id(named) == "Daily Papers <daily-papers.lab.example.org>"
    fixed = load_settings(env={}, list_id="Lab <lab.example.org>", secret_key="k" * 32)
    assert identity.list_id(fixed) == "Lab <lab.example.org>"


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        ('"Papers {when}"', "unknown field {when}"),
        ('"Papers {top_title.__class__}"', "unknown field {top_title.__class__}"),
        ('"Papers {date!r}"', "without a format or conversion"),
        ('"Papers {date"', "is not a subject line"),
        ('"Papers\\r\\nBcc: x@example.org"', "one line"),
    ],
)
def test_a_bad_subject_setting_is_one_line_and_changes_nothing(app, listing, run, tmp_path,
                                                               subject, problem):  # fmt: skip
    (tmp_path / "newsletter.toml").write_text(f"subject = {subject}\n", encoding="utf-8")
    before = dump_database(app.engine)

    result = run("send", "--yes", "--date", f.DAY.isoformat())

    assert result.exit_code != 0
    assert result.output.count("\n") == 1 and problem in result.output, result.output
    assert "setting subject" in result.output
    assert dump_database(app.engine) == before
    assert _sent(app) == []


def test_a_list_name_with_a_line_break_is_refused():
    with pytest.raises(ConfigError, match="list_name: must be one line"):
        load_settings(env={}, list_name="Papers\nBcc: x@example.org", secret_key="k" * 32)


@pytest.fixture
def served(app) -> Iterator[dict]:
    """The web app on 127.0.0.1 in a thread; holder["app"] is set by the test."""
    holder: dict = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    holder["port"] = server.server_port
    yield holder
    server.shutdown()
    server.server_close()


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read().decode()
    conn.close()
    assert answer.status == 200, body
    return body


def test_pages_speak_of_upvotes_only_where_the_source_counts_them(app, served):
    with app.transaction() as s:
        f.topic(s, "cosmology")
    for sources, upvoted in ((("arxiv",), False), (("hf",), True)):
        app.settings = dataclasses.replace(
            app.settings,
            scheduler_sources=sources,
            list_tagline="new astro-ph papers for the department",
        )
        served["app"] = create_app(app.settings, app=app)

        page = _get(served["port"], "/")

        assert ("upvoted" in page) is upvoted, sources
        assert "new astro-ph papers for the department" in page
        assert "trending" not in page.lower()


def test_templates_dir_overrides_web_pages_too(app, served, tmp_path):
    override = tmp_path / "theme" / "web"
    override.mkdir(parents=True)
    shipped = Path(__file__).parents[1] / "templates" / "web" / "subscribe.html"
    page = shipped.read_text(encoding="utf-8").replace(
        "<h1>", "<p>Physics department, room 2.14</p><h1>", 1
    )
    (override / "subscribe.html").write_text(page, encoding="utf-8")
    with app.transaction() as s:
        f.topic(s, "cosmology")
    app.settings = dataclasses.replace(app.settings, templates_dir=str(tmp_path / "theme"))
    served["app"] = create_app(app.settings, app=app)

    assert "Physics department, room 2.14" in _get(served["port"], "/")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Physics, Maths", '"Physics, Maths" <physics-maths.lab.example.org>'),
        ('Say "hi"', '"Say \\"hi\\"" <say-hi.lab.example.org>'),
        ("Ökologie", "\"Ökologie\" <okologie.lab.example.org>"),
        ("世界", '"世界" <papers.lab.example.org>'),
    ],
)
def test_a_derived_list_id_is_a_valid_header_for_any_name(name, expected):
    settings = load_settings(
        env={}, list_name=name, from_address="x@lab.example.org", secret_key="k" * 32
    )
    assert identity.list_id(settings) == expected


def test_a_derived_list_id_under_an_internationalised_from_domain_is_ascii():
    settings = load_settings(
        env={}, from_address="Bücher <papers@bücher.example>", secret_key="k" * 32
    )
    assert identity.list_id(settings) == '"Bücher" <bucher.xn--bcher-kva.example>'
    headers.list_id_field(identity.list_id(settings))  # a valid header, not a ConfigError
