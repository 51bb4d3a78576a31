"""Read returned mail from a Maildir, an mbox file, stdin or an IMAP folder, and tidy it after.

A source yields each message under the reference it knows it by; once the results are
committed, `finish` moves the processed messages out of the way and leaves the rest in place.

What is read is capped before any parser sees it: at most MAX_MESSAGE_BYTES of each message
(a report is short; a huge message is someone's attachment), over IMAP by a partial fetch, and
at most `limit` messages a run (`bounce_max_messages`), the rest left for the next run.
Messages kept earlier come after new ones, so mail nobody reads cannot hold up the rest.
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
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from newsletter.bounces.classify import MAX_PARSED_BYTES, fingerprint
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NewsletterError
from newsletter.core.models import utcnow
from newsletter.core.urls import UrlError, mask_imap_url, split_imap_url

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

PROCESSED_FOLDER = "processed"
IMAP_PASSWORD_ENV = "NEWSLETTER_IMAP_PASSWORD"
NOT_REGULAR = "not a readable regular file: left where it is"
MAX_MESSAGE_BYTES = MAX_PARSED_BYTES
DEFAULT_LIMIT = 1000
# The IMAP client's limits: a reply line (imaplib's own), a literal (one partial fetch), and
# all that one command's reply may bring, so a hostile server cannot fill memory.
IMAP_MAX_LINE = 1_000_000
IMAP_MAX_LITERAL = MAX_MESSAGE_BYTES
IMAP_MAX_REPLY = 8_000_000
# A private keyword on messages kept unread: the next run reads new mail first.
KEPT_KEYWORD = "NewsletterKept"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Returned:
    """One message read from a source, under the reference the source knows it by."""

    ref: str
    data: bytes
    # Why the message could not be read (data is then empty); it is left where it is.
    unreadable: str = ""


class Source(Protocol):
    name: str
    # Messages beyond the per-run limit, left for the next run.
    left: int

    def __len__(self) -> int: ...

    def messages(self) -> Iterator[Returned]: ...

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        """Move processed messages away; return where kept ones can be found, by ref."""
        ...

    def close(self) -> None: ...


class MaildirSource:
    """A Maildir; processed messages move to its `.processed` folder, the rest stay.

    Only regular files in new/ and cur/ are read, new/ first. Anything else is reported and
    never opened: opening a FIFO waits for a writer forever, and a device never ends. A kept
    message moves from new/ to cur/ (still unread), so the next run reads new mail first.
    """

    def __init__(self, path: Path, *, limit: int = DEFAULT_LIMIT) -> None:
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise InputError(f"{path}: not a Maildir (needs cur/, new/ and tmp/)")
        self.name = str(path)
        self.path = path
        self.box = mailbox.Maildir(path, factory=None, create=False)
        refs = list(_maildir_entries(path))
        self._refs = refs[:limit]
        self.left = len(refs) - len(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def messages(self) -> Iterator[Returned]:
        for ref in self._refs:
            data = read_regular_file(self.path / ref, MAX_MESSAGE_BYTES)
            yield Returned(ref, data) if data is not None else Returned(ref, b"", NOT_REGULAR)

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            folder = Path(self._processed_folder()._path)
            for ref in processed:
                # A rename, never a copy: the whole of a huge message is never read, and a
                # crash leaves it in one place or the other.
                _move_regular_file(self.path / ref, folder / "new" / Path(ref).name)
        for ref in kept:
            if ref.startswith("new/"):
                name = ref.removeprefix("new/")
                _move_regular_file(self.path / ref, self.path / "cur" / _seen_by_us(name))
        return {ref: self.name for ref in kept}

    def _processed_folder(self) -> mailbox.Maildir:
        if PROCESSED_FOLDER in self.box.list_folders():
            return self.box.get_folder(PROCESSED_FOLDER)
        return self.box.add_folder(PROCESSED_FOLDER)

    def close(self) -> None:
        self.box.close()


def _seen_by_us(name: str) -> str:
    # A Maildir message in cur/ carries an info part; ":2," says "no flags": still unread.
    return name if ":" in name else name + ":2,"


def _move_regular_file(source: Path, target: Path) -> None:
    try:
        if stat.S_ISREG(source.lstat().st_mode):  # replaced meanwhile: not ours to move
            os.rename(source, target)
    except OSError:
        pass  # gone meanwhile: someone else tidied it


def _maildir_entries(path: Path) -> Iterator[str]:
    """Yield `new/<name>` then `cur/<name>` for every entry of a Maildir's inbox, in order."""
    for sub in ("new", "cur"):
        with os.scandir(path / sub) as entries:
            yield from sorted(f"{sub}/{entry.name}" for entry in entries)


def read_regular_file(path: Path, limit: int | None = None) -> bytes | None:
    """Return the bytes of a regular file (at most `limit`); None for anything else."""
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
        return file.read() if limit is None else file.read(limit)


class MboxSource:
    """An mbox file, locked while read; processed messages move to `<file>.processed`.

    Without the lock nothing is read: finishing rewrites the file, which without the lock
    could drop a message the delivery agent appends meanwhile, and reading while it writes
    could act on half a message. A lock held elsewhere or a folder where the rewritten file
    cannot be written is one line of error before anything is acted on.
    """

    def __init__(self, path: Path, *, limit: int = DEFAULT_LIMIT) -> None:
        self.name = str(path)
        self.path = path
        _check_writable_folder(path)
        self.box = mailbox.mbox(path, create=False)
        try:
            _lock(self.box, path)
        except InputError:
            self.box.close()
            raise
        keys = list(self.box.keys())
        self._keys = keys[:limit]
        self.left = len(keys) - len(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def messages(self) -> Iterator[Returned]:
        for key in self._keys:
            with self.box.get_file(key) as file:
                data = file.read(MAX_MESSAGE_BYTES)
            yield Returned(str(key), data.replace(os.linesep.encode(), b"\n"))

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            archive = mailbox.mbox(self.path.with_name(self.path.name + ".processed"))
            archive.lock()
            try:
                for key in processed:
                    # Copied line by line from the file: a huge message is never held whole.
                    with self.box.get_file(_mbox_key(key)) as file:
                        archive.add(file)
                archive.flush()
            finally:
                archive.unlock()
                archive.close()
            for key in processed:
                self.box.remove(_mbox_key(key))
            self.box.flush()
        return {key: self.name for key in kept}

    def close(self) -> None:
        self.box.unlock()
        self.box.close()


def _mbox_key(key: str) -> str:
    """Return the mbox's key of a message named by `messages`."""
    # An mbox numbers its messages: its keys are ints, which typeshed types as str.
    return cast(str, int(key))


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

    left = 0

    def __init__(self, stream: IO[bytes], keep_dir: Path) -> None:
        self.name = "-"
        data = stream.read(MAX_MESSAGE_BYTES)
        # The rest is read and dropped: the MTA must see the whole message taken.
        while stream.read(_CHUNK):
            pass
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
    """An IMAP folder over TLS; understood messages are flagged \\Seen \\Deleted, others left.

    Each message is fetched in part (its first MAX_MESSAGE_BYTES) and unread; a kept one gets
    the private keyword KEPT_KEYWORD, so the next run fetches new mail first.
    """

    def __init__(
        self,
        url: str,
        *,
        connect: Callable[..., Any] | None = None,
        password: str | None = None,
        limit: int = DEFAULT_LIMIT,
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
            uids = self._search("UNKEYWORD", KEPT_KEYWORD) + self._search("KEYWORD", KEPT_KEYWORD)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise NewsletterError(f"{self.name}: {exc}") from exc
        self._uids = list(dict.fromkeys(uids))[:limit]
        self.left = len(set(uids)) - len(self._uids)

    def _search(self, *criteria: str) -> list[str]:
        typ, data = self.conn.uid("SEARCH", "UNDELETED", *criteria)
        return [u.decode() for u in (data[0] or b"").split()] if typ == "OK" and data else []

    def __len__(self) -> int:
        return len(self._uids)

    def messages(self) -> Iterator[Returned]:
        for uid in self._uids:
            # BODY.PEEK leaves \Seen alone: a message not understood looks untouched.
            try:
                typ, data = self.conn.uid("FETCH", uid, f"(BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>)")
            except (imaplib.IMAP4.error, OSError) as exc:
                raise NewsletterError(f"{self.name}: reading message {uid}: {exc}") from exc
            raw = next((p[1] for p in data or [] if isinstance(p, tuple)), None)
            if typ == "OK" and raw is not None:
                yield Returned(uid, bytes(raw[:MAX_MESSAGE_BYTES]))

    def finish(self, processed: list[str], kept: list[str]) -> dict[str, str]:
        if processed:
            uids = ",".join(processed)
            self.conn.uid("STORE", uids, "+FLAGS", "(\\Seen \\Deleted)")
            typ, caps = self.conn.capability()
            if typ == "OK" and b"UIDPLUS" in b" ".join(caps or []).upper():
                self.conn.uid("EXPUNGE", uids)  # only ours, never others' \Deleted mail
        if kept:
            try:  # a server that takes no keywords reads kept mail in order, as before
                self.conn.uid("STORE", ",".join(kept), "+FLAGS", f"({KEPT_KEYWORD})")
            except imaplib.IMAP4.error:
                pass
        return {uid: self.name for uid in kept}

    def close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


class LimitedImap(imaplib.IMAP4_SSL):
    """imaplib over TLS with limits on what a server may send: lines, literals, replies."""

    _budget = IMAP_MAX_REPLY

    def send(self, data: ReadableBuffer) -> None:
        self._budget = IMAP_MAX_REPLY  # each command's reply gets its own allowance
        super().send(data)

    def readline(self) -> bytes:
        line = self.file.readline(IMAP_MAX_LINE + 1)
        if len(line) > IMAP_MAX_LINE:
            raise self.abort(f"the server sent a line longer than {IMAP_MAX_LINE} bytes")
        self._spend(len(line))
        return line

    def read(self, size: int) -> bytes:
        if size > IMAP_MAX_LITERAL:
            raise self.abort(f"the server sent {size} bytes where at most {IMAP_MAX_LITERAL} fit")
        self._spend(size)
        return super().read(size)

    def _spend(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            raise self.abort(f"the server's reply ran past {IMAP_MAX_REPLY} bytes")


def _imap_tls(host: str, port: int) -> imaplib.IMAP4_SSL:
    return LimitedImap(host, port, ssl_context=ssl.create_default_context(), timeout=60)


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
    limit = settings.bounce_max_messages
    if path.is_dir():
        return MaildirSource(path, limit=limit)
    if path.is_file():
        return MboxSource(path, limit=limit)
    raise InputError(f"{spec}: no such Maildir or mbox file")
