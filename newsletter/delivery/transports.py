"""Transports: hand finished messages to a Maildir folder or an SMTP server, with a pool."""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import itertools
import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl

from newsletter.core.errors import ConfigError, TransportError
from newsletter.core.urls import UrlError, mask_transport_url, split_smtp_url
from newsletter.delivery.smtp import (
    ConnectionBroken,
    SetupError,
    SmtpConnection,
    SmtpOptions,
    TlsMode,
    valid_address,
)

log = logging.getLogger(__name__)

SMTP_PORTS = {"smtp": 25, "smtps": 465}
SMTP_QUERY_OPTIONS = ("tls", "connections", "rate", "timeout", "helo", "cafile")
DEFAULT_CONNECTIONS = 4
MAX_CONNECTIONS = 100
DEFAULT_TIMEOUT = 30.0
# A pooled connection idle longer than this gets a NOOP before reuse: servers drop idle
# clients (Postfix after 300 s), and a dead connection found by NOOP costs no message.
IDLE_CHECK_SECONDS = 20.0
CONNECT_ATTEMPTS = 3
RETRY_DELAY = 0.5
INVALID_ADDRESS = "invalid envelope address"
_HELO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


class TransportUnavailable(TransportError):
    """The transport cannot take messages at all: server down, bad credentials, full disk."""


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class OutgoingMessage:
    """One message for one recipient; `data` has CRLF line endings and is not dot-stuffed.

    crlf_only promises that data has no bare CR or LF (build_message_data makes such bytes), so
    the SMTP client need not check; without it, stray line ends are normalised.
    """

    key: int
    sender: str
    recipient: str
    data: bytes
    crlf_only: bool = False
    dot_free: bool = False  # no line starts with ".": SMTP need not dot-stuff it


@dataclass(frozen=True)
class SendResult:
    """What became of one message, with the server's reply (never credentials)."""

    key: int
    outcome: Outcome
    reply: str


class Transport(abc.ABC):
    """Sends messages; use `async with transport:` around a batch of `send` calls."""

    connections: int = 1

    async def __aenter__(self) -> Transport:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Get ready to send; raise TransportUnavailable if that is impossible."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files."""

    @abc.abstractmethod
    async def send(
        self, message: OutgoingMessage, *, after: asyncio.Future[None] | None = None
    ) -> SendResult:
        """Send one message; raise TransportUnavailable only when nothing can be sent.

        With `after`, the message is not delivered before that future is done (the record of
        the previous message on this connection): a relay may take all but the end of its
        data meanwhile. When it raises, the message is abandoned undelivered and its error
        raised. A message refused or lost before that point does not wait for it.
        """


class MaildirTransport(Transport):
    """Write each message as a file into a Maildir folder (for development and tests)."""

    connections = 1

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._ready = False
        self._counter = itertools.count()
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    async def open(self) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransportUnavailable(f"maildir {self.path}: {exc.strerror}") from exc
        self._ready = True

    async def close(self) -> None:
        self._ready = False

    async def send(
        self, message: OutgoingMessage, *, after: asyncio.Future[None] | None = None
    ) -> SendResult:
        if after is not None:
            await after
        if not (valid_address(message.sender) and _valid_recipient(message.recipient)):
            return SendResult(message.key, Outcome.FAILED, INVALID_ADDRESS)
        if not self._ready:
            await self.open()
        # Like a local delivery agent: record the envelope, store with LF line endings.
        envelope = f"Return-Path: <{message.sender}>\nDelivered-To: {message.recipient}\n"
        content = envelope.encode() + message.data.replace(b"\r\n", b"\n")
        try:
            name = self._write(content)
        except OSError as exc:
            raise TransportUnavailable(f"maildir {self.path}: {exc.strerror}") from exc
        return SendResult(message.key, Outcome.SENT, f"maildir: new/{name}")

    def _write(self, content: bytes) -> str:
        """Write into tmp/ then rename into new/, so readers never see half a message."""
        while True:
            now = time.time()
            name = (
                f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}.{self._host}"
            )
            tmp = self.path / "tmp" / name
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path / "new" / name)
            return name


class RateLimiter:
    """Space events out to `rate` per second across all callers (a token bucket of one)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        """Wait for this caller's turn."""
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class SmtpTransport(Transport):
    """Send through an SMTP server over a pool of up to `connections` reused connections."""

    def __init__(
        self,
        options: SmtpOptions,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        rate: float = 0.0,
        connect_attempts: int = CONNECT_ATTEMPTS,
        retry_delay: float = RETRY_DELAY,
        idle_check: float = IDLE_CHECK_SECONDS,
    ) -> None:
        self.options = options
        self.connections = connections
        self.rate = rate
        self.connect_attempts = connect_attempts
        self.retry_delay = retry_delay
        self.idle_check = idle_check
        self._idle: list[SmtpConnection] = []
        self._closed = False
        self._slots: asyncio.Semaphore | None = None
        self._limiter = RateLimiter(rate) if rate else None

    @property
    def name(self) -> str:
        return f"SMTP server {self.options.host}:{self.options.port}"

    async def open(self) -> None:
        self._closed = False
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        if not self._idle:
            self._idle.append(await self._connect())
            log.debug("connected to %s", self.name)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(conn.quit() for conn in idle))

    async def send(
        self, message: OutgoingMessage, *, after: asyncio.Future[None] | None = None
    ) -> SendResult:
        if not (valid_address(message.sender) and _valid_recipient(message.recipient)):
            return SendResult(message.key, Outcome.FAILED, INVALID_ADDRESS)
        if self._limiter is not None:
            await self._limiter.wait()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        async with self._slots:
            return await self._send_pooled(message, after)

    async def _send_pooled(
        self, message: OutgoingMessage, after: asyncio.Future[None] | None
    ) -> SendResult:
        conn, reused = await self._checkout()
        try:
            return await self._deliver(conn, message, after)
        except ConnectionBroken as exc:
            if not (reused and exc.before_reply):
                return SendResult(message.key, Outcome.RETRY, str(exc))
        # The server closed an idle connection before reading a word: nothing was
        # accepted, so one more try on a fresh connection is safe.
        try:
            return await self._deliver(await self._connect(), message, after)
        except ConnectionBroken as exc:
            return SendResult(message.key, Outcome.RETRY, str(exc))

    async def _deliver(
        self, conn: SmtpConnection, message: OutgoingMessage, after: asyncio.Future[None] | None
    ) -> SendResult:
        try:
            reply = await conn.deliver(
                message.sender,
                message.recipient,
                message.data,
                crlf_only=message.crlf_only,
                dot_free=message.dot_free,
                before_end=after,
            )
        except BaseException:
            conn.abort()
            raise
        finally:
            self._checkin(conn)
        return SendResult(message.key, _outcome(reply.code), str(reply))

    async def _checkout(self) -> tuple[SmtpConnection, bool]:
        """Take an idle connection that still works, or open a new one."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_open():
                conn.abort()
            elif time.monotonic() - conn.last_used > self.idle_check and not await conn.noop():
                conn.abort()
            else:
                return conn, True
        return await self._connect(), False

    def _checkin(self, conn: SmtpConnection) -> None:
        if conn.usable and not self._closed:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _connect(self) -> SmtpConnection:
        """Open a connection, retrying transient failures; raise TransportUnavailable."""
        for attempt in itertools.count(1):
            try:
                return await SmtpConnection.open(self.options)
            except SetupError as exc:
                if exc.permanent or attempt >= self.connect_attempts:
                    raise TransportUnavailable(f"{self.name}: {exc}") from exc
                log.warning("%s: %s (attempt %d, trying again)", self.name, exc, attempt)
            await asyncio.sleep(self.retry_delay * attempt)
        raise AssertionError("unreachable")


def make_transport(spec: str, *, local_hostname: str | None = None) -> Transport:
    """Build the transport a spec names: maildir:PATH, smtp://... or smtps://..."""
    spec = spec.strip()
    if spec.startswith("maildir:"):
        path = spec.removeprefix("maildir:")
        if not path:
            raise ConfigError("transport maildir: needs a folder, e.g. maildir:var/outbox")
        return MaildirTransport(Path(path))
    scheme = spec.partition(":")[0].lower()
    if scheme in SMTP_PORTS:
        return _smtp_transport(spec, local_hostname)
    raise ConfigError(
        f"transport {describe_transport(spec)!r}: expected maildir:PATH, "
        "smtp://HOST[:PORT] or smtps://HOST[:PORT]"
    )


def send_one(spec: str, message: OutgoingMessage) -> SendResult:
    """Send one message through the transport a spec names, opened for it alone."""

    async def open_send_close() -> SendResult:
        async with make_transport(spec) as transport:
            return await transport.send(message)

    return asyncio.run(open_send_close())


def describe_transport(spec: str) -> str:
    """Return the spec with any password replaced by ****, for logs and messages."""
    return mask_transport_url(spec)


def _smtp_transport(spec: str, local_hostname: str | None) -> SmtpTransport:
    where = f"transport {describe_transport(spec)}"
    try:
        scheme, host, port, username, password, raw_query = split_smtp_url(spec)
    except UrlError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    query = _query(raw_query, where)
    if bool(username) != bool(password):
        raise ConfigError(f"{where}: give both user and password (smtp://USER:PASSWORD@HOST)")
    tls = _tls_mode(scheme, query.get("tls"), where)
    if password and tls == "none" and not _is_loopback(host):
        raise ConfigError(
            f"{where}: refusing to send the password in clear text to {host}; "
            "use tls=starttls or smtps://"
        )
    options = SmtpOptions(
        host=host,
        port=port or SMTP_PORTS[scheme],
        tls=tls,
        username=username,
        password=password,
        timeout=_number(query, "timeout", DEFAULT_TIMEOUT, where, minimum=0.001),
        helo=_helo(query.get("helo") or local_hostname, where),
        ssl_context=_ssl_context(query.get("cafile"), where) if tls != "none" else None,
    )
    connections = _number(query, "connections", DEFAULT_CONNECTIONS, where, minimum=1)
    if connections != int(connections) or connections > MAX_CONNECTIONS:
        raise ConfigError(f"{where}: connections must be a whole number from 1 to 100")
    rate = _number(query, "rate", 0.0, where, minimum=0.0)
    return SmtpTransport(options, connections=int(connections), rate=rate)


def _query(query: str, where: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"{where}: options must look like ?tls=starttls&connections=4") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in SMTP_QUERY_OPTIONS:
            known = ", ".join(SMTP_QUERY_OPTIONS)
            raise ConfigError(f"{where}: unknown option {key!r} (known: {known})")
        if key in options:
            raise ConfigError(f"{where}: option {key!r} given twice")
        options[key] = value
    return options


def _tls_mode(scheme: str, value: str | None, where: str) -> TlsMode:
    if scheme == "smtps":
        if value not in (None, "ssl"):
            raise ConfigError(f"{where}: smtps:// always uses tls=ssl")
        return "ssl"
    if value is None:
        return "none"
    if value not in ("none", "starttls", "ssl"):
        raise ConfigError(f"{where}: tls must be starttls, ssl or none, not {value!r}")
    return value  # type: ignore[return-value]  # one of TlsMode's values, checked above


def _number(query: dict[str, str], key: str, default: float, where: str, minimum: float) -> float:
    if key not in query:
        return default
    try:
        value = float(query[key])
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{where}: {key} must be a number of at least {minimum:g}")
    return value


def _helo(name: str | None, where: str) -> str:
    name = name or socket.gethostname() or "localhost"
    if not _HELO_NAME.fullmatch(name):
        if name == socket.gethostname():
            return "localhost"
        raise ConfigError(f"{where}: helo must be a host name or [address], not {name!r}")
    return name


def _ssl_context(cafile: str | None, where: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: cannot read cafile {cafile}: {exc}") from exc


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _valid_recipient(address: str) -> bool:
    return bool(address) and valid_address(address)


def _outcome(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.SENT
    if 500 <= code < 600:
        return Outcome.FAILED
    return Outcome.RETRY
