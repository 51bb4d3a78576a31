"""Passwords in URLs never reach the output, however they are written; IMAP's comes apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.imap_server import PASSWORD as IMAP_PASSWORD
from tests.imap_server import USER, DovecotServer
from tests.imap_server import available as dovecot_available

# An unencoded "/", "#" and "?" work for SQLAlchemy, which reads up to the last "@".
PASSWORD = "p/ss#w?rd"
PIECES = ("p/ss", "ss#w", "w?rd", "#w?")


def _leaks(text: str) -> list[str]:
    return [piece for piece in PIECES if piece in text]


@pytest.mark.parametrize("as_json", [False, True])
def test_config_never_prints_a_password_with_url_delimiters(run, as_json):
    run.env = {
        **run.env,
        "NEWSLETTER_DATABASE_URL": f"postgresql+psycopg://nl:{PASSWORD}@db.example/news",
        "NEWSLETTER_TRANSPORT": f"smtp://mailer:{PASSWORD}@mail.example:587?tls=starttls",
        "NEWSLETTER_BASE_URL": f"https://web:{PASSWORD}@news.example",
    }
    result = run("config", *(["--json"] if as_json else []))

    assert result.exit_code == 0, result.output
    assert _leaks(result.output) == []
    if as_json:
        values = {k: v["value"] for k, v in json.loads(result.output)["settings"].items()}
        # The database URL parses (as SQLAlchemy reads it): its host and user stay visible.
        assert values["database_url"] == "postgresql+psycopg://nl:***@db.example/news"
        # The transport does not parse: all but the scheme is hidden.
        assert values["transport"] == "smtp://****"
        assert values["base_url"] == "https://****"


def test_a_well_formed_url_keeps_all_but_its_password():
    from newsletter.core.urls import mask_database_url, mask_imap_url, mask_transport_url

    assert mask_transport_url("smtp://u:p%2Fw@h.example:587?tls=starttls") == (
        "smtp://u:****@h.example:587?tls=starttls"
    )
    assert mask_imap_url("imaps://b%40x.org:pw@imap.example/Bounces") == (
        "imaps://b%40x.org:****@imap.example/Bounces"
    )
    assert mask_database_url("sqlite:///var/a@b/newsletter.db") == "sqlite:///var/a@b/newsletter.db"
    assert mask_database_url("postgresql://u:p@ss@h/db") == "postgresql://****"


@pytest.mark.parametrize(
    "url",
    [
        f"imaps://bounces:{PASSWORD}@127.0.0.1:1/INBOX",
        "imaps://bounces:pass/word@127.0.0.1:1/INBOX",
        "imaps://bounces:12/34@127.0.0.1:1/INBOX",
    ],
)
def test_the_imap_error_never_prints_the_password(run, url):
    result = run("bounces", "process", "--imap", url)

    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: imaps://****: ")
    assert "%2F" in line, "says how to write the password"
    assert all(piece not in line for piece in (*PIECES, "pass/word", "12/34"))


def test_the_imap_help_points_to_the_environment_not_the_url(run):
    result = run("bounces", "process", "--help")

    assert "NEWSLETTER_IMAP_PASSWORD" in result.output
    assert "password in the URL" not in " ".join(result.output.split())


@pytest.mark.skipif(not dovecot_available(), reason="needs dovecot-imapd, run as root")
def test_the_imap_password_is_read_from_the_environment(env, tmp_path):
    with DovecotServer() as server:
        url = f"imaps://{USER.replace('@', '%40')}@localhost:{server.port}/INBOX"
        base = {**os.environ, **env, "SSL_CERT_FILE": str(server.cafile)}

        def process(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "newsletter", "bounces", "process", "--imap", url],
                env={**base, **extra},
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )

        read = process({"NEWSLETTER_IMAP_PASSWORD": IMAP_PASSWORD})
        refused = process({"NEWSLETTER_IMAP_PASSWORD": "wrong-" + IMAP_PASSWORD})

    assert read.returncode == 0, read.stderr
    assert "0 messages" in read.stdout
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert IMAP_PASSWORD not in line and url in line
