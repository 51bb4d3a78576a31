"""Transport specs, the Maildir transport and the test SMTP server as a process."""

from __future__ import annotations

import asyncio
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.core.errors import ConfigError
from newsletter.delivery.transports import (
    INVALID_ADDRESS,
    MaildirTransport,
    Outcome,
    OutgoingMessage,
    RateLimiter,
    SendResult,
    SmtpTransport,
    TransportUnavailable,
    describe_transport,
    make_transport,
    send_one,
)
from tests.smtp_server import Fault, SmtpTestServer

REPO = Path(__file__).resolve().parent.parent
SENDER = "papers@news.example.test"


def message(
    key: int, recipient: str = "reader@example.test", sender: str = SENDER
) -> OutgoingMessage:
    data = f"From: {sender}\r\nTo: {recipient}\r\nSubject: Digest {key}\r\n\r\nHello {key}.\r\n"
    return OutgoingMessage(key, sender, recipient, data.encode())


async def send_all(
    transport: MaildirTransport, messages: list[OutgoingMessage]
) -> list[SendResult]:
    async with transport:
        return [await transport.send(m) for m in messages]


def smtp(spec: str) -> SmtpTransport:
    transport = make_transport(spec, local_hostname="news.example.test")
    assert isinstance(transport, SmtpTransport)
    return transport


# Maildir


def test_maildir_writes_one_readable_file_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "var" / "outbox"
    transport = make_transport(f"maildir:{outbox}")

    results = asyncio.run(send_all(transport, [message(1), message(2, "other@example.test")]))

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    box = mailbox.Maildir(outbox, create=False)
    stored = sorted(box, key=lambda m: m["Subject"])
    assert [m["Subject"] for m in stored] == ["Digest 1", "Digest 2"]
    assert [m["Delivered-To"] for m in stored] == ["reader@example.test", "other@example.test"]
    assert stored[0]["Return-Path"] == f"<{SENDER}>"
    assert stored[0].get_payload() == "Hello 1.\n"
    assert os.listdir(outbox / "tmp") == []
    name = results[0].reply.removeprefix("maildir: ")
    assert (outbox / name).read_bytes().endswith(b"Hello 1.\n")


def test_maildir_names_are_unique(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")

    results = asyncio.run(send_all(transport, [message(k) for k in range(50)]))

    assert len({r.reply for r in results}) == 50
    assert len(os.listdir(tmp_path / "box" / "new")) == 50


def test_maildir_relative_path_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    asyncio.run(send_all(make_transport("maildir:var/outbox"), [message(1)]))

    assert len(os.listdir(tmp_path / "var" / "outbox" / "new")) == 1


def test_maildir_refuses_unsafe_envelope(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")

    results = asyncio.run(send_all(transport, [message(1, "x@y.test\nBcc: victim@z.test")]))

    assert (results[0].outcome, results[0].reply) == (Outcome.FAILED, INVALID_ADDRESS)
    assert os.listdir(tmp_path / "box" / "new") == []


def test_maildir_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    transport = MaildirTransport(tmp_path / "file" / "box")

    with pytest.raises(TransportUnavailable, match="maildir .*file/box: Not a directory"):
        asyncio.run(send_all(transport, [message(1)]))


def test_send_one_opens_a_connection_for_one_message_and_quits() -> None:
    refused = Fault(reply="550 5.1.1 no such mailbox", recipient="gone@example.test")
    with SmtpTestServer(faults=[refused]) as server:
        sent = send_one(server.url, message(1))
        failed = send_one(server.url, message(2, "gone@example.test"))
        assert server.recipients() == ["reader@example.test"]
        assert server.sessions == 2
        assert [line for line in server.raw_lines if line.startswith(b"QUIT")] == [b"QUIT"] * 2
    assert (sent.key, sent.outcome) == (1, Outcome.SENT)
    assert (failed.outcome, failed.reply) == (Outcome.FAILED, "550 5.1.1 no such mailbox")


# Specs


def test_smtp_url_with_every_option() -> None:
    transport = smtp(
        "smtp://mailer%40example.org:p%3Ass%2Fw%40rd@mail.example.org:587"
        "?tls=starttls&connections=8&rate=12.5&timeout=10&helo=sender.example.org"
    )

    o = transport.options
    assert (o.host, o.port, o.tls) == ("mail.example.org", 587, "starttls")
    assert (o.username, o.password) == ("mailer@example.org", "p:ss/w@rd")
    assert (o.timeout, o.helo) == (10.0, "sender.example.org")
    assert (transport.connections, transport.rate) == (8, 12.5)
    assert o.ssl_context is not None
    assert "p:ss/w@rd" not in repr(o)


def test_smtp_url_defaults() -> None:
    transport = smtp("smtp://127.0.0.1")

    o = transport.options
    assert (o.port, o.tls, o.username, o.timeout) == (25, "none", "", 30.0)
    assert o.helo == "news.example.test"
    assert (transport.connections, transport.rate) == (4, 0.0)
    assert o.ssl_context is None


def test_smtps_url_uses_implicit_tls_on_465() -> None:
    o = smtp("smtps://u:pw@mail.example.org").options

    assert (o.port, o.tls) == (465, "ssl")


@pytest.mark.parametrize(
    "spec", ["smtp://u:pw@localhost:2525", "smtp://u:pw@127.0.0.1", "smtp://u:pw@[::1]:25"]
)
def test_clear_text_password_is_allowed_on_loopback(spec: str) -> None:
    assert smtp(spec).options.password == "pw"


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("smtp://u:hunter2@mail.example.org", "refusing to send the password in clear text"),
        ("smtp://u:hunter2@mail.example.org?tls=none", "clear text"),
        ("smtp://u:hunter2@mail.example.org:99999", "port must be a number"),
        ("smtp://u:hunter2@mail.example.org:port", "port must be a number"),
        ("smtp://u:hunter2@:25", "needs a host"),
        ("smtp://u:hunter2@mail.example.org/path?tls=ssl", "unexpected path"),
        ("smtp://u:hunter2@mail.example.org?tls=maybe", "tls must be starttls, ssl or none"),
        ("smtps://u:hunter2@mail.example.org?tls=starttls", "smtps:// always uses tls=ssl"),
        ("smtp://u:hunter2@h.example?tls=ssl&connections=0", "connections must be"),
        ("smtp://u:hunter2@h.example?tls=ssl&connections=2.5", "whole number"),
        ("smtp://u:hunter2@h.example?tls=ssl&rate=-1", "rate must be a number"),
        ("smtp://u:hunter2@h.example?tls=ssl&timeout=0", "timeout must be a number"),
        ("smtp://u:hunter2@h.example?tls=ssl&timeout=soon", "timeout must be a number"),
        ("smtp://u:hunter2@h.example?tls=ssl&helo=bad%20name", "helo must be a host name"),
        ("smtp://u:hunter2@h.example?tls=ssl&pool=3", "unknown option 'pool'"),
        ("smtp://u:hunter2@h.example?tls=ssl&tls=ssl", "given twice"),
        ("smtp://u:hunter2@h.example?tls=ssl&cafile=/nonexistent.pem", "cannot read cafile"),
        ("smtp://:hunter2@h.example?tls=ssl", "give both user and password"),
        ("smtp+tls://u:hunter2@h.example", "expected maildir:PATH, smtp://"),
        ("maildir:", "needs a folder"),
        ("", "expected maildir:PATH"),
    ],
)
def test_invalid_spec_is_one_clear_line_without_the_password(spec: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_transport(spec)

    text = str(caught.value)
    assert error in text
    assert "hunter2" not in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("smtp://u:hunter2@h.example:587?tls=starttls", "smtp://u:****@h.example:587?tls=starttls"),
        ("smtps://me%40x.org:hun%40ter2@h.example", "smtps://me%40x.org:****@h.example"),
        ("smtp://u:hun/ter?2@h.example?helo=a", "smtp://****"),
        ("smtp://h.example:25", "smtp://h.example:25"),
        ("smtp://user@h.example", "smtp://user@h.example"),
        ("maildir:var/outbox", "maildir:var/outbox"),
    ],
)
def test_describe_transport_masks_the_password(spec: str, shown: str) -> None:
    assert describe_transport(spec) == shown


def test_rate_limiter_spaces_callers_out() -> None:
    async def waits() -> list[float]:
        limiter = RateLimiter(50)
        loop = asyncio.get_running_loop()
        start = loop.time()
        stamps = []
        for _ in range(4):
            await limiter.wait()
            stamps.append(loop.time() - start)
        return stamps

    stamps = asyncio.run(waits())

    # The k-th caller goes no earlier than k intervals of 20 ms after the first (lower bounds
    # only: a busy machine may add delay, never remove it).
    assert all(stamp >= k * 0.02 - 0.001 for k, stamp in enumerate(stamps))


def test_test_server_runs_as_a_process_and_counts_messages(tmp_path: Path) -> None:
    count_file = tmp_path / "accepted.txt"
    command = [sys.executable, str(REPO / "tests" / "smtp_server.py"), "--port", "0"]
    with subprocess.Popen(
        [*command, "--count-file", str(count_file)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            _, host, port = proc.stdout.readline().split()
            transport = smtp(f"smtp://{host}:{port}")

            async def scenario() -> list[SendResult]:
                async with transport:
                    return [await transport.send(message(k, f"r{k}@x.test")) for k in range(3)]

            results = asyncio.run(scenario())
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert count_file.read_text().splitlines() == ["r0@x.test", "r1@x.test", "r2@x.test"]
    assert proc.returncode == 0
