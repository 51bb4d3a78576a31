"""Sign what a returned message may carry back: the return path and the Message-ID.

Each message goes out with the envelope sender `bounces+<token>@<bounce domain>` (once
`bounce_domain` is set) and the Message-ID `<<token>.<random>@<From domain>>`. Both tokens
name the delivery (`<id in base 36>-<mac>`) and are signed with the secret key, under a salt
of their own: a bounce maps to its row even when the reporting server rewrote the recipient,
and a forged bounce cannot name someone else's row. The Message-ID reaches us in the
returned original that a report quotes, so even a report sent to the plain From address
proves which delivery it is about, with nothing stored.
"""

from __future__ import annotations

import base64
import hmac
import re
from email.utils import parseaddr

from newsletter.content.mime import envelope_sender, make_message_id
from newsletter.core.config import Settings
from newsletter.core.tokens import keyed_digest

DEFAULT_VERP_PREFIX = "bounces"
VERP_SALT = b"newsletter.verp"
MESSAGE_ID_SALT = b"newsletter.message-id"
# 60 bits of MAC: forging one address takes ~2^60 tries, each needing a bounce we read.
MAC_CHARS = 12
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(rf"^([0-9a-z]{{1,13}})-([a-z2-7]{{{MAC_CHARS}}})$")
# A Message-ID of ours wherever a report quotes it: the token, a dot, the random part, "@".
_QUOTED_ID = re.compile(
    rb"(?<![0-9a-z])([0-9a-z]{1,13}-[a-z2-7]{%d})\.[0-9a-f]{16,64}@" % MAC_CHARS, re.IGNORECASE
)


def verp_prefix(settings: Settings) -> str:
    """Return the local part before the "+" of return paths (setting `bounce_prefix`)."""
    return settings.bounce_prefix.lower()


def verp_enabled(settings: Settings) -> bool:
    """Tell whether messages go out with signed return paths: only once `bounce_domain` is set."""
    # The operator routes bounces back to us only when they name the domain; else the plain
    # From address is the envelope sender (the same test as the message preparer's).
    return bool(settings.bounce_domain)


def bounce_domain(settings: Settings) -> str:
    """Return the domain bounces come back to: setting `bounce_domain`, else the From domain."""
    configured = settings.bounce_domain.lower()
    return configured or envelope_sender(settings).rpartition("@")[2].lower()


def _mac(secret_key: str, ident: str, salt: bytes = VERP_SALT) -> str:
    if not secret_key:
        raise ValueError("settings.secret_key is empty: return paths cannot be signed")
    digest = keyed_digest(secret_key, salt, ident.encode())
    # Lowercase base32: some servers lowercase local parts, so the token must survive it.
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _BASE36[rest] + digits
        if not number:
            return digits


def verp_token(settings: Settings, delivery_id: int, salt: bytes = VERP_SALT) -> str:
    """Return the signed token naming one delivery: `<id in base 36>-<mac>`."""
    if delivery_id < 0:
        raise ValueError("delivery ids are not negative")
    ident = _base36(delivery_id)
    return f"{ident}-{_mac(settings.secret_key, ident, salt)}"


def verp_address(settings: Settings, delivery_id: int) -> str:
    """Return the envelope sender of one delivery: `bounces+<token>@<bounce domain>`."""
    return f"{verp_prefix(settings)}+{verp_token(settings, delivery_id)}@{bounce_domain(settings)}"


def token_delivery_id(settings: Settings, token: str, salt: bytes = VERP_SALT) -> int | None:
    """Return the delivery id a token names, or None when it is malformed or forged."""
    match = _TOKEN.match(token.strip().lower())
    if match is None:
        return None
    ident, mac = match.groups()
    if not hmac.compare_digest(mac, _mac(settings.secret_key, ident, salt)):
        return None
    return int(ident, 36)


def parse_verp(settings: Settings, address: str) -> int | None:
    """Return the delivery id of a VERP return path, or None for any other or forged address."""
    token = token_in_address(address, verp_prefix(settings))
    return token_delivery_id(settings, token) if token else None


def token_in_address(address: str, prefix: str = DEFAULT_VERP_PREFIX) -> str | None:
    """Return the token of `<prefix>+<token>@...` (any domain), or None."""
    bare = parseaddr(address)[1] or address.strip().strip("<>")
    local, at, _ = bare.rpartition("@")
    head, plus, token = local.partition("+")
    if not at or not plus or head.lower() != prefix or not token:
        return None
    return token.lower()


# --- the Message-ID --------------------------------------------------------------------


def delivery_message_id(settings: Settings, delivery_id: int) -> str:
    """Return a new Message-ID that names one delivery: `<<token>.<random>@<From domain>>`."""
    token = verp_token(settings, delivery_id, MESSAGE_ID_SALT)
    return f"<{token}.{make_message_id(settings)[1:]}"


def quoted_message_tokens(data: bytes) -> tuple[str, ...]:
    """Return the tokens of every Message-ID of ours a report quotes, first seen first.

    Unverified: `message_id_delivery_id` tells which one, if any, we signed.
    """
    return tuple(dict.fromkeys(m.group(1).decode().lower() for m in _QUOTED_ID.finditer(data)))


def message_id_delivery_id(settings: Settings, token: str) -> int | None:
    """Return the delivery a Message-ID's token names, or None when we did not sign it."""
    return token_delivery_id(settings, token, MESSAGE_ID_SALT)
