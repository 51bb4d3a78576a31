"""A throwaway Dovecot IMAP server on loopback, over TLS, for the bounce reader's tests.

    with DovecotServer(workdir) as server:
        server.append("Bounces", message_bytes)
        ImapSource(server.url("Bounces"), connect=server.connect)

Skips the test when Debian's dovecot-imapd is not installed (outside CI).
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tests.smtp_server import make_certificate

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces@news.example.test"
PASSWORD = "imap-test-pass"
MAIL_UID = 65534  # nobody: Dovecot will not store mail as root
CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={root}/home/%n
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def available() -> bool:
    """Tell whether a Dovecot binary is installed and we may run it (as root)."""
    return Path(DOVECOT).is_file() and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DovecotServer:
    """Dovecot in the foreground with its own config, certificate and one mail user."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: the mail user (nobody) must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DovecotServer:
        cert, key = make_certificate(self.root)
        self.cafile = cert
        home = self.root / "home"
        home.mkdir(mode=0o777)
        home.chmod(0o777)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(root=self.root, cert=cert, key=key, port=self.port, uid=MAIL_UID)
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, host: str, port: int) -> imaplib.IMAP4_SSL:
        """Open TLS to the server, trusting its own certificate only."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        return imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=10)

    def url(self, folder: str) -> str:
        return f"imaps://{USER.replace('@', '%40')}:{PASSWORD}@localhost:{self.port}/{folder}"

    def client(self, folder: str = "INBOX") -> imaplib.IMAP4_SSL:
        """Return a logged-in client with the folder (created if need be) selected."""
        imap = self.connect("localhost", self.port)
        imap.login(USER, PASSWORD)
        imap.create(folder)
        imap.select(folder)
        return imap

    def append(self, folder: str, data: bytes) -> None:
        imap = self.client(folder)
        try:
            imap.append(folder, None, None, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        finally:
            imap.logout()


class ScriptedImapServer:
    """A small IMAP server over TLS on loopback that answers as a test scripts it.

    It holds `uids` messages, each `message`; a FETCH answers with a literal of
    `literal_size` bytes when set (streamed until the client hangs up, whatever it asked
    for), and `flood` answers a SEARCH with untagged lines that never end. It counts the
    FETCHes it was asked.
    """

    def __init__(
        self,
        folder: Path,
        *,
        uids: int = 1,
        message: bytes = b"Subject: hello\r\n\r\nhi\r\n",
        literal_size: int | None = None,
        flood: bool = False,
    ) -> None:
        self.folder = folder
        self.uids, self.message = uids, message
        self.literal_size, self.flood = literal_size, flood
        self.fetches = 0
        self.port = 0

    def __enter__(self) -> ScriptedImapServer:
        import threading

        self.cafile, key = make_certificate(self.folder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cafile, key)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(30)
        self.port = listener.getsockname()[1]
        self._listener = context.wrap_socket(listener, server_side=True)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self._thread.join(timeout=30)

    def url(self, folder: str = "INBOX") -> str:
        return f"imaps://reader:secret@localhost:{self.port}/{folder}"

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            try:
                self._session(conn, conn.makefile("rb"))
            except OSError:
                pass  # the client hung up: what the hostile answers are meant to cause

    def _session(self, conn: ssl.SSLSocket, lines: object) -> None:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS] ready\r\n")
        for raw in iter(lines.readline, b""):  # type: ignore[attr-defined]
            tag, _, rest = raw.decode().strip().partition(" ")
            command = rest.split(" ", 2)
            name = command[0].upper()
            if name == "UID":
                name = "UID " + command[1].upper()
            if name == "LOGOUT":
                conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                return
            conn.sendall(self._answer(conn, tag, name, rest))

    def _answer(self, conn: ssl.SSLSocket, tag: str, name: str, rest: str) -> bytes:
        if name == "CAPABILITY":
            return f"* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n".encode()
        if name == "SELECT":
            return f"* {self.uids} EXISTS\r\n{tag} OK [READ-WRITE] done\r\n".encode()
        if name == "UID SEARCH":
            if self.flood:
                while True:
                    conn.sendall(b"* OK " + b"x" * 1000 + b"\r\n")
            # Nothing carries the kept keyword: every message is new mail.
            kept_only = "KEYWORD" in rest and "UNKEYWORD" not in rest
            found = "" if kept_only else "".join(f" {n}" for n in range(1, self.uids + 1))
            return f"* SEARCH{found}\r\n{tag} OK done\r\n".encode()
        if name == "UID FETCH":
            self.fetches += 1
            uid = rest.split(" ")[2]
            if self.literal_size is not None:
                size = self.literal_size
                conn.sendall(f"* {uid} FETCH (UID {uid} BODY[] {{{size}}}\r\n".encode())
                while True:
                    conn.sendall(b"x" * 65536)
            head = f"* {uid} FETCH (UID {uid} BODY[]<0> {{{len(self.message)}}}\r\n".encode()
            return head + self.message + f")\r\n{tag} OK done\r\n".encode()
        return f"{tag} OK done\r\n".encode()
