"""`subscribers export --format json` and `subscribers import FILE.json`: a lossless round
trip of everything a subscriber has, and all-or-nothing imports of bad files."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.audience import signup
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.models import ConsentEvent, FeedbackVote, Paper, Subscriber
from newsletter.matching import feedback
from tests import factories as f
from tests.conftest import Cli
from tests.html_forms import form_fields

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PAPERS = {"Sparse attention at scale": "2611.00001", "Quiet transformers": None}


def _library(app: App) -> None:
    """Topics and papers, the same in every store (a restore does not bring them)."""
    with app.transaction() as s:
        for slug in ("cv", "ml", "nlp"):
            f.topic(s, slug)
        for title, arxiv_id in PAPERS.items():
            f.paper(s, title).arxiv_id = arxiv_id


@pytest.fixture
def other(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[App]:
    """A second, empty store on the same kind of database, with the same topics and papers."""
    if request.config.getoption("--db") == "postgresql":
        store = request.getfixturevalue("pg_app")
    else:
        url = f"sqlite:///{tmp_path}/other.db"
        store = App(dataclasses.replace(settings, database_url=url))
        store.ensure_schema()
    _library(store)
    yield store
    store.close()


def _cli_for(run: Cli, store: App) -> Cli:
    return Cli({**run.env, "NEWSLETTER_DATABASE_URL": store.settings.database_url})


def _sign_up_and_confirm_on_the_web(app: App, address: str) -> None:
    client = f.web_app(app).test_client()
    page = client.get("/").get_data(as_text=True)
    form = {"email": address, "name": "Zoë « Z » Ünicode", "topics": ["ml", "nlp"],
            "frequency": "weekly", "hour": "7", "timezone": "Europe/Paris",
            "csrf_token": CSRF.search(page).group(1)}  # fmt: skip
    assert client.post("/", data=form, headers={"User-Agent": "Firefox/140"}).status_code == 303
    box = mailbox.Maildir(app.settings.transport.removeprefix("maildir:"), create=True)
    [message] = [email.message_from_bytes(bytes(m), policy=email.policy.default) for m in box]
    text = message.get_body(("plain",)).get_content()
    path = re.search(r"https://news\.example\.test(/confirm/\S+)", text).group(1)
    fields = form_fields(client.get(path).get_data(as_text=True), "/confirm/")
    assert client.post(path, data=fields).status_code == 303


def _everything(app: App, run: Cli) -> None:
    """Subscribers in every state, with every kind of thing a subscriber can have."""
    _library(app)
    _sign_up_and_confirm_on_the_web(app, "zoe@bücher.example")
    for args in (
        ["ada@example.org", "--name", "Ada", "--topics", "ml", "--confirmed",
         "--frequency", "weekly", "--weekly-day", "fri", "--pause", "--hour", "6",
         "--timezone", "Asia/Tokyo", "--max-papers", "3"],
        ["bo@example.org", "--topics", "cv,nlp", "--send-confirmation"],
        ["cy@example.org", "--topics", "cv", "--confirmed"],
        ["di@example.org", "--topics", "nlp", "--confirmed"],
    ):  # fmt: skip
        assert run("subscribers", "add", *args).exit_code == 0
    edit = ["subscribers", "edit", "ada@example.org", "--follow-authors", "Jane Doe;García, M.",
            "--mute", "survey;benchmark", "--keywords", "LoRA"]  # fmt: skip
    assert run(*edit).exit_code == 0
    assert run("suppressions", "add", "di@example.org", "--reason", "asked by phone").exit_code == 0
    with app.transaction() as s:
        ids = {e: i for e, i in s.execute(select(Subscriber.email, Subscriber.id))}
        papers = {p.title: p.id for p in s.scalars(select(Paper))}
        moment = datetime(2026, 11, 28, 9, 30, 15, 123456, tzinfo=UTC)
        feedback.record_vote(ids["ada@example.org"], papers["Quiet transformers"], -1,
                             session=s, now=moment)  # fmt: skip
        feedback.record_vote(ids["ada@example.org"], papers["Sparse attention at scale"], 1,
                             session=s, now=moment + timedelta(seconds=1))  # fmt: skip
        signup.unsubscribe(ids["cy@example.org"], session=s, now=moment)
        s.get(Subscriber, ids["cy@example.org"]).subscriptions = []  # its only topic was removed


def test_export_import_into_an_empty_store_export_is_identical(app, other, run, tmp_path):
    _everything(app, run)
    first = tmp_path / "backup.json"
    result = run("subscribers", "export", "--format", "json", "--output", str(first))
    assert result.exit_code == 0 and result.stderr == f"exported 5 subscribers to {first}\n"

    restore = _cli_for(run, other)
    imported = restore("subscribers", "import", str(first))
    assert imported.exit_code == 0, imported.output
    assert imported.stdout == "backup.json: 5 new, 0 already stored (left as they are)\n"
    again = restore("subscribers", "export", "--format", "json").stdout
    assert again == first.read_text(encoding="utf-8")

    # The file holds what the issue of a backup is: each thing, not just its presence.
    records = {r["email"]: r for r in json.loads(again)}
    ada = records["ada@example.org"]
    assert (ada["frequency"], ada["weekly_day"], ada["paused"]) == ("weekly", 4, True)
    assert ada["follow_authors"] == ["Jane Doe", "García, M."]
    assert (ada["muted_words"], ada["personal_keywords"]) == (["survey", "benchmark"], ["LoRA"])
    assert [(v["arxiv_id"], v["vote"]) for v in ada["votes"]] == [
        (None, "less"), ("2611.00001", "more"),
    ]  # fmt: skip
    zoe = records["zoe@bücher.example"]
    assert [e["kind"] for e in zoe["consent_history"]] == ["signup", "confirm"]
    assert zoe["consent_history"][1]["details"]["signup_event"] == 0
    assert zoe["consent_history"][0]["details"]["prefs"]["topics"] == ["ml", "nlp"]
    assert zoe["consent"]["user_agent"] == "Firefox/140"
    assert records["cy@example.org"]["status"] == "unsubscribed"
    assert records["cy@example.org"]["topics"] == []
    assert records["bo@example.org"]["confirmation_sent_at"] is not None

    # Ids of the new store, not copies of the old ones: the votes and the history hold.
    with other.reading() as s:
        restored = s.scalar(select(Subscriber).where(Subscriber.email == "zoe@bücher.example"))
        history = select(ConsentEvent).where(ConsentEvent.subscriber_id == restored.id)
        events = list(s.scalars(history.order_by(ConsentEvent.id)))
        assert events[1].details["signup"] == events[0].id
        assert s.scalar(select(func.count()).select_from(FeedbackVote)) == 2
    # A suppressed address stays suppressed in the store that has the suppression.
    assert "di@example.org" in run("suppressions", "list").stdout


def test_a_second_import_leaves_stored_subscribers_as_they_are(app, run, tmp_path):
    _everything(app, run)
    path = tmp_path / "backup.json"
    run("subscribers", "export", "--format", "json", "--output", str(path))
    assert run("subscribers", "edit", "ada@example.org", "--resume").exit_code == 0
    run("subscribers", "remove", "bo@example.org", "--yes")
    before = json.loads(run("subscribers", "show", "ada@example.org", "--json").stdout)
    result = run("subscribers", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["new"], report["already_stored"]) == (1, 4)
    assert json.loads(run("subscribers", "show", "ada@example.org", "--json").stdout) == before


def _records(tmp_path: Path, records: list[dict], name: str = "people.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    return str(path)


GOOD = {"email": "a@x.org", "topics": ["ml"], "created_at": "2026-11-01T08:00:00+00:00"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"hour": 24}, "hour must be a whole number 0-23, got '24'"),
        ({"hour": "7"}, "hour must be a whole number, got '\"7\"'"),
        ({"topics": ["ml", "quantum"]}, "unknown topic 'quantum' (known: cv, ml, nlp)"),
        ({"status": "gone"}, "unknown status 'gone' (known: pending, confirmed, unsubscribed"),
        ({"weekly_day": 9}, "weekly day must be a day of the week"),
        ({"email": "not-an-address"}, "invalid email address 'not-an-address'"),
        ({"created_at": "2026-11-01 08:00"}, "created_at must be a date and time with its UTC"),
        ({"colour": "blue"}, "unknown field(s) 'colour'"),
        ({"email": "A@X.ORG"}, "the same address as row 1"),
        ({"votes": [{"title_key": "unheard of", "vote": "more",
                     "created_at": GOOD["created_at"], "updated_at": GOOD["created_at"]}]},
         "1 vote(s) on papers this store does not hold ('unheard of')"),  # fmt: skip
        ({"consent_history": [{"kind": "signup", "at": "yesterday"}]},
         "consent_history entry 1: at must be a date and time"),  # fmt: skip
    ],
)
def test_a_bad_row_is_one_line_exit_2_and_nothing_is_saved(
    app, run, tmp_path, monkeypatch, bad, message
):
    from newsletter.audience import backup

    _library(app)
    monkeypatch.setattr(backup, "BATCH_SIZE", 2)  # the good rows before it were written
    rows = [GOOD] + [{**GOOD, "email": f"r{i}@x.org"} for i in range(4)]
    rows.append({**GOOD, "email": "bad@x.org", **bad})
    before = f.dump_database(app.engine)
    result = run("subscribers", "import", _records(tmp_path, rows))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: people.json, row 6 (") and message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert f.dump_database(app.engine) == before


def test_votes_on_missing_papers_can_be_left_out(app, run, tmp_path):
    _library(app)
    vote = {"title_key": "unheard of", "vote": "more", "created_at": GOOD["created_at"],
            "updated_at": GOOD["created_at"]}  # fmt: skip
    path = _records(tmp_path, [{**GOOD, "votes": [vote]}])
    result = run("subscribers", "import", path, "--skip-missing-papers")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "people.json: 1 new, 0 already stored (left as they are), "
        "1 vote(s) on missing papers left out\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"email": "a@x.org"}', "Error: people.json: not a JSON list of subscribers"),
        ('[{"email": "a@x.org", "topics": ["ml"]}\n\n,{"email": ',
         "Error: people.json, row 2 (line 3): not valid JSON: Expecting value"),  # fmt: skip
        ("[1]", "Error: people.json, row 1: a subscriber must be a JSON object"),
        ('[{"email": "a@x.org"}] [', "Error: people.json, row 1 (line 1): text after the list"),
    ],
)
def test_an_unusable_json_file_is_one_line(app, run, tmp_path, text, message):
    _library(app)
    path = tmp_path / "people.json"
    path.write_text(text, encoding="utf-8")
    before = f.dump_database(app.engine)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert f.dump_database(app.engine) == before


def test_a_json_file_that_is_not_utf8_is_one_line(app, run, tmp_path):
    path = tmp_path / "people.json"
    path.write_bytes(b'[{"email": "a@x.org", "topics": [], "name": "Ren\xe9"}]')
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: people.json: not UTF-8 text (byte 0xe9 at offset 48); save the file as UTF-8\n"
    )
    assert json.loads(run("subscribers", "list", "--json").stdout) == []


def test_json_is_read_from_stdin_in_any_layout(app, run, monkeypatch):
    from newsletter.audience import json_list

    _library(app)
    monkeypatch.setattr(json_list, "CHUNK_BYTES", 999)  # chunks end inside a record and an "é"
    rows = [{**GOOD, "email": f"r{i}@x.org", "name": "é" * 50, "hour": 10} for i in range(30)]
    compact = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)  # one long line
    result = run("subscribers", "import", "-", "--format", "json", input=compact)
    assert result.exit_code == 0 and ": 30 new, 0 already stored" in result.stdout, result.output
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert {(d["name"], d["hour"]) for d in listed} == {("é" * 50, 10)} and len(listed) == 30


def test_options_of_the_other_format_are_refused(run, tmp_path):
    json_file, csv_file = tmp_path / "a.json", tmp_path / "a.csv"
    json_file.write_text("[]", encoding="utf-8")
    csv_file.write_text("email,topics\n", encoding="utf-8")
    status = run("subscribers", "import", str(json_file), "--status", "pending")
    assert status.exit_code == 2 and "--status is for CSV files" in status.stderr
    skip = run("subscribers", "import", str(csv_file), "--skip-missing-papers")
    assert skip.exit_code == 2 and "--skip-missing-papers is for JSON files" in skip.stderr


def test_the_csv_export_says_what_it_drops_and_points_to_json(run):
    text = " ".join(run("subscribers", "export", "--help").stdout.split())
    assert "JSON is the backup" in text
    assert "it drops the frequency, weekly day, pause, followed authors, muted words" in text
    assert "so it is not a backup" in text
    assert "export --format json --output backup.json" in text
