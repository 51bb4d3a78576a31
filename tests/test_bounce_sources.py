"""Reading returned mail safely: what is not a message file in a Maildir is never opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.app import App
from tests.bounce_mail import (
    add_sent_deliveries,
    make_maildir,
    returned,
    suppression_reasons,
)
from tests.conftest import REPO

# Far more than the command needs; on a FIFO it would otherwise wait forever.
CLI_TIMEOUT = 120
SAMPLE_READER = "no.such.reader@gmail.example"


@pytest.fixture
def deliveries(app: App) -> dict[str, int]:
    return add_sent_deliveries(app)


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `newsletter ...` of this checkout in a child process that must end in time."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env=env | {"PYTHONPATH": str(REPO)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def test_what_is_not_a_regular_file_in_a_maildir_is_reported_and_left(
    app, deliveries, env, tmp_path
):
    maildir = tmp_path / "Maildir"
    make_maildir(maildir, [returned(app, "gmail_hard.eml", deliveries[SAMPLE_READER])])
    os.mkfifo(maildir / "new" / "1800000000.fifo.mx")
    # A link to a bounce elsewhere is not read either: a Maildir holds its own files.
    elsewhere = tmp_path / "elsewhere.eml"
    elsewhere.write_bytes(returned(app, "postfix_hard.eml", deliveries["gone@example.org"]))
    (maildir / "cur" / "1800000001.link.mx:2,").symlink_to(elsewhere)
    (maildir / "new" / "1800000002.dir.mx").mkdir()

    done = run_cli(env, tmp_path, "bounces", "process", str(maildir), "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["suppressed_addresses"] == [SAMPLE_READER]
    kept = sorted((o["ref"], o["detail"]) for o in report["outcomes"] if o["action"] == "kept")
    assert kept == [
        ("cur/1800000001.link.mx:2,", "not a readable regular file: left where it is"),
        ("new/1800000000.fifo.mx", "not a readable regular file: left where it is"),
        ("new/1800000002.dir.mx", "not a readable regular file: left where it is"),
    ]
    assert (maildir / "new" / "1800000000.fifo.mx").is_fifo()
    assert (maildir / "cur" / "1800000001.link.mx:2,").is_symlink()
    assert "gone@example.org" not in suppression_reasons(app)
