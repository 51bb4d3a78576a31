"""A hand-written SMTP server on 127.0.0.1 that misbehaves in ways aiosmtpd cannot.

    with HostileSmtpServer(certificate=cert, after_starttls=b"250-INJ\\r\\n250 PIPELINING\\r\\n"):
        ...  # the 220 to STARTTLS and the injected lines go out in one write
    with HostileSmtpServer(greeting_lines=200_000):
        ...  # a greeting of 200,000 "220-" lines before the last one

Each session runs in a thread of its own; otherwise the server answers plainly
(EHLO, STARTTLS, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and keeps what it was given.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

HOST = "127.0.0.1"
GREETING_LINE = b"220-" + b"x" * 94 + b"\r\n"  # 100 bytes a line
CHUNK_LINES = 1000


@dataclass
class Session:
    """What happened on one connection."""

    greeting_bytes: int = 0  # bytes of greeting written before the client stopped reading
    greeting_cut_off: bool = False  # the client closed before the whole greeting was written
    commands: int = 0


class HostileSmtpServer:
    """Serve SMTP sessions with a scripted greeting or STARTTLS answer; a context manager."""

    def __init__(
        self,
        *,
        certificate: tuple[Path, Path] | None = None,
        after_starttls: bytes = b"",
        greeting_lines: int = 0,
    ) -> None:
        self.after_starttls = after_starttls
        self.greeting_lines = greeting_lines
        self.messages: list[bytes] = []
        self.sessions: list[Session] = []
        self._tls: ssl.SSLContext | None = None
        if certificate is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(*certificate)
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._workers: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def __enter__(self) -> HostileSmtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for worker in self._workers:
            worker.join(10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            session = Session()
            self.sessions.append(session)
            worker = threading.Thread(target=self._run, args=(conn, session), daemon=True)
            self._workers.append(worker)
            worker.start()

    def _run(self, conn: socket.socket, session: Session) -> None:
        conn.settimeout(10)
        open_sockets = [conn]
        try:
            self._session(open_sockets, session)
        except OSError:
            pass
        finally:
            for sock in open_sockets:
                sock.close()

    def _session(self, open_sockets: list[socket.socket], session: Session) -> None:
        conn = open_sockets[0]
        if not self._greet(conn, session):
            return
        reader = conn.makefile("rb")
        tls = False
        while line := reader.readline(4096):
            session.commands += 1
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"STARTTLS" and self._tls is not None and not tls:
                conn.sendall(b"220 2.0.0 go ahead\r\n" + self.after_starttls)
                reader.close()
                conn = self._tls.wrap_socket(conn, server_side=True)
                open_sockets.append(conn)
                reader, tls = conn.makefile("rb"), True
            elif verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                self.messages.append(_read_data(reader))
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(self._answer(verb, tls))

    def _greet(self, conn: socket.socket, session: Session) -> bool:
        """Write the greeting; False when the client hung up before its end."""
        left = self.greeting_lines
        try:
            while left > 0:
                chunk = GREETING_LINE * min(left, CHUNK_LINES)
                conn.sendall(chunk)
                session.greeting_bytes += len(chunk)
                left -= CHUNK_LINES
            conn.sendall(b"220 hostile.test ESMTP\r\n")
        except OSError:
            session.greeting_cut_off = True
            return False
        return True

    def _answer(self, verb: bytes, tls: bool) -> bytes:
        if verb == b"EHLO":
            starttls = b"" if tls or self._tls is None else b"250-STARTTLS\r\n"
            return b"250-hostile.test\r\n250-PIPELINING\r\n" + starttls + b"250 8BITMIME\r\n"
        if verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return b"250 2.0.0 ok\r\n"
        return b"502 5.5.2 unknown command\r\n"


def _read_data(reader: BinaryIO) -> bytes:
    lines = []
    while (line := reader.readline(65536)) not in (b".\r\n", b""):
        lines.append(line)
    return b"".join(lines)
