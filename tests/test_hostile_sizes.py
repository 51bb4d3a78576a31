"""Hostile sizes: a 1 MB abstract, 10,000 authors, a 100 MB CSV (streamed), empty files."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import func, select

from newsletter.core.models import Paper, Subscriber
from tests import factories as f
from tests.conftest import FIXTURES
from tests.factories import dump_database

CSV_BYTES = 100 * 1024 * 1024
PEAK_RSS_LIMIT_MB = 300


def _sent(run, settings) -> tuple[bytes, email.message.EmailMessage]:
    assert run("send", "--date", f.DAY.isoformat()).exit_code == 0
    [raw] = [bytes(m) for m in mailbox.Maildir(settings.transport.removeprefix("maildir:"))]
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def test_a_1_mb_abstract_and_10000_authors_make_a_small_digest(run, settings, tmp_path):
    paper = {
        "title": "A language model with a very long abstract",
        "abstract": "language model " + "word " * 200_000,
        "authors": [f"Author {i}" for i in range(10_000)],
        "arxiv_id": "2611.00001",
        "listing_date": f.DAY.isoformat(),
    }
    path = tmp_path / "big.json"
    path.write_text(json.dumps([paper]), encoding="utf-8")
    assert run("topics", "add", "llm", "--name", "LLM", "--keywords", "language model")\
        .exit_code == 0  # fmt: skip
    assert run("papers", "import", str(path)).exit_code == 0
    assert run("subscribers", "add", "a@example.org", "--topics", "llm", "--confirmed")\
        .exit_code == 0  # fmt: skip

    raw, message = _sent(run, settings)

    assert len(raw) < 100_000  # the abstract is trimmed and the authors cut to "et al."
    text = message.get_body(("plain",)).get_content()
    assert "Author 0" in text and "et al." in text and "Author 9999" not in text


def test_a_100_mb_csv_is_imported_as_a_stream(app, settings, env, tmp_path):
    """The slow one (about a minute): generate 100 MB in chunks, import it in a child process."""
    with app.transaction() as s:
        f.topic(s, "llm")
    path = tmp_path / "huge.csv"
    name = "N" * 180  # long but valid names: fewer rows for the same bytes
    rows = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,topics\n")
        while out.tell() < CSV_BYTES:
            out.write("".join(f"r{rows + i}@example.com,{name},llm\n" for i in range(10_000)))
            rows += 10_000
    child = textwrap.dedent(
        f"""
        import re
        from newsletter.core.app import App
        from newsletter.core.config import load_settings
        from newsletter.audience.csv_import import import_csv

        app = App(load_settings())
        with app.transaction() as session:
            report = import_csv({str(path)!r}, session=session)
        # VmHWM is this program's own peak: ru_maxrss would keep the peak of the process it
        # was forked from (a test runner grown to hundreds of MB), which survives exec.
        status = open("/proc/self/status").read()
        peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024
        print(report.to_dict()["new"], peak)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], env=env | {"PATH": ""}, capture_output=True, text=True,
        timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    inserted, peak_mb = map(int, done.stdout.split())
    assert inserted == rows
    print(f"100 MB CSV: {rows} rows, peak RSS {peak_mb} MB")
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb} MB"
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == rows


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (["papers", "import"], 2, "empty"),
        (["subscribers", "import"], 2, "empty"),
        (["topics", "import"], 2, "topic"),
        (["bounces", "process"], 0, "0 messages"),  # an empty mbox: no bounce to act on
    ],
)
def test_an_empty_file_is_one_line_and_changes_nothing(run, app, settings, tmp_path, command,
                                                       code, message):  # fmt: skip
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    before = dump_database(app.engine)

    result = run(*command, str(path))

    assert result.exit_code == code, result.output
    assert result.output.count("\n") == 1 and message in result.output
    assert dump_database(app.engine) == before


DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (DEEP_JSON, "nested too deeply"),
        ('[{"title": "A", "upvotes": ' + "9" * 5000 + "}]", "'upvotes' must be a whole number"),
        ('[{"title": "A", "upvotes": 100000000000000000000}]', "'upvotes' must be a whole number"),
        ('[{"title": "A", "upvotes": 1e400}]', "'upvotes' must be a whole number"),
        ('[{"title": "A", "upvotes": -1}]', "'upvotes' must be a whole number"),
    ],
)
def test_deep_nesting_and_huge_numbers_in_a_paper_file_are_one_line(
    run, app, tmp_path, document, message
):
    path = tmp_path / "hostile.json"
    path.write_text(document, encoding="utf-8")
    before = dump_database(app.engine)

    result = run("papers", "import", str(path), "--date", f.DAY.isoformat())

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert dump_database(app.engine) == before


def test_out_of_range_counts_in_an_hf_listing_are_left_out(run, app, tmp_path):
    """A listing from Hugging Face is the source's word: a count no column can hold is dropped."""
    items = json.loads((FIXTURES / "hf_daily_papers_3.json").read_text(encoding="utf-8"))
    items[0]["paper"]["upvotes"] = 10**20
    text = json.dumps(items)
    # A 5,000-digit number, even in a field the parser ignores, must not stop the import.
    text = text.replace('"paper": {', '"paper": {"numComments": ' + "7" * 5000 + ", ", 1)
    path = tmp_path / "hf.json"
    path.write_text(text, encoding="utf-8")

    result = run("papers", "import", str(path), "--date", f.DAY.isoformat())

    assert result.exit_code == 0, result.output
    with app.sessions() as s:
        upvotes = {p.arxiv_id: p.upvotes for p in s.scalars(select(Paper))}
    assert len(upvotes) == len(items) and upvotes[items[0]["paper"]["id"]] is None


def test_numbers_of_thousands_of_digits_in_a_csv_are_reported_by_line(run, app, tmp_path):
    with app.transaction() as s:
        f.topic(s, "llm")
    huge = "1" * 5000
    path = tmp_path / "people.csv"
    path.write_text(
        f"email,topics,hour,max_papers\na@example.org,llm,{huge},\nb@example.org,llm,,{huge}\n"
        "c@example.org,llm,7,10\n",
        encoding="utf-8",
    )

    result = run("subscribers", "import", str(path), "--json")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["new"], [e["line"] for e in report["errors"]]) == (1, [2, 3])
    assert "hour must be a whole number 0-23" in report["errors"][0]["reason"]
    assert huge not in result.stdout


HOSTILE_TOML = [
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than"),
    ("x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n", "nested deeper than"),
    ("x" + ".a" * 5_000 + " = 1\n", "nested deeper than"),
    ("x = " + "9" * 5_000 + "\n", "a number has thousands of digits"),
]


@pytest.mark.parametrize(("document", "message"), HOSTILE_TOML)
def test_deep_nesting_and_huge_numbers_in_a_topics_file_are_one_line(
    run, app, tmp_path, document, message
):
    path = tmp_path / "topics.toml"
    path.write_text('[[topic]]\nslug = "llm"\nname = "LLM"\n' + document, encoding="utf-8")
    before = dump_database(app.engine)

    result = run("topics", "import", str(path))

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert dump_database(app.engine) == before


@pytest.mark.parametrize(("document", "message"), HOSTILE_TOML)
def test_deep_nesting_and_huge_numbers_in_the_config_file_are_one_line(
    run, app, tmp_path, document, message
):
    (tmp_path / "newsletter.toml").write_text(document, encoding="utf-8")
    before = dump_database(app.engine)

    result = run("config", "--json")

    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "newsletter.toml" in result.stderr
    assert dump_database(app.engine) == before
