"""A database that cannot be reached or opened is one line naming it, exit 1, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _newsletter(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _database(tmp_path: Path, kind: str) -> tuple[str, str]:
    """Return a database URL that cannot be used, and the reason the error must give."""
    if kind == "refused":
        url = f"postgresql+psycopg://nl:hunter2@127.0.0.1:{_closed_port()}/news"
        return url, "Connection refused"
    if kind == "not a folder":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder\n")
        return f"sqlite:///{blocker}/var/newsletter.db", "Not a directory"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return f"sqlite:///{folder}", "unable to open database file"


@pytest.mark.parametrize("kind", ["refused", "not a folder", "a folder as the file"])
@pytest.mark.parametrize("command", [("status",), ("subscribers", "list"), ("send", "--yes")])
def test_an_unusable_database_is_one_line_naming_it(env, tmp_path, kind, command):
    url, reason = _database(tmp_path, kind)
    result = _newsletter({**env, "NEWSLETTER_DATABASE_URL": url}, tmp_path, *command)

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: database ") and reason in line
    assert "hunter2" not in line
    shown = url.replace(":hunter2@", ":***@")
    assert shown in line
    assert result.stdout == ""
