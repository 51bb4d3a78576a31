"""Reading returned mail safely: what is not a message file, and mbox files that refuse a lock."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from newsletter.core.app import App
from tests.bounce_mail import (
    add_sent_deliveries,
    make_maildir,
    returned,
    statuses,
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


def write_mbox(path: Path, messages: list[bytes]) -> bytes:
    path.parent.mkdir(exist_ok=True)
    box = mailbox.mbox(path)
    for data in messages:
        box.add(data)
    box.close()
    return path.read_bytes()


@contextmanager
def lockf_held_elsewhere(path: Path) -> Iterator[None]:
    """Hold a lockf lock on a file from another process, as a delivery agent does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'rb+'); fcntl.lockf(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


@pytest.mark.parametrize("holder", ["dot lock file", "dot lock directory", "lockf"])
def test_an_mbox_locked_elsewhere_is_one_line_of_error(app, deliveries, run, tmp_path, holder):
    path = tmp_path / "mail" / "bounces.mbox"
    before = write_mbox(path, [returned(app, "gmail_hard.eml", deliveries[SAMPLE_READER])])
    lock = path.with_name("bounces.mbox.lock")
    if holder == "dot lock file":
        lock.write_text("4242\n")  # the delivery agent's own lock, left while it writes
    elif holder == "dot lock directory":
        lock.mkdir()

    if holder == "lockf":
        with lockf_held_elsewhere(path):
            result = run("bounces", "process", str(path))
    else:
        result = run("bounces", "process", str(path))

    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "locked by another program" in result.stderr
    assert path.read_bytes() == before and not path.with_name("bounces.mbox.processed").exists()
    assert suppression_reasons(app) == {}


@contextmanager
def refusing_new_files(folder: Path) -> Iterator[None]:
    """Make a folder refuse new files: immutable for root (who ignores modes), else 0555."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this filesystem cannot make a folder immutable: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_mbox_whose_folder_takes_no_new_files_is_one_line_of_error(
    app, deliveries, run, tmp_path
):
    path = tmp_path / "mail" / "bounces.mbox"
    before = write_mbox(path, [returned(app, "gmail_hard.eml", deliveries[SAMPLE_READER])])

    with refusing_new_files(path.parent):
        result = run("bounces", "process", str(path))

    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "its folder is not writable" in result.stderr
    assert path.read_bytes() == before
    # Nothing acted on: a message that cannot be moved out would be counted again next run.
    assert suppression_reasons(app) == {}
    assert statuses(app)[SAMPLE_READER] == "confirmed"
