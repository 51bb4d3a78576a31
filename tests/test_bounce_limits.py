"""What one run of `bounces process` may read: the first 2 MB of a message, 1000 messages.

Each run is a child process whose peak memory is measured (`RUSAGE_CHILDREN` of a wrapper
that only runs it): the outcome to hold is bounded memory, whatever a message or a server sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.core.app import App
from tests.bounce_mail import BOUNCES, add_sent_deliveries, make_maildir, returned, statuses
from tests.conftest import REPO
from tests.imap_server import DovecotServer, ScriptedImapServer
from tests.imap_server import available as dovecot_available

CLI_TIMEOUT = 300
HUGE = 100_000_000  # the size that took a run to 884 MB
PEAK_LIMIT_KB = 200_000
READER = "no.such.reader@gmail.example"
# Runs its arguments and writes their peak resident memory (KB) to the file named first.
MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(done.returncode)\n"
)


@pytest.fixture
def deliveries(app: App) -> dict[str, int]:
    return add_sent_deliveries(app)


def measured_cli(
    env: dict[str, str], cwd: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `newsletter ...` in a child process; return its result and peak memory in KB."""
    peak = cwd / "peak.txt"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(peak), sys.executable, "-m", "newsletter", *args],
        env={"PATH": os.environ.get("PATH", "")} | env | {"PYTHONPATH": str(REPO)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )
    return done, int(peak.read_text())


def write_huge_bounce(path: Path, head: bytes, size: int = HUGE) -> None:
    """Write a DSN whose returned original carries an attachment of `size` bytes."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\n"
    with path.open("wb") as out:
        out.write(head)
        out.write(b"--huge\nContent-Type: application/octet-stream\n")
        out.write(b"Content-Transfer-Encoding: base64\n\n")
        for _ in range(size // len(line)):
            out.write(line)
        out.write(b"--huge--\n\n--" + POSTFIX_BOUNDARY + b"--\n")


POSTFIX_BOUNDARY = b"4ZxQ1b2cD3z9.1795939205/mail.news.example.test"


def huge_dsn_head(app: App, delivery_id: int) -> bytes:
    """Postfix's DSN for gone@example.org up to its returned original, now a whole message."""
    data = returned(app, "postfix_hard.eml", delivery_id)
    cut = data.index(b"Content-Description: Undelivered Message Headers")
    return data[:cut] + (
        b"Content-Type: message/rfc822\n\nFrom: papers@news.example.test\nSubject: x\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="huge"\n\n'
    )


def test_a_huge_message_in_a_maildir_is_read_in_bounded_memory(app, deliveries, env, tmp_path):
    maildir = tmp_path / "Maildir"
    make_maildir(maildir, [returned(app, "gmail_hard.eml", deliveries[READER])])
    huge = maildir / "new" / "1800000000.huge.mx"
    write_huge_bounce(huge, huge_dsn_head(app, deliveries["gone@example.org"]))
    size = huge.stat().st_size

    done, peak = measured_cli(env, tmp_path, "bounces", "process", str(maildir), "--json")

    assert done.returncode == 0, done.stderr
    assert peak < PEAK_LIMIT_KB, f"peak {peak} KB"
    report = json.loads(done.stdout)
    # Its report comes first, so the first 2 MB are enough to read it.
    assert report["suppressed_addresses"] == ["gone@example.org", READER]
    moved = maildir / ".processed" / "new" / huge.name
    assert moved.stat().st_size == size  # moved whole, never rewritten


def test_a_huge_message_on_stdin_is_read_in_bounded_memory(app, deliveries, env, tmp_path):
    path = tmp_path / "huge.eml"
    write_huge_bounce(path, huge_dsn_head(app, deliveries["gone@example.org"]))
    peak_file = tmp_path / "peak.txt"
    with path.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(peak_file), sys.executable, "-m", "newsletter"]
            + ["bounces", "process", "-"],
            env={"PATH": os.environ.get("PATH", "")} | env | {"PYTHONPATH": str(REPO)},
            cwd=tmp_path,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
    assert done.returncode == 0, done.stderr
    assert int(peak_file.read_text()) < PEAK_LIMIT_KB
    assert "suppressed gone@example.org" in done.stdout


def test_a_run_reads_at_most_its_limit_and_new_mail_before_mail_kept_earlier(
    app, deliveries, run, tmp_path
):
    (tmp_path / "newsletter.toml").write_text("bounce_max_messages = 2\n")
    junk = [(BOUNCES / "human_reply.eml").read_bytes().replace(b"Subject: ", b"Subject: %d" % i)
            for i in range(2)]  # fmt: skip
    maildir = tmp_path / "Maildir"
    make_maildir(maildir, junk)

    first = run("bounces", "process", str(maildir), "--json")
    assert json.loads(first.stdout)["kept"] == 2
    # The kept ones stay in the inbox, unread, in cur/; new mail arrives after them.
    assert len(list((maildir / "cur").iterdir())) == 2
    bounce = returned(app, "gmail_hard.eml", deliveries[READER])
    box = make_maildir(
        maildir, [bounce, returned(app, "postfix_hard.eml", deliveries["gone@example.org"])]
    )

    second = run("bounces", "process", str(maildir))

    assert second.exit_code == 0, second.output
    assert (
        "2 messages: " in second.stdout and "2 more messages left for the next run" in second.output
    )
    assert statuses(app)[READER] == "bounced" and statuses(app)["gone@example.org"] == "bounced"
    assert len(box) == 2  # the two kept ones, read again by the next run


def test_imap_fetches_at_most_its_limit_per_run(app, env, tmp_path):
    with ScriptedImapServer(tmp_path, uids=20_000) as server:
        done, peak = measured_cli(
            env | {"SSL_CERT_FILE": str(server.cafile)},
            tmp_path,
            "bounces", "process", "--imap", server.url(), "--json",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert server.fetches == 1000
    report = json.loads(done.stdout)
    assert (report["messages"], report["left"]) == (1000, 19_000)
    assert "19000 more messages left for the next run" in done.stderr


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ({"literal_size": 200_000_000}, "200000000 bytes where at most 2000000 fit"),
        ({"flood": True}, "reply ran past"),
    ],
    ids=["huge-literal", "endless-reply"],
)
def test_a_hostile_imap_server_cannot_fill_memory(app, deliveries, env, tmp_path, script, says):
    before = statuses(app)
    with ScriptedImapServer(tmp_path, **script) as server:
        done, peak = measured_cli(
            env | {"SSL_CERT_FILE": str(server.cafile)},
            tmp_path,
            "bounces", "process", "--imap", server.url(),
        )  # fmt: skip
    assert done.returncode == 1
    assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert peak < PEAK_LIMIT_KB, f"peak {peak} KB"
    assert statuses(app) == before


@pytest.mark.skipif(not dovecot_available(), reason="needs dovecot-imapd, run as root")
def test_a_huge_message_over_imap_is_fetched_in_part(app, deliveries, env, tmp_path):
    with DovecotServer() as server:
        server.append("Bounces", returned(app, "gmail_hard.eml", deliveries[READER]))
        folder = server.root / "home" / "bounces" / "Maildir" / ".Bounces" / "new"
        huge = folder / "1800000000.huge.mx"
        write_huge_bounce(huge, huge_dsn_head(app, deliveries["gone@example.org"]))
        os.chown(huge, 65534, 65534)
        done, peak = measured_cli(
            env | {"SSL_CERT_FILE": str(server.cafile)},
            tmp_path,
            "bounces", "process", "--imap", server.url("Bounces"), "--json",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert peak < PEAK_LIMIT_KB, f"peak {peak} KB"
    assert json.loads(done.stdout)["suppressed_addresses"] == ["gone@example.org", READER]
