"""Read returned mail from a Maildir, an mbox file, stdin or an IMAP folder, and tidy it after.

A source yields each message under the reference it knows it by; once the results are
committed, `finish` moves the processed messages out of the way and leaves the rest in place.
"""

from __future__ import annotations

import imaplib
import mailbox
import os
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from newsletter.bounces.classify import fingerprint
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NewsletterError
from newsletter.core.models import utcnow
from newsletter.core.urls import UrlError, mask_imap_url, split_imap_url

PROCESSED_FOLDER = "processed"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
NOT_REGULAR = "not a readable regular file: left where it is"


@dataclass(frozen=True)
class Returned:
    """One message read from a source, under the reference the source knows it by."""

    ref: str
    data: bytes
    # Why the message could not be read (data is then empty); it is left where it is.
    unreadable: str = ""


class Source(Protocol):
    name: str

    def __len__(self) -> int: ...

    def messages(self) -> Iterator[Returned]: ...

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        """Move processed messages away; return where kept ones can be found, by ref."""
        ...

    def close(self) -> None: ...


class MaildirSource:
    """A Maildir; processed messages move to its `.processed` folder, the rest stay.

    Only regular files in new/ and cur/ are read. Anything else is reported and never
    opened: opening a FIFO waits for a writer forever, and a device never ends.
    """

    def __init__(self, path: Path) -> None:
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise InputError(f"{path}: not a Maildir (needs cur/, new/ and tmp/)")
        self.name = str(path)
        self.path = path
        self.box = mailbox.Maildir(path, factory=None, create=False)
        self._refs = sorted(_maildir_entries(path))

    def __len__(self) -> int:
        return len(self._refs)

    def messages(self) -> Iterator[Returned]:
        for ref in self._refs:
            data = read_regular_file(self.path / ref)
            yield Returned(ref, data) if data is not None else Returned(ref, b"", NOT_REGULAR)

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            folder = self._processed_folder()
            for ref in processed:
                data = read_regular_file(self.path / ref)
                if data is None:
                    continue  # replaced or taken away since it was read: not ours to move
                # Copy, then remove: a crash in between leaves a duplicate, never a loss.
                folder.add(data)
                (self.path / ref).unlink(missing_ok=True)
        return {ref: self.name for ref in kept}

    def _processed_folder(self) -> mailbox.Maildir:
        if PROCESSED_FOLDER in self.box.list_folders():
            return self.box.get_folder(PROCESSED_FOLDER)
        return self.box.add_folder(PROCESSED_FOLDER)

    def close(self) -> None:
        self.box.close()


def _maildir_entries(path: Path) -> Iterator[str]:
    """Yield `new/<name>` and `cur/<name>` for every entry of a Maildir's inbox."""
    for sub in ("new", "cur"):
        with os.scandir(path / sub) as entries:
            yield from (f"{sub}/{entry.name}" for entry in entries)


def read_regular_file(path: Path) -> bytes | None:
    """Return the bytes of a regular file; None for anything else or a file gone meanwhile."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        # Checked again on the open descriptor, in case the entry was swapped after lstat:
        # O_NONBLOCK keeps even that open from waiting on a FIFO, O_NOFOLLOW from a link.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:  # gone meanwhile, or not ours to read
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        return file.read()


class MboxSource:
    """An mbox file, locked while read; processed messages move to `<file>.processed`.

    Without the lock nothing is read: finishing rewrites the file, which without the lock
    could drop a message the delivery agent appends meanwhile, and reading while it writes
    could act on half a message. A lock held elsewhere or a folder where the rewritten file
    cannot be written is one line of error before anything is acted on.
    """

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.path = path
        _check_writable_folder(path)
        self.box = mailbox.mbox(path, create=False)
        try:
            _lock(self.box, path)
        except InputError:
            self.box.close()
            raise
        self._keys = list(self.box.keys())

    def __len__(self) -> int:
        return len(self._keys)

    def messages(self) -> Iterator[Returned]:
        for key in self._keys:
            yield Returned(str(key), self.box.get_bytes(key))

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            archive = mailbox.mbox(self.path.with_name(self.path.name + ".processed"))
            archive.lock()
            try:
                for key in processed:
                    archive.add(self.box.get_bytes(int(key)))
                archive.flush()
            finally:
                archive.unlock()
                archive.close()
            for key in processed:
                self.box.remove(int(key))
            self.box.flush()
        return {key: self.name for key in kept}

    def close(self) -> None:
        self.box.unlock()
        self.box.close()


def _lock(box: mailbox.mbox, path: Path) -> None:
    try:
        box.lock()
    except mailbox.ExternalClashError:
        message = f"{path}: locked by another program ({path.name}.lock or lockf): try later"
        raise InputError(message) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be locked: {exc.strerror or exc}") from None


def _check_writable_folder(path: Path) -> None:
    """Fail unless the mbox's folder takes new files (its rewrite and the archive need it)."""
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise InputError(
            f"{path}: its folder is not writable ({exc.strerror or exc}), so processed"
            " messages could not be moved out: copy the mbox somewhere writable"
        ) from None


class StdinSource:
    """One message piped in by the MTA; a message not understood is saved under var/."""

    def __init__(self, stream: IO[bytes], keep_dir: Path) -> None:
        self.name = "-"
        data = stream.read()
        if data.startswith(b"From "):  # an mbox-style From_ line some pipes prepend
            data = data.partition(b"\n")[2]
        self.data = data
        self.keep_dir = keep_dir

    def __len__(self) -> int:
        return 1

    def messages(self) -> Iterator[Returned]:
        yield Returned("stdin", self.data)

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if not kept:
            return {}
        self.keep_dir.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S")
        path = self.keep_dir / f"{stamp}-{fingerprint(self.data)[:12]}.eml"
        path.write_bytes(self.data)
        return {"stdin": str(path)}

    def close(self) -> None:
        pass


class ImapSource:
    """An IMAP folder over TLS; understood messages are flagged \\Seen \\Deleted, others left."""

    def __init__(
        self, url: str, *, connect: Callable[..., Any] | None = None, password: str | None = None
    ) -> None:
        self.name = mask_imap_url(url)
        host, port, user, secret, folder = _parse_imap_url(url)
        secret = secret or password or os.environ.get(IMAP_PASSWORD_ENV, "")
        factory = connect or _imap_tls
        try:
            self.conn = factory(host, port)
            self.conn.login(user, secret)
            typ, _ = self.conn.select(_quote_folder(folder))
            if typ != "OK":
                raise InputError(f"{self.name}: no folder {folder!r}")
            typ, data = self.conn.uid("SEARCH", None, "UNDELETED")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise NewsletterError(f"{self.name}: {exc}") from exc
        self._uids = [u.decode() for u in (data[0] or b"").split()] if typ == "OK" else []

    def __len__(self) -> int:
        return len(self._uids)

    def messages(self) -> Iterator[Returned]:
        for uid in self._uids:
            # BODY.PEEK leaves \Seen alone: a message not understood looks untouched.
            try:
                typ, data = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            except (imaplib.IMAP4.error, OSError) as exc:
                raise NewsletterError(f"{self.name}: reading message {uid}: {exc}") from exc
            raw = next((p[1] for p in data or [] if isinstance(p, tuple)), None)
            if typ == "OK" and raw is not None:
                yield Returned(uid, bytes(raw))

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            uids = ",".join(processed)
            self.conn.uid("STORE", uids, "+FLAGS", "(\\Seen \\Deleted)")
            typ, caps = self.conn.capability()
            if typ == "OK" and b"UIDPLUS" in b" ".join(caps or []).upper():
                self.conn.uid("EXPUNGE", uids)  # only ours, never others' \Deleted mail
        return {uid: self.name for uid in kept}

    def close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def _imap_tls(host: str, port: int) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context(), timeout=60)


def _parse_imap_url(url: str) -> tuple[str, int, str, str, str]:
    try:
        return split_imap_url(url)
    except UrlError as exc:
        raise InputError(f"{mask_imap_url(url)}: {exc}") from None


def _quote_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_source(spec: str, *, settings: Settings, stdin: IO[bytes] | None = None) -> Source:
    """Open a Maildir directory, an mbox file, or `-` for one message on stdin."""
    if spec == "-":
        if stdin is None:
            raise InputError("no standard input to read the message from")
        return StdinSource(stdin, Path(settings.var_dir) / "bounces" / "kept")
    path = Path(spec)
    if path.is_dir():
        return MaildirSource(path)
    if path.is_file():
        return MboxSource(path)
    raise InputError(f"{spec}: no such Maildir or mbox file")
