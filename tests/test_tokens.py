"""Signed tokens: round trips, tampering, purposes, expiry and the URL scheme."""

from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest
from itsdangerous import TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from newsletter import tokens
from newsletter.config import Settings
from newsletter.errors import InputError


class _TwoDaysAgoSigner(TimestampSigner):
    """Sign as if the clock were two days behind."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 2 * 86400


@pytest.mark.parametrize("purpose", ["unsubscribe", "manage", "confirm"])
def test_token_round_trip(settings: Settings, purpose: str) -> None:
    token = tokens.make_token(settings, purpose, 4711)
    assert tokens.read_token(settings, purpose, token, max_age=3600) == 4711


@pytest.mark.parametrize("purpose", ["unsubscribe", "manage"])
@pytest.mark.parametrize("subscriber_id", [0, 7, 4711, 9_999_999_999, 11_111_111_111_111_111])
def test_tokens_are_plain_itsdangerous_tokens(
    settings: Settings, purpose: str, subscriber_id: int
) -> None:
    serializer = URLSafeSerializer(settings.secret_key, salt=f"newsletter.{purpose}")
    assert tokens.make_token(settings, purpose, subscriber_id) == serializer.dumps(subscriber_id)


def test_tampered_token_is_rejected(settings: Settings) -> None:
    token = tokens.make_token(settings, "unsubscribe", 42)
    payload, signature = token.rsplit(".", 1)
    forged_payload = tokens.make_token(settings, "unsubscribe", 43).rsplit(".", 1)[0]
    for bad in (forged_payload + "." + signature, payload + "." + signature[::-1], token + "x", ""):
        with pytest.raises(InputError, match="invalid or expired link"):
            tokens.read_token(settings, "unsubscribe", bad)


def test_token_of_another_purpose_is_rejected(settings: Settings) -> None:
    manage = tokens.make_token(settings, "manage", 42)
    with pytest.raises(InputError, match="invalid or expired link"):
        tokens.read_token(settings, "unsubscribe", manage)
    unsubscribe = tokens.make_token(settings, "unsubscribe", 42)
    with pytest.raises(InputError):
        tokens.read_token(settings, "confirm", unsubscribe, max_age=3600)


def test_token_signed_with_another_key_is_rejected(settings: Settings) -> None:
    other = dataclasses.replace(settings, secret_key="another-secret")
    token = tokens.make_token(other, "unsubscribe", 42)
    with pytest.raises(InputError):
        tokens.read_token(settings, "unsubscribe", token)


def test_unsubscribe_token_has_no_timestamp(settings: Settings) -> None:
    token = tokens.make_token(settings, "unsubscribe", 42)
    # Untimed itsdangerous tokens are "payload.signature"; timed ones add a third part.
    assert token.count(".") == 1
    assert token == tokens.make_token(settings, "unsubscribe", 42)
    assert tokens.read_token(settings, "unsubscribe", token, max_age=0) == 42


def test_confirm_token_expires(settings: Settings) -> None:
    token = URLSafeTimedSerializer(
        settings.secret_key, salt="newsletter.confirm", signer=_TwoDaysAgoSigner
    ).dumps(42)
    assert tokens.read_token(settings, "confirm", token, max_age=3 * 86400) == 42
    with pytest.raises(InputError, match="invalid or expired link"):
        tokens.read_token(settings, "confirm", token, max_age=86400)


def test_signed_non_integer_payload_is_rejected(settings: Settings) -> None:
    serializer = tokens._serializer(settings.secret_key, "unsubscribe")
    with pytest.raises(InputError):
        tokens.read_token(settings, "unsubscribe", serializer.dumps("42"))
    with pytest.raises(InputError):
        tokens.read_token(settings, "unsubscribe", serializer.dumps(True))


def test_unknown_purpose_is_a_programming_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens.make_token(settings, "login", 1)


def test_url_scheme(settings: Settings) -> None:
    base = "https://news.example.test"
    unsubscribe = tokens.unsubscribe_url(settings, 7)
    manage = tokens.manage_url(settings, 7)
    confirm = tokens.confirm_url(settings, 7)
    assert unsubscribe.startswith(base + "/unsubscribe/")
    assert manage.startswith(base + "/manage/")
    assert confirm.startswith(base + "/confirm/")
    assert tokens.read_token(settings, "unsubscribe", unsubscribe.rsplit("/", 1)[1]) == 7
    assert tokens.read_token(settings, "manage", manage.rsplit("/", 1)[1]) == 7
    assert tokens.read_token(settings, "confirm", confirm.rsplit("/", 1)[1], max_age=60) == 7
    assert tokens.archive_url(settings, date(2025, 11, 27)) == base + "/archive/2025-11-27"


def test_trailing_slash_in_base_url_is_not_doubled(settings: Settings) -> None:
    slashed = dataclasses.replace(settings, base_url="https://news.example.test/")
    assert (
        tokens.archive_url(slashed, date(2025, 1, 2))
        == "https://news.example.test/archive/2025-01-02"
    )
