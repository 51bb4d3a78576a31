"""A small, fast asyncio SMTP client: one connection, pipelined transactions (RFC 5321, 2920)."""

from __future__ import annotations

import asyncio
import base64
import collections
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Literal, cast

CRLF = b"\r\n"
END_OF_DATA = b".\r\n"  # after the last CRLF of a payload: what makes the relay take it
TlsMode = Literal["none", "starttls", "ssl"]
# Printable ASCII without space, "<" and ">": what may go between the angle brackets.
_ASCII_ADDRESS = re.compile(r"[!-;=?-~]*")
_FORBIDDEN_IN_ADDRESS = re.compile(r"[\s<>]")
_NEWLINES = re.compile(rb"\r\n|\r|\n")
# What reading a reply raises when the connection is gone or the server speaks nonsense.
_BROKEN = (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError)
# A reply longer than this is not SMTP (RFC 5321 allows 512 octets a line; the longest EHLO
# answers have a few dozen lines): a hostile server must not fill memory with one reply.
MAX_REPLY_BYTES = 65536
MAX_REPLY_LINES = 100
# Pipelining waits for three replies at most: a server that sends many unasked is hostile.
MAX_PENDING_REPLIES = 100
# Waiting for QUIT's reply and the TLS close on shutdown must not hold up the caller for long.
CLOSE_TIMEOUT = 2.0


class SmtpError(Exception):
    """Base of the client's failures; the message never contains credentials."""


class ConnectionBroken(SmtpError):
    """The connection dropped, timed out or spoke nonsense; it cannot be used again."""

    def __init__(self, reason: str, *, before_reply: bool = False) -> None:
        super().__init__(reason)
        # True when it broke before the server answered anything in this transaction,
        # so the message was certainly not accepted.
        self.before_reply = before_reply


class SetupError(SmtpError):
    """A session could not be opened: connect, greeting, TLS or authentication failed."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        # Permanent failures (bad password, bad certificate) do not improve with retries.
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and its text lines."""

    code: int
    lines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()


@dataclass(frozen=True)
class SmtpOptions:
    """Where and how to open SMTP sessions."""

    host: str
    port: int
    tls: TlsMode = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    helo: str = "localhost"
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


def valid_address(address: str) -> bool:
    """Tell whether an envelope address is safe to put between angle brackets."""
    if _ASCII_ADDRESS.fullmatch(address):
        return True
    return (
        not address.isascii()
        and address.isprintable()
        and _FORBIDDEN_IN_ADDRESS.search(address) is None
    )


def dot_stuff(data: bytes, *, crlf_only: bool = False, dot_free: bool = False) -> bytes:
    """Return the DATA payload: CRLF line endings, leading dots doubled, ending CRLF.CRLF.

    crlf_only says the caller built data with CRLF line ends only, so the three scans that
    check it (a third of the cost for a 40 KB message) can be skipped. dot_free says no line
    starts with a dot (build_message_data tells), so the scan for them can be skipped too.
    """
    # A bare CR or LF could let a message smuggle its own end-of-data: normalise them.
    if not crlf_only:
        crlf = data.count(CRLF)
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = _NEWLINES.sub(CRLF, data)
    if not dot_free:
        data = data.replace(b"\r\n.", b"\r\n..")
        if data[:1] == b".":
            data = b"." + data
    if data and not data.endswith(CRLF):
        return data + b"\r\n.\r\n"
    return data + b".\r\n"


class _ReplyReader(asyncio.Protocol):
    """Collect the server's replies as they arrive and wake whoever waits for them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: collections.deque[Reply] = collections.deque()
        self.lost: BaseException | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0
        self._tail = b""
        self._continued: list[str] = []
        self._reply_bytes = 0  # bytes of the lines of the reply being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio passes a stream protocol a Transport; typeshed types it as the base class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)
            if self.lost is not None:
                return
        if self._reply_bytes + len(self._tail) > MAX_REPLY_BYTES:
            self._fail(ValueError(f"reply longer than {MAX_REPLY_BYTES} bytes"))
            return
        if self._waiter is not None and len(self.replies) >= self._wanted:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    def _line(self, line: bytes) -> None:
        self._reply_bytes += len(line) + 1
        if self._reply_bytes > MAX_REPLY_BYTES:
            self._fail(ValueError(f"reply longer than {MAX_REPLY_BYTES} bytes"))
            return
        text = line[4:].strip().decode("utf-8", "replace")
        if line[3:4] == b"-":
            if len(self._continued) >= MAX_REPLY_LINES - 1:
                self._fail(ValueError(f"reply of more than {MAX_REPLY_LINES} lines"))
                return
            self._continued.append(text)
            return
        code = line[:3]
        if len(code) != 3 or not code.isdigit():
            self._fail(ValueError(f"not an SMTP reply: {line[:40]!r}"))
            return
        if len(self.replies) >= MAX_PENDING_REPLIES:
            self._fail(ValueError(f"more than {MAX_PENDING_REPLIES} replies nobody asked for"))
            return
        self._reply_bytes = 0
        if self._continued:
            self._continued.append(text)
            self.replies.append(Reply(int(code), tuple(self._continued)))
            self._continued = []
        else:
            self.replies.append(Reply(int(code), (text,)))

    def buffered(self) -> bool:
        """Tell whether anything the server sent is still unread: a reply or part of one."""
        return bool(self.replies or self._tail or self._continued)

    def eof_received(self) -> bool:
        self._fail(EOFError())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or EOFError())
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        if self.transport is not None and isinstance(exc, ValueError):
            self.transport.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self.lost)
        self._waiter = None

    def wait_for(self, count: int) -> asyncio.Future[None]:
        """Return a future done when `count` replies have arrived."""
        waiter = asyncio.get_running_loop().create_future()
        if len(self.replies) >= count:
            waiter.set_result(None)
        elif self.lost is not None:
            waiter.set_exception(self.lost)
        else:
            self._waiter, self._wanted = waiter, count
        return waiter


class SmtpConnection:
    """One open SMTP session that delivers messages one at a time."""

    def __init__(self, protocol: _ReplyReader, timeout: float) -> None:
        self._protocol = protocol
        self._replies = protocol.replies
        # Not None: a connection is built on a protocol once connection_made has run.
        self._transport: asyncio.Transport = protocol.transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.usable = True
        self.last_used = time.monotonic()
        # One timer per connection checks the deadline of the current wait: cheaper
        # than arming and cancelling a timeout for every reply.
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timed_out = False

    @classmethod
    async def open(cls, options: SmtpOptions) -> SmtpConnection:
        """Connect, greet, start TLS and authenticate as the options say."""
        context = _context(options) if options.tls != "none" else None
        implicit = context if options.tls == "ssl" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(options.timeout):
                _, protocol = await loop.create_connection(
                    _ReplyReader,
                    options.host,
                    options.port,
                    ssl=implicit,
                    server_hostname=options.host if implicit else None,
                )
        except ssl.SSLCertVerificationError as exc:
            raise SetupError(
                f"TLS certificate not trusted: {exc.verify_message}", permanent=True
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise SetupError(f"cannot connect: {_describe(exc)}") from exc
        conn = cls(protocol, options.timeout)
        try:
            await conn._start_session(options, context)
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _start_session(self, options: SmtpOptions, context: ssl.SSLContext | None) -> None:
        try:
            banner = await self._reply("greeting")
            if banner.code != 220:
                raise SetupError(f"server greeting: {banner}", permanent=banner.code >= 500)
            await self._hello(options.helo)
            if options.tls == "starttls":
                await self._starttls(options, context)
            if options.username:
                await self._authenticate(options.username, options.password)
        except ConnectionBroken as exc:
            raise SetupError(str(exc)) from exc

    async def _hello(self, helo: str) -> None:
        reply = await self.command(b"EHLO " + helo.encode() + CRLF, "EHLO")
        if reply.code == 250:
            self.extensions = _parse_extensions(reply.lines[1:])
            return
        reply = await self.command(b"HELO " + helo.encode() + CRLF, "HELO")
        if reply.code != 250:
            raise SetupError(f"server refused HELO: {reply}", permanent=reply.code >= 500)
        self.extensions = {}

    async def _starttls(self, options: SmtpOptions, context: ssl.SSLContext | None) -> None:
        if "STARTTLS" not in self.extensions:
            raise SetupError("server does not offer STARTTLS", permanent=True)
        reply = await self.command(b"STARTTLS\r\n", "STARTTLS")
        if reply.code != 220:
            raise SetupError(f"server refused STARTTLS: {reply}", permanent=reply.code >= 500)
        if self._protocol.buffered():
            # Clear text sent before the handshake would be read as if it came over TLS
            # (command injection, CVE-2011-0411): smtplib and Postfix refuse it too.
            raise SetupError("server sent more after its STARTTLS reply: possible injection")
        assert context is not None
        try:
            transport = await self._loop.start_tls(
                self._transport,
                self._protocol,
                context,
                server_hostname=options.host,
                ssl_handshake_timeout=options.timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise SetupError(
                f"TLS certificate not trusted: {exc.verify_message}", permanent=True
            ) from exc
        except (OSError, TimeoutError, ConnectionError) as exc:
            raise SetupError(f"TLS handshake failed: {_describe(exc)}") from exc
        assert transport is not None
        self._transport = self._protocol.transport = transport
        await self._hello(options.helo)

    async def _authenticate(self, username: str, password: str) -> None:
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        user, secret = username.encode(), password.encode()
        if "PLAIN" in mechanisms:
            token = _b64(b"\0" + user + b"\0" + secret)
            reply = await self.command(b"AUTH PLAIN " + token + CRLF, "AUTH")
        elif "LOGIN" in mechanisms:
            reply = await self.command(b"AUTH LOGIN\r\n", "AUTH")
            if reply.code == 334:
                reply = await self.command(_b64(user) + CRLF, "AUTH")
            if reply.code == 334:
                reply = await self.command(_b64(secret) + CRLF, "AUTH")
        else:
            raise SetupError("server offers neither AUTH PLAIN nor AUTH LOGIN", permanent=True)
        if reply.code != 235:
            raise SetupError(f"authentication failed: {reply}", permanent=reply.code >= 500)

    async def deliver(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        *,
        crlf_only: bool = False,
        dot_free: bool = False,
        before_end: asyncio.Future[None] | None = None,
    ) -> Reply:
        """Send one message; return the first refusing reply or the final one.

        With `before_end`, all but the end of the data goes out at once and the end waits for
        that future: until then the relay has accepted nothing. When it raises, the connection
        is dropped (the relay discards the unfinished message) and the error raised.
        """
        mail, rcpt = _envelope_commands(sender, recipient, data, self.extensions)
        rcpt_reply: Reply | None
        data_reply: Reply | None
        if "PIPELINING" in self.extensions:
            self._transport.write(mail + rcpt + b"DATA\r\n")
            try:
                await self._wait(3, "MAIL FROM", "RCPT TO", "DATA", before_reply=True)
            except ConnectionBroken:
                # A refusal that came before the connection closed (a 421) says more.
                refusals = [reply for reply in self._replies if reply.code >= 400]
                self._replies.clear()
                if refusals:
                    return refusals[0]
                raise
            popleft = self._replies.popleft
            mail_reply, rcpt_reply, data_reply = popleft(), popleft(), popleft()
        else:
            mail_reply = await self.command(mail, "MAIL FROM", first=True)
            rcpt_reply = await self.command(rcpt, "RCPT TO") if mail_reply.code == 250 else None
            data_reply = None
            if rcpt_reply is not None and rcpt_reply.code in (250, 251):
                data_reply = await self.command(b"DATA\r\n", "DATA")
        refusal = _first_refusal(mail_reply, rcpt_reply)
        if data_reply is not None and data_reply.code == 354:
            if refusal is None:
                payload = dot_stuff(data, crlf_only=crlf_only, dot_free=dot_free)
                if before_end is None:
                    self._transport.write(payload)
                else:
                    await self._end_when(before_end, payload)
                final = await self._reply("end of data")
                if final.code != 250:
                    await self._after(final)
                self.last_used = time.monotonic()
                return final
            # RFC 2920: a 354 after a refused envelope still needs the end of data.
            self._transport.write(b".\r\n")
            await self._reply("end of data")
        refusal = refusal or data_reply
        assert refusal is not None
        await self._after(refusal)
        return refusal

    async def _end_when(self, before_end: asyncio.Future[None], payload: bytes) -> None:
        """Write the payload but its final ".CRLF"; write that once `before_end` is done."""
        self._transport.write(payload[: -len(END_OF_DATA)])
        try:
            await before_end
        except BaseException:
            self.abort()  # an unfinished DATA is discarded, never delivered
            raise
        self._transport.write(END_OF_DATA)

    async def _after(self, reply: Reply) -> None:
        """Keep the connection usable after a refusal, or mark it for closing."""
        self.last_used = time.monotonic()
        if reply.code < 300:
            return
        if reply.code == 421 or reply.code >= 600:
            self.abort()
            return
        try:
            reset = await self.command(b"RSET\r\n", "RSET")
        except ConnectionBroken:
            return
        self.usable = reset.code == 250

    async def noop(self) -> bool:
        """Check that an idle connection still answers."""
        if not self.is_open():
            return False
        try:
            reply = await self.command(b"NOOP\r\n", "NOOP")
        except ConnectionBroken:
            return False
        self.last_used = time.monotonic()
        return reply.code == 250

    def is_open(self) -> bool:
        """Tell whether the connection is usable and the server has not closed it."""
        # A reply nobody asked for (a 421 before closing) would be read as the next one's.
        return (
            self.usable
            and not self._replies
            and self._protocol.lost is None
            and not self._transport.is_closing()
        )

    async def command(self, line: bytes, stage: str, *, first: bool = False) -> Reply:
        """Write one command line and read its reply within the timeout."""
        self._transport.write(line)
        return await self._reply(stage, first=first)

    async def _reply(self, stage: str, *, first: bool = False) -> Reply:
        if not self._replies:
            await self._wait(1, stage, before_reply=first)
        return self._replies.popleft()

    async def _wait(self, count: int, *stages: str, before_reply: bool = False) -> None:
        """Wait until `count` replies are in, within the timeout."""
        waiter = self._protocol.wait_for(count)
        if waiter.done() and waiter.exception() is None:
            return
        self._deadline = self._loop.time() + self.timeout
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._deadline, self._check_deadline)
        self._waiter = waiter
        try:
            await waiter
        except _BROKEN as exc:
            self.abort()
            got = len(self._replies)
            stage = stages[min(got, len(stages) - 1)]
            cause = TimeoutError() if self._timed_out else exc
            raise _broken(
                cause, stage, self.timeout, before_reply=before_reply and not got
            ) from exc
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        self._watchdog = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() >= self._deadline:
            self._timed_out = True
            waiter.set_exception(TimeoutError())
        else:
            self._watchdog = self._loop.call_at(self._deadline, self._check_deadline)

    async def quit(self) -> None:
        """Say QUIT and close, without waiting long for a server that is gone."""
        if not self.is_open():
            self.abort()
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                self._transport.write(b"QUIT\r\n")
                await self._protocol.wait_for(1)
                self._transport.close()
                await self._protocol.closed
        except (*_BROKEN, ConnectionError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        self.usable = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._transport.abort()


def _envelope_commands(
    sender: str, recipient: str, data: bytes, extensions: dict[str, str]
) -> tuple[bytes, bytes]:
    params = b""
    if "SIZE" in extensions:
        params = b" SIZE=%d" % len(data)
    if "8BITMIME" in extensions and not data.isascii():
        params += b" BODY=8BITMIME"
    if not (sender.isascii() and recipient.isascii()):
        params += b" SMTPUTF8"
    mail = b"MAIL FROM:<" + sender.encode() + b">" + params + CRLF
    return mail, b"RCPT TO:<" + recipient.encode() + b">\r\n"


def _first_refusal(mail: Reply, rcpt: Reply | None) -> Reply | None:
    if mail.code != 250:
        return mail
    if rcpt is None or rcpt.code not in (250, 251):
        return rcpt
    return None


def _parse_extensions(lines: tuple[str, ...]) -> dict[str, str]:
    extensions = {}
    for line in lines:
        keyword, _, params = line.partition(" ")
        extensions[keyword.upper()] = params
    return extensions


def _broken(exc: BaseException, stage: str, timeout: float, *, before_reply: bool) -> SmtpError:
    if isinstance(exc, TimeoutError):
        return ConnectionBroken(f"timeout after {timeout:g}s waiting for the reply to {stage}")
    if isinstance(exc, (ValueError, asyncio.LimitOverrunError)):
        return ConnectionBroken(f"bad reply to {stage}: {exc}")
    reason = "connection closed" if isinstance(exc, EOFError) else _describe(exc)
    return ConnectionBroken(f"{reason} before the reply to {stage}", before_reply=before_reply)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _context(options: SmtpOptions) -> ssl.SSLContext:
    return options.ssl_context or ssl.create_default_context()


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)
