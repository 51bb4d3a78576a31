"""The SMTP transport against a real local SMTP server with scripted faults."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from newsletter.delivery.smtp import dot_stuff, valid_address
from newsletter.delivery.transports import (
    INVALID_ADDRESS,
    Outcome,
    OutgoingMessage,
    SendResult,
    SmtpTransport,
    TransportUnavailable,
    make_transport,
)
from tests.smtp_server import TEST_PASSWORD, TEST_USER, Fault, SmtpTestServer, make_certificate

T = TypeVar("T")
SENDER = "papers@news.example.test"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def message(
    key: int, recipient: str = "", *, body: str = "", sender: str = SENDER
) -> OutgoingMessage:
    recipient = recipient or f"reader{key}@example.test"
    text = body or f"Today's papers, number {key}.\r\n"
    data = f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: Digest {key}\r\n\r\n{text}"
    return OutgoingMessage(key, sender, recipient, data.encode())


def smtp(url: str, **overrides: Any) -> SmtpTransport:
    transport = make_transport(url)
    assert isinstance(transport, SmtpTransport)
    transport.retry_delay = 0.01
    for name, value in overrides.items():
        setattr(transport, name, value)
    return transport


async def send_all(transport: SmtpTransport, messages: list[OutgoingMessage]) -> list[SendResult]:
    """Send one after another on one transport."""
    async with transport:
        return [await transport.send(m) for m in messages]


def send_each(url: str, messages: list[OutgoingMessage], **overrides: Any) -> list[SendResult]:
    return run(send_all(smtp(url, **overrides), messages))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server() -> Any:
    with SmtpTestServer() as srv:
        yield srv


def test_sends_messages_byte_for_byte_over_one_connection(server: SmtpTestServer) -> None:
    messages = [message(k) for k in range(3)]

    results = send_each(server.url, messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert results[0].reply.startswith("250 2.0.0 Ok: queued as")
    assert [r.key for r in results] == [0, 1, 2]
    assert [m.data for m in server.messages] == [m.data for m in messages]
    assert [m.recipients for m in server.messages] == [(m.recipient,) for m in messages]
    assert server.messages[0].sender == SENDER
    assert server.sessions == 1
    assert server.raw_lines[-1] == b"QUIT", "closing the transport says goodbye"


@pytest.mark.parametrize("code", ["421 4.7.0 closing", "451 4.3.0 try later", "452 4.2.2 full"])
def test_temporary_refusal_is_retry_and_the_pool_goes_on(code: str) -> None:
    fault = Fault(reply=code, recipient="busy@example.test")
    with SmtpTestServer(faults=[fault]) as srv:
        results = send_each(srv.url, [message(1, "busy@example.test"), message(2)])

    assert results[0].outcome is Outcome.RETRY
    assert results[0].reply == code
    assert results[1].outcome is Outcome.SENT
    assert srv.recipients() == ["reader2@example.test"]
    # A 421 closes the connection, so the second message needed a new one.
    assert srv.sessions == (2 if code.startswith("421") else 1)


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("stage", "code"),
    [("rcpt", "550 5.1.1 no such user"), ("mail", "552 5.3.4 too big"), ("end", "554 5.7.1 spam")],
)
def test_permanent_refusal_is_failed_with_the_reply(
    stage: str, code: str, pipelining: bool
) -> None:
    fault = Fault(reply=code, stage=stage, recipient=None if stage == "mail" else "gone@x.test")
    if stage == "mail":
        fault.sender = "bounce@news.example.test"
    first = message(1, "gone@x.test", sender=fault.sender or SENDER)
    with SmtpTestServer(faults=[fault], pipelining=pipelining) as srv:
        results = send_each(srv.url, [first, message(2)])

    assert (results[0].outcome, results[0].reply) == (Outcome.FAILED, code)
    assert results[1].outcome is Outcome.SENT
    assert srv.recipients() == ["reader2@example.test"]
    assert srv.sessions == 1, "RSET should keep the connection usable"
    assert b"RSET" in srv.raw_lines


def test_refused_data_command_is_classified() -> None:
    fault = Fault(reply="451 4.3.0 queue full", stage="data", times=1)
    with SmtpTestServer(faults=[fault]) as srv:
        results = send_each(srv.url, [message(1), message(2)])

    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.SENT]
    assert results[0].reply == "451 4.3.0 queue full"


@pytest.mark.parametrize("stage", ["data", "end"])
def test_dropped_connection_mid_data_is_retry_and_the_pool_recovers(stage: str) -> None:
    with SmtpTestServer(faults=[Fault(drop=True, stage=stage, times=1)]) as srv:
        results = send_each(srv.url, [message(1), message(2)])

    assert results[0].outcome is Outcome.RETRY
    assert "before the reply" in results[0].reply
    assert results[1].outcome is Outcome.SENT
    assert srv.recipients() == ["reader2@example.test"]
    assert srv.sessions == 2


def test_slow_reply_beyond_the_timeout_is_retry() -> None:
    with SmtpTestServer(faults=[Fault(delay=3.0, stage="end", times=1)]) as srv:
        results = send_each(srv.url + "?timeout=0.5", [message(1), message(2)])

    assert results[0].outcome is Outcome.RETRY
    assert results[0].reply == "timeout after 0.5s waiting for the reply to end of data"
    assert results[1].outcome is Outcome.SENT


def test_idle_connection_closed_by_the_server_is_replaced_without_losing_the_message() -> None:
    # The server hangs up before answering MAIL: nothing was accepted, so the
    # transport may safely try once more on a fresh connection.
    fault = Fault(drop=True, stage="mail", recipient=None, times=1)
    with SmtpTestServer() as srv:
        transport = smtp(srv.url)

        async def scenario() -> list[SendResult]:
            async with transport:
                first = await transport.send(message(1))
                srv.faults.append(fault)
                return [first, await transport.send(message(2))]

        results = run(scenario())

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert fault.hits == 1
    assert srv.sessions == 2


def test_idle_connection_is_checked_with_noop(server: SmtpTestServer) -> None:
    results = send_each(server.url, [message(1), message(2)], idle_check=0.0)

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert b"NOOP" in server.raw_lines


def test_server_down_raises_transport_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there

    with pytest.raises(TransportUnavailable, match=rf"127.0.0.1:{port}: cannot connect: "):
        send_each(f"smtp://127.0.0.1:{port}", [message(1)])


def test_server_gone_mid_run_raises_transport_unavailable() -> None:
    srv = SmtpTestServer()
    srv.start()
    transport = smtp(srv.url)

    async def scenario() -> SendResult:
        async with transport:
            first = await transport.send(message(1))
            srv.stop()
            with pytest.raises(TransportUnavailable, match="cannot connect"):
                await transport.send(message(2))
            return first

    assert run(scenario()).outcome is Outcome.SENT


@pytest.mark.parametrize(
    "address",
    ["evil@x.test\r\nRCPT TO:<victim@x.test>", "evil@x.test\nDATA", "nul\0@x.test", "a>b@x.test"],
)
@pytest.mark.parametrize("field", ["recipient", "sender"])
def test_unsafe_envelope_address_fails_and_nothing_reaches_the_wire(
    server: SmtpTestServer, field: str, address: str
) -> None:
    bad = message(1, address) if field == "recipient" else message(1, sender=address)

    results = send_each(server.url, [bad, message(2)])

    assert (results[0].outcome, results[0].reply) == (Outcome.FAILED, INVALID_ADDRESS)
    assert results[1].outcome is Outcome.SENT
    wire = b"\n".join(server.raw_lines)
    assert b"RCPT TO:<reader2@example.test>" in wire
    assert b"victim" not in wire and b"evil" not in wire and b"nul" not in wire
    assert b"a>b" not in wire


def test_dot_stuffing_round_trip(server: SmtpTestServer) -> None:
    body = ".first line starts with a dot\r\n.\r\n..two dots\r\nmiddle.\r\n.\r\nlast"
    sent = message(1, body=body)

    results = send_each(server.url, [sent])

    assert results[0].outcome is Outcome.SENT
    # The server undoes the stuffing; the missing final CRLF is added.
    assert server.messages[0].data == sent.data + b"\r\n"
    assert b"..first line starts with a dot" in server.raw_lines
    assert b"...two dots" in server.raw_lines


def test_bare_newlines_cannot_end_the_data_early(server: SmtpTestServer) -> None:
    sent = OutgoingMessage(1, SENDER, "r@example.test", b"Subject: x\n\nline\n.\nMAIL FROM:<e@x>\n")

    results = send_each(server.url, [sent])

    assert results[0].outcome is Outcome.SENT
    assert server.messages[0].data == b"Subject: x\r\n\r\nline\r\n.\r\nMAIL FROM:<e@x>\r\n"
    assert b".." in server.raw_lines, "the lone dot went out stuffed"
    assert len(server.messages) == 1


async def _send_held(
    server: SmtpTestServer, outcome: BaseException | None
) -> tuple[SendResult | BaseException, int, SendResult]:
    """Send a message whose end waits for a future; return what sending it gave, how many
    messages the server had while it waited, and the result of one more message after it."""
    transport = smtp(server.url)
    async with transport:
        held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sending = asyncio.create_task(transport.send(message(1), after=held))
        deadline = time.monotonic() + 10
        while b"Subject: Digest 1" not in server.raw_lines and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the body is on the wire
        await asyncio.sleep(0.2)
        waiting = len(server.messages)
        if outcome is None:
            held.set_result(None)
        else:
            held.set_exception(outcome)
        try:
            first: SendResult | BaseException = await sending
        except BaseException as exc:
            first = exc
        return first, waiting, await transport.send(message(2))


def test_the_end_of_the_data_waits_for_what_the_sender_says(server: SmtpTestServer) -> None:
    first, waiting, after = run(_send_held(server, None))

    assert b"Subject: Digest 1" in server.raw_lines
    assert waiting == 0, "the relay took the message before its end was allowed"
    assert isinstance(first, SendResult) and first.outcome is Outcome.SENT
    assert after.outcome is Outcome.SENT
    assert [m.data for m in server.messages] == [message(1).data, message(2).data]


def test_a_message_whose_wait_fails_is_never_delivered(server: SmtpTestServer) -> None:
    failure = RuntimeError("the last reply could not be recorded")

    first, waiting, after = run(_send_held(server, failure))

    assert first is failure
    assert waiting == 0
    assert after.outcome is Outcome.SENT, "the pool goes on with a fresh connection"
    assert [m.data for m in server.messages] == [message(2).data]


def test_without_pipelining_or_esmtp_it_still_sends() -> None:
    with SmtpTestServer(pipelining=False, esmtp=False) as srv:
        results = send_each(srv.url, [message(1), message(2)])

    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert any(line.startswith(b"HELO ") for line in srv.raw_lines)
    assert len(srv.messages) == 2


def test_concurrent_sends_use_at_most_the_pool_size() -> None:
    # A short delay before each final reply keeps several sends in flight at once.
    with SmtpTestServer(delay=0.05) as srv:
        transport = smtp(srv.url + "?connections=3")

        async def scenario() -> list[SendResult]:
            async with transport:
                return await asyncio.gather(*(transport.send(message(k)) for k in range(12)))

        results = run(scenario())

    assert [r.outcome for r in results] == [Outcome.SENT] * 12
    assert len(srv.messages) == 12
    assert srv.sessions <= 3
    assert srv.max_concurrent >= 2


def test_rate_limit_spaces_messages_out(server: SmtpTestServer) -> None:
    transport = smtp(server.url + "?connections=2&rate=20")

    async def scenario() -> float:
        async with transport:
            start = time.monotonic()
            await asyncio.gather(*(transport.send(message(k)) for k in range(6)))
            return time.monotonic() - start

    # Six messages at 20/s need at least five intervals of 50 ms (a lower bound only).
    assert run(scenario()) >= 0.24
    assert len(server.messages) == 6


def test_starttls_with_auth_delivers(certificate: tuple[Path, Path]) -> None:
    cert = certificate[0]
    url_tail = f"?tls=starttls&cafile={cert}"
    with SmtpTestServer(
        tls="starttls", certificate=certificate, auth=(TEST_USER, TEST_PASSWORD)
    ) as srv:
        url = f"smtp://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{srv.port}{url_tail}"
        results = send_each(url, [message(1)])

    assert results[0].outcome is Outcome.SENT
    assert srv.raw_lines[1] == b"STARTTLS"
    assert any(line.startswith(b"AUTH PLAIN ") for line in srv.raw_lines)
    assert len(srv.messages) == 1


def test_implicit_tls_with_auth_delivers(certificate: tuple[Path, Path]) -> None:
    with SmtpTestServer(tls="ssl", certificate=certificate, auth=(TEST_USER, TEST_PASSWORD)) as srv:
        url = f"smtps://{TEST_USER}:{TEST_PASSWORD}@localhost:{srv.port}?cafile={certificate[0]}"
        results = send_each(url, [message(1)])

    assert results[0].outcome is Outcome.SENT
    assert srv.raw_lines[0].startswith(b"EHLO ")
    assert any(line.startswith(b"AUTH PLAIN ") for line in srv.raw_lines)
    assert len(srv.messages) == 1


def test_wrong_password_is_transport_unavailable_without_the_password(
    certificate: tuple[Path, Path],
) -> None:
    with SmtpTestServer(
        tls="starttls", certificate=certificate, auth=(TEST_USER, TEST_PASSWORD)
    ) as srv:
        url = f"smtp://{TEST_USER}:wrong-pass@127.0.0.1:{srv.port}?tls=starttls&cafile={certificate[0]}"
        with pytest.raises(TransportUnavailable) as caught:
            send_each(url, [message(1)])

    assert "authentication failed: 535" in str(caught.value)
    assert "wrong-pass" not in str(caught.value)
    assert srv.messages == []


def test_untrusted_certificate_is_transport_unavailable(certificate: tuple[Path, Path]) -> None:
    with SmtpTestServer(tls="starttls", certificate=certificate) as srv:
        with pytest.raises(TransportUnavailable, match="TLS certificate not trusted"):
            send_each(f"smtp://127.0.0.1:{srv.port}?tls=starttls", [message(1)])


def test_starttls_required_but_not_offered(server: SmtpTestServer) -> None:
    with pytest.raises(TransportUnavailable, match="does not offer STARTTLS"):
        send_each(server.url + "?tls=starttls", [message(1)])


def test_login_mechanism_when_plain_is_not_offered() -> None:
    with SmtpTestServer(auth=(TEST_USER, TEST_PASSWORD), auth_mechanisms=["LOGIN"]) as srv:
        url = f"smtp://{TEST_USER}:{TEST_PASSWORD}@127.0.0.1:{srv.port}"
        results = send_each(url, [message(1)])

    assert results[0].outcome is Outcome.SENT
    assert b"AUTH LOGIN" in srv.raw_lines


def test_dot_stuff_normalises_and_terminates() -> None:
    assert dot_stuff(b"a\r\n.b\r\n") == b"a\r\n..b\r\n.\r\n"
    assert dot_stuff(b".x") == b"..x\r\n.\r\n"
    assert dot_stuff(b"a\rb\n.c") == b"a\r\nb\r\n..c\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("reader@example.test", True),
        ("first.last+tag@sub.example.test", True),
        ("", True),  # the null sender of bounces
        ("jörg@example.test", True),
        ("a b@example.test", False),
        ("a\r@x", False),
        ("a\x7f@x", False),
        ("a\u2028@x", False),
        ("<a@x>", False),
    ],
)
def test_valid_address(address: str, ok: bool) -> None:
    assert valid_address(address) is ok
