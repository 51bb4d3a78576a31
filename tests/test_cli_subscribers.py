"""`newsletter subscribers ...`: output, exit codes, and no half-written changes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from newsletter.audience import subscribers as svc
from newsletter.core.app import App
from newsletter.core.models import Topic
from tests.factories import dump_database


@pytest.fixture
def topics(app: App) -> None:
    with app.transaction() as session:
        session.add_all(Topic(slug=s, name=s.upper()) for s in ("cv", "ml", "nlp"))


def emails(app: App) -> list[str]:
    with app.transaction() as session:
        return [s.email for s in svc.list_subscribers(session=session)]


def add(run, email: str = "ada@example.org", *extra: str):
    return run("subscribers", "add", email, "--topics", "ml,nlp", *extra)


def test_add_prints_the_subscriber(run, app: App, topics: None) -> None:
    result = add(run, "Ada@Example.ORG", "--name", "Ada", "--confirmed")
    assert result.exit_code == 0, result.output
    assert result.stdout == "added Ada@example.org (confirmed; topics: ml, nlp)\n"
    assert emails(app) == ["Ada@example.org"]


def test_add_json_uses_the_settings_defaults(run, topics: None) -> None:
    result = add(run, "b@example.org", "--json", "--hour", "6")
    data = json.loads(result.stdout)
    assert (data["status"], data["timezone"], data["hour"], data["max_papers"]) == (
        "pending",
        "UTC",
        6,
        10,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad@@example.org", "--topics", "ml"], "Error: invalid email address 'bad@@example.org'"),
        (
            ["a@x.org", "--topics", "ml,quantum"],
            "Error: unknown topic 'quantum' (known: cv, ml, nlp)",
        ),
        (["a@x.org", "--topics", "ml", "--timezone", "Mars/Base"], "Error: unknown time zone"),
        (["a@x.org", "--topics", "ml", "--hour", "24"], "Error: hour must be a whole number 0-23"),
        (["a@x.org", "--topics", "ml", "--max-papers", "99"], "Error: max papers must be"),
    ],
)
def test_add_rejects_bad_input_with_one_line_and_exit_2(
    run, app: App, topics: None, args: list[str], message: str
) -> None:
    result = run("subscribers", "add", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert emails(app) == []


def test_add_refuses_a_duplicate_with_exit_2(run, app: App, topics: None) -> None:
    add(run, "ada@example.org")
    result = add(run, "ADA@example.org")
    assert result.exit_code == 2
    assert result.stderr == "Error: subscriber 'ADA@example.org' already exists\n"
    assert emails(app) == ["ada@example.org"]


# --- frequency, weekly day, pause ----------------------------------------------------------


def test_add_and_edit_set_frequency_weekday_and_pause(run, app: App, topics: None) -> None:
    added = add(run, "a@x.org", "--frequency", "weekly", "--weekly-day", "Fri", "--pause")
    assert added.exit_code == 0, added.output
    assert added.stdout.splitlines()[1] == (
        "  delivery: weekly on Friday at 8:00 UTC, at most 10 papers, paused"
    )
    shown = json.loads(run("subscribers", "show", "a@x.org", "--json").stdout)
    assert (shown["frequency"], shown["weekly_day"], shown["paused"]) == ("weekly", 4, True)

    edited = run("subscribers", "edit", "a@x.org", "--resume", "--weekly-day", "0", "--json")
    data = json.loads(edited.stdout)
    assert (data["frequency"], data["weekly_day"], data["paused"]) == ("weekly", 0, False)
    daily = run("subscribers", "edit", "a@x.org", "--frequency", "daily", "--max-papers", "1")
    assert daily.stdout.splitlines()[1] == "  delivery: daily at 8:00 UTC, at most 1 paper"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frequency", "hourly"], "Error: frequency must be daily or weekly, got 'hourly'"),
        (["--weekly-day", "7"], "Error: weekly day must be a day of the week, Monday to Sunday"),
        (["--weekly-day", "funday"], "Error: weekly day must be a day of the week"),
        (["--weekly-day", "t"], "Error: weekly day must be a day of the week"),  # Tue or Thu?
        (["--pause", "--hour", "24"], "Error: hour must be a whole number 0-23"),
    ],
)
def test_bad_frequency_or_weekday_is_one_line_and_changes_nothing(
    run, app: App, topics: None, args: list[str], message: str
) -> None:
    add(run, "a@x.org")
    before = dump_database(app.engine)
    edited = run("subscribers", "edit", "a@x.org", *args)
    added = add(run, "b@x.org", *args)
    for result in (edited, added):
        assert result.exit_code == 2
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert dump_database(app.engine) == before


# --- import -----------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "people.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_of_good_rows_exits_0(run, app: App, topics: None, tmp_path: Path) -> None:
    path = write(tmp_path, "email,name,topics\na@x.org,A,ml\nb@x.org,B,cv;nlp\n")
    result = run("subscribers", "import", path)
    assert result.exit_code == 0
    assert result.stdout == "people.csv: 2 new, 0 updated, 0 unchanged, 0 skipped\n"
    again = run("subscribers", "import", path)
    assert again.stdout == "people.csv: 0 new, 0 updated, 2 unchanged, 0 skipped\n"


def test_a_topics_cell_with_commas_reads_like_semicolons(run, app, topics, tmp_path) -> None:
    path = write(tmp_path, 'email,topics\na@x.org,"ml,nlp"\nb@x.org,ml;nlp\nc@x.org," cv , ml;"\n')
    result = run("subscribers", "import", path)
    assert result.exit_code == 0, result.output
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    chosen = {d["email"]: d["topics"] for d in listed}
    assert chosen == {"a@x.org": ["ml", "nlp"], "b@x.org": ["ml", "nlp"], "c@x.org": ["cv", "ml"]}
    exported = run("subscribers", "export").stdout
    assert "a@x.org,,ml;nlp," in exported  # export keeps writing ";"


def test_a_comma_separated_unknown_topic_is_named_and_skipped(run, app, topics, tmp_path) -> None:
    path = write(tmp_path, 'email,topics\na@x.org,"ml,quantum"\n')
    result = run("subscribers", "import", path)
    assert result.exit_code == 1
    assert "line 2: unknown topic 'quantum'" in result.stderr
    assert emails(app) == []


def test_import_and_export_help_say_both_topic_separators_work(run) -> None:
    import_help = " ".join(run("subscribers", "import", "--help").stdout.split())
    export_help = " ".join(run("subscribers", "export", "--help").stdout.split())
    assert 'topics are slugs separated by ";" or by ","' in import_help
    assert '`import` reads ";" and "," alike' in export_help


def test_import_with_bad_rows_saves_the_good_and_exits_1(
    run, app: App, topics: None, tmp_path: Path
) -> None:
    path = write(tmp_path, "email,topics\na@x.org,ml\nnope,ml\nc@x.org,bio\nd@x.org,cv\n")
    result = run("subscribers", "import", path)
    assert result.exit_code == 1
    assert result.stdout == "people.csv: 2 new, 0 updated, 0 unchanged, 2 skipped\n"
    assert result.stderr.splitlines() == [
        "line 3: invalid email address 'nope': An email address must have an @-sign.",
        "line 4: unknown topic 'bio' (known: cv, ml, nlp)",
    ]
    assert emails(app) == ["a@x.org", "d@x.org"]


def test_import_shows_20_errors_and_counts_the_rest(run, topics: None, tmp_path: Path) -> None:
    path = write(tmp_path, "email,topics\n" + "bad,ml\n" * 25)
    result = run("subscribers", "import", path)
    lines = result.stderr.splitlines()
    assert result.exit_code == 1 and len(lines) == 21
    assert lines[0].startswith("line 2: ") and lines[19].startswith("line 21: ")
    assert lines[20] == "... and 5 more skipped rows (--json lists them)"


def test_import_json_and_pending_status(run, app: App, topics: None, tmp_path: Path) -> None:
    path = write(tmp_path, "email,topics\na@x.org,ml\nx,ml\n")
    result = run("subscribers", "import", path, "--status", "pending", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["new"], report["skipped"], report["errors"][0]["line"]) == (1, 1, 3)
    shown = json.loads(run("subscribers", "show", "a@x.org", "--json").stdout)
    assert (shown["status"], shown["consent_source"]) == ("pending", "import:people.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("email,name\na@x.org,A\n", "Error: people.csv, line 1: missing column(s) topics"),
        ("", "Error: people.csv is empty"),
    ],
)
def test_import_of_an_unusable_file_exits_2_and_writes_nothing(
    run, app: App, topics: None, tmp_path: Path, content: str, message: str
) -> None:
    result = run("subscribers", "import", write(tmp_path, content))
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert emails(app) == []


def test_import_of_non_utf8_exits_2_and_writes_nothing(
    run, app: App, topics: None, tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"email,name,topics\na@x.org,A,ml\nb@x.org,Ren\xe9,ml\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: people.csv, line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8\n"
    )
    assert emails(app) == []


def test_import_of_a_missing_file_exits_2(run, tmp_path: Path) -> None:
    result = run("subscribers", "import", str(tmp_path / "nope.csv"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and "nope.csv" in result.stderr


def test_import_reads_stdin(run, app: App, topics: None) -> None:
    result = run("subscribers", "import", "-", input="email,topics\na@x.org,ml\n")
    assert result.exit_code == 0 and emails(app) == ["a@x.org"]


# --- export, list, show, remove --------------------------------------------------------


def test_export_round_trips_with_import(run, app: App, topics: None, tmp_path: Path) -> None:
    add(run, "Zoe@bücher.example", "--name", 'Zoë, "Z" Ünicode', "--confirmed")
    add(run, "b@example.org", "--timezone", "Asia/Tokyo", "--hour", "5")
    out = tmp_path / "backup.csv"
    result = run("subscribers", "export", "--output", str(out))
    assert result.exit_code == 0 and result.stderr == f"exported 2 subscribers to {out}\n"
    assert run("subscribers", "export").stdout == out.read_text(encoding="utf-8")

    before = out.read_text(encoding="utf-8")
    for email in emails(app):
        run("subscribers", "remove", email, "--yes")
    assert emails(app) == []
    assert run("subscribers", "import", str(out)).exit_code == 0
    assert run("subscribers", "export").stdout == before


FORMULA_NAMES = ['=HYPERLINK("https://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)",
                 "'=already quoted", "'plain quote", "''two"]  # fmt: skip


def test_export_neutralises_formulas_and_import_restores_them(run, app, topics, tmp_path):
    people = {f"r{i}@example.org": name for i, name in enumerate(FORMULA_NAMES)}
    people["=x@example.org"] = "Eq"
    people["+y@example.org"] = "Plus"
    for address, name in people.items():
        assert add(run, address, "--name", name).exit_code == 0
    out = tmp_path / "people.csv"
    assert run("subscribers", "export", "--output", str(out)).exit_code == 0

    with out.open(encoding="utf-8", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert '\'=HYPERLINK("https://evil.example","x")' in cells and "'=x@example.org" in cells
    assert "'plain quote" in cells and "''=already quoted" in cells

    for address in people:
        assert run("subscribers", "remove", address, "--yes").exit_code == 0
    assert run("subscribers", "import", str(out)).exit_code == 0
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert {d["email"]: d["name"] for d in listed} == people
    assert run("subscribers", "export").stdout == out.read_text(encoding="utf-8")


def test_export_and_import_help_say_what_happens_to_formulas(run):
    assert "formula" in run("subscribers", "export", "--help").stdout
    import_help = " ".join(run("subscribers", "import", "--help").stdout.split())
    assert "= + - @, a tab or a CR is removed" in import_help


def test_export_into_a_missing_folder_is_one_line(run, topics: None, tmp_path: Path) -> None:
    add(run, "a@x.org")
    result = run("subscribers", "export", "--output", str(tmp_path / "missing" / "backup.csv"))
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr
    assert not (tmp_path / "missing").exists()


def test_export_json(run, topics: None) -> None:
    add(run, "a@x.org")
    data = json.loads(run("subscribers", "export", "--format", "json").stdout)
    assert [(d["email"], d["topics"]) for d in data] == [("a@x.org", ["ml", "nlp"])]


def test_list_text_json_and_filters(run, topics: None) -> None:
    add(run, "b@x.org", "--confirmed")
    run("subscribers", "add", "a@x.org", "--topics", "cv")
    result = run("subscribers", "list")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["EMAIL", "STATUS", "TIMEZONE", "HOUR", "MAX", "TOPICS"]
    assert [line.split() for line in lines[1:]] == [
        ["a@x.org", "pending", "UTC", "8", "10", "cv"],
        ["b@x.org", "confirmed", "UTC", "8", "10", "ml,nlp"],
    ]
    assert result.stderr == "2 subscribers\n"
    confirmed = json.loads(run("subscribers", "list", "--status", "confirmed", "--json").stdout)
    assert [d["email"] for d in confirmed] == ["b@x.org"]
    by_topic = json.loads(run("subscribers", "list", "--topic", "cv", "--json").stdout)
    assert [d["email"] for d in by_topic] == ["a@x.org"]


def test_list_of_an_unknown_topic_exits_2(run, topics: None) -> None:
    result = run("subscribers", "list", "--topic", "bio")
    assert result.exit_code == 2
    assert result.stderr == "Error: unknown topic 'bio' (known: cv, ml, nlp)\n"


def test_show_text_and_json(run, topics: None) -> None:
    add(run, "a@x.org", "--name", "Ann")
    text = run("subscribers", "show", "A@X.ORG").stdout
    assert "email:           a@x.org\n" in text and "topics:          ml, nlp\n" in text
    data = json.loads(run("subscribers", "show", "a@x.org", "--json").stdout)
    assert (data["name"], data["consent"]["source"]) == ("Ann", "admin")


def test_show_of_an_unknown_address_exits_2(run) -> None:
    result = run("subscribers", "show", "who@x.org")
    assert result.exit_code == 2 and result.stderr == "Error: no subscriber 'who@x.org'\n"


def test_remove_asks_first(run, app: App, topics: None) -> None:
    add(run, "a@x.org")
    declined = run("subscribers", "remove", "a@x.org", input="n\n")
    assert declined.exit_code == 1 and emails(app) == ["a@x.org"]
    accepted = run("subscribers", "remove", "A@x.org", input="y\n")
    assert accepted.exit_code == 0 and accepted.stdout == "removed a@x.org\n"
    assert emails(app) == []


def test_remove_yes_and_unknown(run, app: App, topics: None) -> None:
    add(run, "a@x.org")
    assert run("subscribers", "remove", "a@x.org", "--yes").stdout == "removed a@x.org\n"
    missing = run("subscribers", "remove", "a@x.org", "--yes")
    assert missing.exit_code == 2 and missing.stderr == "Error: no subscriber 'a@x.org'\n"


@pytest.mark.parametrize(
    "command", ["add", "edit", "invite", "import", "export", "list", "show", "remove"]
)
def test_every_command_has_help_with_an_example(run, command: str) -> None:
    result = run("subscribers", command, "--help")
    assert result.exit_code == 0 and re.search(r"Examples?:", result.stdout)
    assert f"newsletter subscribers {command}" in result.stdout


def test_import_draws_a_progress_bar_on_stderr_for_big_files(
    run, app: App, topics: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.cli import subscribers as cli_module

    monkeypatch.setattr(cli_module, "PROGRESS_MIN_BYTES", 10)
    result = run("subscribers", "import", write(tmp_path, "email,topics\na@x.org,ml\n"))
    assert result.exit_code == 0 and "importing" in result.stderr
    assert "importing" not in result.stdout
