"""Signed tokens for the links in emails, with a salt per purpose, and the URLs that carry them.

A token names a subscriber by id *and* by the random link key stored on their row, so it dies
with the subscription: deleting the row, or rotating the key when someone subscribes again,
turns every earlier link into an invalid one, whatever id a later row gets.

What each purpose can do, and for how long:
- "unsubscribe": unsubscribe, and undo that; no expiry (RFC 8058: old emails must work).
- "manage": change preferences, download or delete the data; no expiry.
- "start": vote on the papers of the reader's first round (the page after confirming); no
  expiry.
- "confirm": confirm the one sign-up it was sent for (its consent event's id is signed in
  it); valid for `confirm_max_age_hours`.

Every other use of the secret key asks this module too, each under a purpose of its own, so
that no value signed for one use is valid for another: the web forms' CSRF values (`signer`,
purpose "csrf", time-stamped) and raw keyed digests (`keyed_digest`: the signed return paths
and Message-IDs, the rate-limit keys).
"""

from __future__ import annotations

import binascii
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, BadSignature, SignatureExpired, Signer, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.signer import HMACAlgorithm

from newsletter.core.config import Settings
from newsletter.core.errors import InputError

UNTIMED_PURPOSES = frozenset({"unsubscribe", "manage", "feedback", "start"})
TIMED_PURPOSES = frozenset({"confirm"})
PURPOSES = UNTIMED_PURPOSES | TIMED_PURPOSES
FORM_PURPOSES = frozenset({"csrf"})  # signed by `signer`, never a link token; time-stamped
INVALID_LINK = "invalid or expired link"
TOKEN_CACHE_SIZE = 256
_CLAIM = re.compile(r"(\d{1,18})\.([A-Za-z0-9_-]{1,64})")
# A claim and one more id: the paper of a vote link, the sign-up of a confirmation link.
_CLAIM_WITH_ID = re.compile(r"(\d{1,18})\.([A-Za-z0-9_-]{1,64})\.(\d{1,18})")
# What make_token writes: base64's "+" and "/" would decode like "-" and "_", so one token
# would have many spellings.
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_IPAD = bytes(b ^ 0x36 for b in range(256))  # RFC 2104: the key XOR-ed with each pad
_OPAD = bytes(b ^ 0x5C for b in range(256))
_URLSAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: the subscriber's id and the link key it was made for."""

    subscriber_id: int
    key: str


@lru_cache(maxsize=64)
def _signer(secret_key: str, purpose: str) -> Signer:
    if purpose in TIMED_PURPOSES | FORM_PURPOSES:
        return _timestamp_signer(secret_key, purpose)
    return Signer(secret_key, salt=f"newsletter.{purpose}")


@lru_cache(maxsize=16)
def _timestamp_signer(secret_key: str, purpose: str) -> TimestampSigner:
    return TimestampSigner(secret_key, salt=f"newsletter.{purpose}")


def form_signer(settings: Settings, purpose: str = "csrf") -> TimestampSigner:
    """Return the time-stamping signer of a form purpose ("csrf"); ValueError otherwise."""
    if purpose not in FORM_PURPOSES:
        raise ValueError(f"unknown form purpose: {purpose!r}")
    if not settings.secret_key:
        raise ValueError("settings.secret_key is empty: forms cannot be signed")
    return _timestamp_signer(settings.secret_key, purpose)


def keyed_digest(secret_key: str, purpose: bytes, message: bytes) -> bytes:
    """Return HMAC-SHA256 of `purpose:message` under the secret key: one purpose per use."""
    if not secret_key:
        raise ValueError("settings.secret_key is empty: nothing can be signed")
    return hmac.new(secret_key.encode(), purpose + b":" + message, "sha256").digest()


def _signer_for(settings: Settings, purpose: str) -> Signer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose: {purpose!r}")
    if not settings.secret_key:
        raise ValueError("settings.secret_key is empty: tokens cannot be signed")
    return _signer(settings.secret_key, purpose)


@dataclass(frozen=True, slots=True)
class _KeyedMac:
    """HMAC (RFC 2104) with the key's inner and outer blocks hashed once, for many messages.

    The same bytes as hmac.new(key, msg, digest).digest(), for a third of the cost: a vote link
    per paper makes ten of them per email.
    """

    inner: Any  # hashlib objects, copied per message
    outer: Any

    @classmethod
    def new(cls, key: bytes, digest: Callable[..., Any]) -> _KeyedMac:
        inner, outer = digest(), digest()
        if len(key) > inner.block_size:
            key = digest(key).digest()
        key = key.ljust(inner.block_size, b"\0")
        inner.update(key.translate(_IPAD))
        outer.update(key.translate(_OPAD))
        return cls(inner, outer)

    def sign(self, message: bytes) -> bytes:
        """Return the URL-safe base64 of the MAC, unpadded, as itsdangerous writes it."""
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return binascii.b2a_base64(outer.digest(), newline=False).translate(_URLSAFE).rstrip(b"=")


@lru_cache(maxsize=64)
def _keyed_mac(secret_key: str, purpose: str) -> _KeyedMac | None:
    """Return the MAC of the signer's derived key, or None where the signer is not plain HMAC."""
    signer = _signer(secret_key, purpose)
    algorithm = signer.algorithm
    if type(signer) is not Signer or signer.sep != b"." or not isinstance(algorithm, HMACAlgorithm):
        return None
    key = signer.derive_key()
    mac = _KeyedMac.new(key, algorithm.digest_method)
    check = b"0.check"
    if mac.sign(check) != base64_encode(hmac.new(key, check, algorithm.digest_method).digest()):
        return None  # a digest whose objects do not copy as hashlib's do: sign the slow way
    return mac


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _untimed_token(secret_key: str, purpose: str, subscriber_id: int, key: str) -> str:
    # Cached: one message carries the unsubscribe token in its body, header and mailto.
    return _sign_fast(secret_key, purpose, f"{subscriber_id}.{key}")


def _sign_fast(secret_key: str, purpose: str, value: str) -> str:
    payload = value.encode("ascii")
    mac = _keyed_mac(secret_key, purpose)
    if mac is None:
        return _signer(secret_key, purpose).sign(payload).decode("ascii")
    # Same bytes as Signer.sign(), without deriving the key again for every token.
    return (payload + b"." + mac.sign(payload)).decode("ascii")


def make_token(settings: Settings, purpose: str, subscriber_id: int, key: str) -> str:
    """Sign a subscriber's id and link key for one purpose."""
    signer = _signer_for(settings, purpose)
    if not _CLAIM.fullmatch(f"{int(subscriber_id)}.{key}"):
        raise ValueError("a link key is 1 to 64 URL-safe characters")
    if purpose in UNTIMED_PURPOSES:
        return _untimed_token(settings.secret_key, purpose, int(subscriber_id), key)
    return signer.sign(f"{int(subscriber_id)}.{key}").decode("ascii")


def make_confirm_token(settings: Settings, subscriber_id: int, key: str, signup_id: int) -> str:
    """Sign a confirmation link: the subscriber, their link key and the sign-up it confirms."""
    signer = _signer_for(settings, "confirm")
    value = f"{int(subscriber_id)}.{key}.{int(signup_id)}"
    if not _CLAIM_WITH_ID.fullmatch(value):
        raise ValueError("a link key is 1 to 64 URL-safe characters")
    return signer.sign(value).decode("ascii")


def read_confirm_token(settings: Settings, token: str, max_age: int) -> tuple[LinkClaim, int]:
    """Return the subscriber and the sign-up a confirmation link names, or raise InputError.

    A link of the older form, which named no sign-up, is refused: it would confirm whatever
    anyone typed last.
    """
    value = _unsign(settings, "confirm", token, max_age, payload_parts=3)
    match = _CLAIM_WITH_ID.fullmatch(value)
    if match is None:
        raise InputError(INVALID_LINK)
    return LinkClaim(int(match[1]), match[2]), int(match[3])


def make_paper_token(
    settings: Settings, subscriber_id: int, key: str, paper_id: int
) -> str:
    """Sign a subscriber's vote link for one paper ("feedback")."""
    _signer_for(settings, "feedback")
    value = f"{int(subscriber_id)}.{key}.{int(paper_id)}"
    if not _CLAIM_WITH_ID.fullmatch(value):
        raise ValueError("a link key is 1 to 64 URL-safe characters")
    return _sign_fast(settings.secret_key, "feedback", value)


def feedback_url_maker(settings: Settings, subscriber_id: int, key: str) -> Callable[[int], str]:
    """Return paper id -> a reader's vote link, the same as feedback_url, made fast.

    A digest signs one link per paper: the reader's part is checked and encoded once.
    """
    _signer_for(settings, "feedback")
    prefix = f"{int(subscriber_id)}.{key}."
    if not _CLAIM.fullmatch(prefix[:-1]):
        raise ValueError("a link key is 1 to 64 URL-safe characters")
    keyed = _keyed_mac(settings.secret_key, "feedback")
    base = _link(settings, "feedback/")
    if keyed is None:
        return lambda paper_id: feedback_url(settings, subscriber_id, key, paper_id)
    head = prefix.encode("ascii")

    sign = keyed.sign

    def url(paper_id: int) -> str:
        payload = head + b"%d" % int(paper_id)
        return base + (payload + b"." + sign(payload)).decode("ascii")

    return url


def read_paper_token(settings: Settings, token: str) -> tuple[LinkClaim, int]:
    """Return the subscriber and the paper a vote link names, or raise InputError."""
    value = _unsign(settings, "feedback", token, None, payload_parts=3)
    match = _CLAIM_WITH_ID.fullmatch(value)
    if match is None:
        raise InputError(INVALID_LINK)
    return LinkClaim(int(match[1]), match[2]), int(match[3])


def _unsign(
    settings: Settings, purpose: str, token: str, max_age: int | None, *, payload_parts: int
) -> str:
    signer = _signer_for(settings, purpose)
    if not _TOKEN.fullmatch(token) or not all(map(_canonical, token.split(".")[payload_parts:])):
        raise InputError(INVALID_LINK)
    try:
        if isinstance(signer, TimestampSigner):
            value = signer.unsign(token, max_age=max_age)
        else:
            value = signer.unsign(token)
    except (SignatureExpired, BadSignature, UnicodeError) as exc:
        raise InputError(INVALID_LINK) from exc
    return value.decode("ascii", "replace")


def read_token(
    settings: Settings, purpose: str, token: str, max_age: int | None = None
) -> LinkClaim:
    """Return what a token claims, or raise InputError if it is forged, mangled or expired."""
    value = _unsign(settings, purpose, token, max_age, payload_parts=2)
    match = _CLAIM.fullmatch(value)
    if match is None:  # signed, but never by make_token (e.g. a token of the old format)
        raise InputError(INVALID_LINK)
    return LinkClaim(int(match[1]), match[2])


def _canonical(segment: str) -> bool:
    """Tell whether a base64 segment is spelled as it is written (unused bits zero)."""
    # base64 decoding ignores the padding bits of the last character: without this check a
    # changed last character could still be a valid token.
    try:
        return base64_encode(base64_decode(segment)).decode("ascii") == segment
    except BadData:
        return False


def _link(settings: Settings, path: str) -> str:
    return f"{settings.base_url.rstrip('/')}/{path}"


def unsubscribe_url(settings: Settings, subscriber_id: int, key: str) -> str:
    """Return the one-click unsubscribe URL of a subscriber (also the RFC 8058 POST target)."""
    return _link(settings, f"unsubscribe/{make_token(settings, 'unsubscribe', subscriber_id, key)}")


def manage_url(settings: Settings, subscriber_id: int, key: str) -> str:
    """Return the preferences URL of a subscriber."""
    return _link(settings, f"manage/{make_token(settings, 'manage', subscriber_id, key)}")


def confirm_url(settings: Settings, subscriber_id: int, key: str, signup_id: int) -> str:
    """Return the double opt-in confirmation URL of one sign-up of a subscriber."""
    token = make_confirm_token(settings, subscriber_id, key, signup_id)
    return _link(settings, f"confirm/{token}")


def feedback_url(settings: Settings, subscriber_id: int, key: str, paper_id: int) -> str:
    """Return a subscriber's vote link for one paper; /more or /less is appended to it."""
    token = make_paper_token(settings, subscriber_id, key, paper_id)
    return _link(settings, f"feedback/{token}")


def archive_url(settings: Settings, listing_date: date) -> str:
    """Return the public web copy of the edition of one day."""
    return _link(settings, f"archive/{listing_date.isoformat()}")
