"""DKIM of sent digests: headers added on the way break the signature; keys open to all warn."""

from __future__ import annotations

import base64
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories as f
from tests.conftest import Cli

dkim = pytest.importorskip("dkim")
SELECTOR, DOMAIN = "mail", "news.example.test"


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """An RSA key made with openssl, and the DNS record of its public half."""
    key = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    key.chmod(0o600)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _signing_config(folder: Path, key: Path) -> None:
    (folder / "newsletter.toml").write_text(
        f'dkim_selector = "{SELECTOR}"\ndkim_domain = "{DOMAIN}"\n'
        f'dkim_private_key_file = "{key}"\n',
        encoding="utf-8",
    )


def _one_reader(app) -> None:
    with app.transaction() as s:
        llm = f.topic(s, "llm")
        f.paper(s, "Scaling laws for tiny models", topics={llm: 2.0}, upvotes=40)
        f.subscriber(s, "ada@example.org", [llm])


def _sent_digest(app, run: Cli, settings, tmp_path: Path, key: Path) -> bytes:
    """Send today's edition with DKIM on and return the one digest as it went out (CRLF)."""
    _one_reader(app)
    _signing_config(tmp_path, key)
    result = run("send", "--date", f.DAY.isoformat())
    assert result.exit_code == 0, result.output
    [stored] = [bytes(m) for m in mailbox.Maildir(settings.transport.removeprefix("maildir:"))]
    # The Maildir adds the envelope (Return-Path, Delivered-To) and stores LF line ends.
    data = stored.split(b"\n", 2)[2]
    return data.replace(b"\n", b"\r\n")


def _verifies(message: bytes, record: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    return bool(dkim.verify(message, dnsfunc=dns))


@pytest.mark.parametrize(
    "added",
    [
        b"Subject: URGENT: confirm your password at https://evil.example\r\n",
        b"Reply-To: attacker@evil.example\r\n",
        b"Sender: attacker@evil.example\r\n",
        b"Cc: victim@example.org\r\n",
        b"In-Reply-To: <forged@evil.example>\r\n",
        b"References: <forged@evil.example>\r\n",
        b"To: victim@example.org\r\n",
        b"From: Boss <boss@news.example.test>\r\n",
    ],
)
def test_a_header_added_to_a_sent_digest_breaks_its_signature(
    app, run, settings, tmp_path, rsa_key, added
):
    key, record = rsa_key
    digest = _sent_digest(app, run, settings, tmp_path, key)
    assert digest.startswith(b"DKIM-Signature: ")
    assert _verifies(digest, record), "the digest as sent verifies"

    signature, _, rest = digest.partition(b"\r\n")
    while rest[:1] in (b" ", b"\t"):  # the signature's folded lines
        line, _, rest = rest.partition(b"\r\n")
        signature += b"\r\n" + line
    # Where a forwarder would add it: on top, or right after the signature.
    assert not _verifies(added + digest, record)
    assert not _verifies(signature + b"\r\n" + added + rest, record)


def _config_stderr(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "config"],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_every_user_can_read_are_named_at_start(env, settings, tmp_path, rsa_key):
    key, _ = rsa_key
    shared = tmp_path / "shared-dkim.pem"
    shared.write_bytes(key.read_bytes())
    shared.chmod(0o644)
    _signing_config(tmp_path, shared)
    secret = Path(settings.var_dir) / "secret_key"
    secret.write_text("k" * 48 + "\n", encoding="utf-8")
    secret.chmod(0o644)
    without_key = {k: v for k, v in env.items() if k != "NEWSLETTER_SECRET_KEY"}

    warned = _config_stderr(without_key, tmp_path)

    assert warned.returncode == 0, warned.stderr
    assert f"{secret} is readable or writable by every user (mode 0644)" in warned.stderr
    assert f"chmod 600 {secret}" in warned.stderr
    # The config command builds no signer; the DKIM key is named when sending starts.
    shared.chmod(0o600)
    secret.chmod(0o600)
    quiet = _config_stderr(without_key, tmp_path)
    assert quiet.returncode == 0 and "every user" not in quiet.stderr


def test_a_dkim_key_every_user_can_read_is_named_when_sending_starts(
    env, app, settings, tmp_path, rsa_key
):
    key, _ = rsa_key
    shared = tmp_path / "shared-dkim.pem"
    shared.write_bytes(key.read_bytes())
    shared.chmod(0o604)
    _signing_config(tmp_path, shared)
    _one_reader(app)
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "send", "--date", f.DAY.isoformat()],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{shared} is readable or writable by every user (mode 0604)" in result.stderr
