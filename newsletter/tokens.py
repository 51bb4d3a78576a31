"""Signed tokens for the links in emails, with a salt per purpose, and the URLs that carry them."""

from __future__ import annotations

import hmac
from datetime import date
from functools import lru_cache

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    Signer,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm

from newsletter.config import Settings
from newsletter.errors import InputError

# Unsubscribe links must keep working forever (RFC 8058, old emails); the rest may expire.
UNTIMED_PURPOSES = frozenset({"unsubscribe", "manage"})
TIMED_PURPOSES = frozenset({"confirm"})
PURPOSES = UNTIMED_PURPOSES | TIMED_PURPOSES
INVALID_LINK = "invalid or expired link"
TOKEN_CACHE_SIZE = 256
MAX_PLAIN_ID = 10**10


@lru_cache(maxsize=64)
def _serializer(secret_key: str, purpose: str) -> URLSafeSerializer:
    # Cached because the sender signs one unsubscribe and one manage token per message.
    salt = f"newsletter.{purpose}"
    if purpose in TIMED_PURPOSES:
        return URLSafeTimedSerializer(secret_key, salt=salt)
    return URLSafeSerializer(secret_key, salt=salt)


def _serializer_for(settings: Settings, purpose: str) -> URLSafeSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose: {purpose!r}")
    if not settings.secret_key:
        raise ValueError("settings.secret_key is empty: tokens cannot be signed")
    return _serializer(settings.secret_key, purpose)


@lru_cache(maxsize=64)
def _signer(secret_key: str, purpose: str) -> Signer:
    return _serializer(secret_key, purpose).make_signer()


@lru_cache(maxsize=64)
def _keyed_mac(secret_key: str, purpose: str) -> hmac.HMAC | None:
    """Return an HMAC already keyed with the signer's derived key, to copy per token."""
    signer = _signer(secret_key, purpose)
    algorithm = signer.algorithm
    if type(signer) is not Signer or signer.sep != b"." or not isinstance(algorithm, HMACAlgorithm):
        return None
    return hmac.new(signer.derive_key(), digestmod=algorithm.digest_method)


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _untimed_token(secret_key: str, purpose: str, subscriber_id: int) -> str:
    # Cached: one message carries the unsubscribe token in its body, header and mailto.
    if 0 <= subscriber_id < MAX_PLAIN_ID:
        # What dump_payload gives: zlib cannot shorten ten digits, so they are not compressed.
        payload = base64_encode(str(subscriber_id))
    else:
        payload = _serializer(secret_key, purpose).dump_payload(subscriber_id)
    mac = _keyed_mac(secret_key, purpose)
    if mac is None:
        return _signer(secret_key, purpose).sign(payload).decode("ascii")
    # Same bytes as Signer.sign(), without deriving the key again for every token.
    mac = mac.copy()
    mac.update(payload)
    return (payload + b"." + base64_encode(mac.digest())).decode("ascii")


def make_token(settings: Settings, purpose: str, subscriber_id: int) -> str:
    """Sign a subscriber id for one purpose ("unsubscribe", "manage" or "confirm")."""
    serializer = _serializer_for(settings, purpose)
    if purpose in UNTIMED_PURPOSES:
        return _untimed_token(settings.secret_key, purpose, int(subscriber_id))
    # Same bytes as serializer.dumps(), without building a new signer for every message.
    payload = serializer.dump_payload(int(subscriber_id))
    return _signer(settings.secret_key, purpose).sign(payload).decode("ascii")


def read_token(settings: Settings, purpose: str, token: str, max_age: int | None = None) -> int:
    """Return the subscriber id in a token, or raise InputError if it is forged or expired."""
    serializer = _serializer_for(settings, purpose)
    try:
        if isinstance(serializer, URLSafeTimedSerializer):
            value = serializer.loads(token, max_age=max_age)
        else:
            value = serializer.loads(token)
    except (SignatureExpired, BadSignature) as exc:
        raise InputError(INVALID_LINK) from exc
    # A valid signature over something else (never issued by make_token) is still no id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(INVALID_LINK)
    return value


def _link(settings: Settings, path: str) -> str:
    return f"{settings.base_url.rstrip('/')}/{path}"


def unsubscribe_url(settings: Settings, subscriber_id: int) -> str:
    """Return the one-click unsubscribe URL of a subscriber (also the RFC 8058 POST target)."""
    return _link(settings, f"unsubscribe/{make_token(settings, 'unsubscribe', subscriber_id)}")


def manage_url(settings: Settings, subscriber_id: int) -> str:
    """Return the preferences URL of a subscriber."""
    return _link(settings, f"manage/{make_token(settings, 'manage', subscriber_id)}")


def confirm_url(settings: Settings, subscriber_id: int) -> str:
    """Return the double opt-in confirmation URL of a subscriber."""
    return _link(settings, f"confirm/{make_token(settings, 'confirm', subscriber_id)}")


def archive_url(settings: Settings, listing_date: date) -> str:
    """Return the public web copy of the edition of one day."""
    return _link(settings, f"archive/{listing_date.isoformat()}")
