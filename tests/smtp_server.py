"""A real SMTP server for tests (aiosmtpd), with scripted faults and a record of the wire.

In-process:

    with SmtpTestServer(faults=[Fault(reply="451 4.3.0 try later", times=1)]) as srv:
        send to 127.0.0.1:srv.port ...
        srv.messages[0].data, srv.raw_lines, srv.sessions

As a process (for kill -9 tests), appending one line per accepted message to a file:

    python tests/smtp_server.py --port 0 --count-file var/accepted.txt
    (prints "listening 127.0.0.1 PORT" once ready; stops on SIGTERM or SIGINT)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
HOSTNAME = "smtp.test"
TEST_USER = "tester"
TEST_PASSWORD = "s3cret-pass"
Stage = Literal["mail", "rcpt", "data", "end"]
# Returned by a hook instead of a reply: close the connection without answering.
_DROP = "__drop__"


@dataclass
class Fault:
    """A scripted misbehaviour at one stage of the transaction.

    stage: "mail" (reply to MAIL FROM), "rcpt" (to RCPT TO), "data" (to DATA, before the
    body; with drop=True the server says 354 and hangs up mid-DATA) or "end" (the final
    reply after the body). A reply starting with 421 also closes the connection.
    """

    reply: str | None = None
    stage: Stage = "rcpt"
    drop: bool = False
    delay: float = 0.0
    recipient: str | None = None
    sender: str | None = None
    times: int | None = None
    hits: int = field(default=0, init=False)

    def matches(self, stage: str, sender: str | None, recipients: list[str]) -> bool:
        if stage != self.stage:
            return False
        if self.sender is not None and sender != self.sender:
            return False
        if self.recipient is not None and self.recipient not in recipients:
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


@dataclass(frozen=True)
class Received:
    """One accepted message as the server saw it (dot-stuffing undone)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for localhost and 127.0.0.1; return (cert, key)."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key)]
        + ["-out", str(cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Handler:
    """aiosmtpd hooks: apply faults, record accepted messages."""

    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if not self.server.esmtp:
            return ["502 5.5.2 EHLO not supported here"]
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self.server.fault("mail", address, [])
        if fault:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = await self.server.fault("rcpt", envelope.mail_from, [address])
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        fault = await self.server.fault("end", envelope.mail_from, envelope.rcpt_tos)
        if fault:
            return fault
        return self.server.accept(envelope)


class _FaultySMTP(SMTP):
    """aiosmtpd's SMTP that records raw input, can hang up, and closes after a 421."""

    def __init__(self, server: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(_Handler(server), **kwargs)
        self._server = server
        self._chunks = bytearray()
        self._greeted = False

    def data_received(self, data: bytes) -> None:
        if self._server.record_raw:
            with self._server.lock:
                if not self._greeted:
                    self._server.raw.append(self._chunks)
                    self._greeted = True
                self._chunks += data
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        self._server.session_ended(self)
        super().connection_lost(error)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._server.session_started(self)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname: str) -> None:
        self._server.session_started(self)
        await super().smtp_HELO(hostname)

    async def smtp_DATA(self, arg: str) -> None:
        assert self.envelope is not None
        if self.envelope.rcpt_tos and not arg:
            fault = await self._server.fault(
                "data", self.envelope.mail_from, self.envelope.rcpt_tos
            )
            if fault == _DROP:
                await super().push("354 End data with <CR><LF>.<CR><LF>")
                self._hang_up()
                return
            if fault:
                await self.push(fault)
                return
        await super().smtp_DATA(arg)

    async def push(self, status: str | bytes) -> None:
        if status == _DROP:
            self._hang_up()
            return
        await super().push(status)
        if isinstance(status, str) and status.startswith("421"):
            self._hang_up()

    def _hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Controller(Controller):
    def __init__(self, server: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(None, hostname=server.host, port=server.requested_port, **kwargs)
        self._server = server

    def factory(self) -> SMTP:
        return _FaultySMTP(self._server, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Port 0 asks the system for a free port; learn it before aiosmtpd connects to it.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpTestServer:
    """An SMTP server on 127.0.0.1 in a thread; use it as a context manager."""

    def __init__(
        self,
        *,
        faults: list[Fault] | None = None,
        port: int = 0,
        host: str = HOST,
        tls: Literal["starttls", "ssl"] | None = None,
        certificate: tuple[Path, Path] | None = None,
        auth: tuple[str, str] | None = None,
        auth_mechanisms: list[str] | None = None,
        pipelining: bool = True,
        esmtp: bool = True,
        keep_messages: bool = True,
        record_raw: bool = True,
        count_file: Path | None = None,
        delay: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        self.faults = list(faults or [])
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.certificate = certificate
        self.auth = auth
        self.auth_mechanisms = auth_mechanisms or ["PLAIN", "LOGIN"]
        self.pipelining = pipelining
        self.esmtp = esmtp
        self.keep_messages = keep_messages
        self.record_raw = record_raw
        self.count_file = count_file
        self.delay = delay
        self.timeout = timeout  # seconds a silent client is waited for (aiosmtpd: 300)
        self.messages: list[Received] = []
        self.raw: list[bytearray] = []
        self.sessions = 0
        self.max_concurrent = 0
        self.lock = threading.Lock()
        self._active: set[int] = set()
        self._accepted = 0
        self._controller: _Controller | None = None

    @property
    def port(self) -> int:
        assert self._controller is not None, "the server is not running"
        return self._controller.port

    @property
    def url(self) -> str:
        """An smtp:// transport spec for this server (without credentials)."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def raw_lines(self) -> list[bytes]:
        """Every line clients sent, connection after connection, without line endings."""
        with self.lock:
            chunks = [bytes(chunk) for chunk in self.raw]
        return [line for chunk in chunks for line in chunk.split(b"\r\n") if line]

    def __enter__(self) -> SmtpTestServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._controller = _Controller(self, **self._smtp_kwargs())
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def _smtp_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"server_hostname": HOSTNAME, "ready_timeout": 10.0}
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.tls:
            assert self.certificate, "TLS needs certificate=make_certificate(tmp_path)"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
            kwargs["ssl_context" if self.tls == "ssl" else "tls_context"] = context
        if self.auth:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_exclude_mechanism"] = {"PLAIN", "LOGIN"} - set(self.auth_mechanisms)
            # aiosmtpd only counts STARTTLS as TLS, and warns about required AUTH
            # without TLS: require AUTH (after TLS) only in the STARTTLS case.
            kwargs["auth_require_tls"] = kwargs["auth_required"] = self.tls == "starttls"
        return kwargs

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.auth == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False)

    async def fault(self, stage: str, sender: str | None, recipients: list[str]) -> str | None:
        """Return the scripted reply (or the hang-up marker) for this point, if any."""
        with self.lock:
            fault = next((f for f in self.faults if f.matches(stage, sender, recipients)), None)
        if stage == "end" and self.delay:
            await asyncio.sleep(self.delay)
        if fault is None:
            return None
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            return _DROP
        return fault.reply

    def accept(self, envelope: Envelope) -> str:
        """Record an accepted message and return the final reply."""
        data = envelope.original_content or b""
        message = Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), data)
        with self.lock:
            self._accepted += 1
            number = self._accepted
            if self.keep_messages:
                self.messages.append(message)
        if self.count_file is not None:
            # Written before the 250 goes out: every acknowledged message is counted.
            with open(self.count_file, "a", encoding="utf-8") as out:
                out.write(" ".join(message.recipients) + "\n")
        return f"250 2.0.0 Ok: queued as T{number}"

    def session_started(self, smtp: SMTP) -> None:
        with self.lock:
            if id(smtp) not in self._active:
                self._active.add(id(smtp))
                self.sessions += 1
                self.max_concurrent = max(self.max_concurrent, len(self._active))

    def session_ended(self, smtp: SMTP) -> None:
        with self.lock:
            self._active.discard(id(smtp))

    def recipients(self) -> list[str]:
        """Every recipient of every accepted message, in order."""
        with self.lock:
            return [rcpt for message in self.messages for rcpt in message.recipients]


def main(argv: list[str] | None = None) -> None:
    """Run the server until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count-file", type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each 250")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = SmtpTestServer(
        host=args.host,
        port=args.port,
        count_file=args.count_file,
        delay=args.delay,
        keep_messages=False,
        record_raw=False,
    )
    with server:
        print(f"listening {server.host} {server.port}", flush=True)
        stop.wait()


if __name__ == "__main__":
    sys.exit(main())
