"""`newsletter preview`: the files it writes and the names it refuses."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests import factories as f
from tests.factories import dump_database


@pytest.fixture
def reader(app) -> str:
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0})
        return f.subscriber(s, "ada@example.org", [llm]).email


@pytest.mark.parametrize("name", ["ada.html", "ada.eml"])
def test_preview_writes_the_html_part_or_the_whole_message(run, reader, tmp_path, name):
    path = tmp_path / name

    result = run("preview", reader, "--output", str(path))

    assert result.exit_code == 0 and result.stdout == f"wrote {path}\n", result.output
    if name.endswith(".html"):
        assert "Scaling laws for tiny models" in path.read_text(encoding="utf-8")
    else:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["To"] == "Ada <ada@example.org>"


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing/folder/ada.html", "does not exist"), ("ada.txt", "use a .html or .eml")],
)
def test_a_bad_output_name_is_one_line_and_writes_nothing(run, app, reader, tmp_path, name,
                                                          message):  # fmt: skip
    before = dump_database(app.engine)

    result = run("preview", reader, "--output", str(tmp_path / name))

    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.stderr, result.output
    assert not (tmp_path / "missing").exists() and not (tmp_path / "ada.txt").exists()
    assert dump_database(app.engine) == before
