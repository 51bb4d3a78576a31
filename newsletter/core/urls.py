"""The URLs that carry passwords (database, SMTP transport, IMAP): one parse, one mask each.

Each mask uses the parse its reader uses, so the password it hides is the one the reader
would send. A URL the reader cannot parse is masked whole after the scheme: its password
could be anywhere in it (an unencoded "/", "?" or "#" moves it into the path or query).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

MASK = "****"
IMAP_PORT = 993


class UrlError(ValueError):
    """A URL its reader cannot use; the message says why and never quotes the URL."""


class SmtpUrl(NamedTuple):
    """An smtp:// or smtps:// transport as the SMTP transport reads it."""

    scheme: str
    host: str
    port: int | None
    username: str
    password: str
    query: str


class ImapUrl(NamedTuple):
    """An imaps:// folder as the IMAP reader reads it."""

    host: str
    port: int
    username: str
    password: str
    folder: str


def split_smtp_url(spec: str) -> SmtpUrl:
    """Parse smtp://USER:PASSWORD@HOST:PORT?OPTIONS; raise UrlError saying what is wrong."""
    parts = _split(spec)
    port = _port(parts)
    if not parts.hostname:
        raise UrlError("needs a host, e.g. smtp://mail.example.org:587")
    if parts.path not in ("", "/") or parts.fragment:
        raise UrlError("unexpected path after the host")
    return SmtpUrl(
        parts.scheme.lower(),
        parts.hostname,
        port,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
        parts.query,
    )


def split_imap_url(url: str) -> ImapUrl:
    """Parse imaps://USER[:PASSWORD]@HOST[:PORT]/FOLDER; raise UrlError saying what is wrong."""
    parts = _split(url)
    if parts.scheme.lower() != "imaps":
        raise UrlError("IMAP is read over TLS only: use imaps://user@host/folder")
    port = _port(parts) or IMAP_PORT
    if not parts.hostname or not parts.username:
        raise UrlError("needs a user and a host: imaps://user@host/folder")
    if parts.query or parts.fragment:
        raise UrlError("unexpected ? or # after the folder")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapUrl(
        parts.hostname, port, unquote(parts.username), unquote(parts.password or ""), folder
    )


def mask_transport_url(spec: str) -> str:
    """Return a transport spec with its password hidden, as the SMTP transport reads it."""
    if "://" not in spec:
        return spec  # maildir:PATH holds no password
    try:
        split_smtp_url(spec)
    except UrlError:
        return masked_whole(spec)
    return _mask_netloc(spec, urlsplit(spec))


def mask_imap_url(url: str) -> str:
    """Return an IMAP URL with its password hidden, as the IMAP reader reads it."""
    try:
        split_imap_url(url)
    except UrlError:
        return masked_whole(url)
    return _mask_netloc(url, urlsplit(url))


def mask_database_url(url: str) -> str:
    """Return a database URL with its password hidden, as SQLAlchemy reads it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return masked_whole(url)
    if parsed.password is None:
        return url
    if "@" in (parsed.host or ""):  # a second "@" in the password: the host holds the rest
        return masked_whole(url)
    return parsed.render_as_string(hide_password=True)


def mask_url_password(url: str) -> str:
    """Replace the password in another URL (an http:// one) with ****."""
    try:
        parts = _split(url)
        _port(parts)
    except UrlError:
        return masked_whole(url)
    return _mask_netloc(url, parts)


def masked_whole(url: str) -> str:
    """Keep only the scheme of a URL whose password cannot be told apart."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://{MASK}" if sep and scheme.isascii() and scheme.isalnum() else MASK


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UrlError("not a URL") from exc
    # An "@" after the host means the user part was cut short by a "/", "?" or "#".
    if "@" in parts.path + parts.query + parts.fragment:
        raise UrlError(
            "an unencoded '/', '?', '#' or '@' in the user or password: "
            "write them as %2F, %3F, %23 and %40"
        )
    return parts


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise UrlError("the port must be a number from 1 to 65535") from None


def _mask_netloc(url: str, parts: SplitResult) -> str:
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return parts._replace(netloc=f"{user}:{MASK}@{hostport}").geturl()
