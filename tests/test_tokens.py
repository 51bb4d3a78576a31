"""Signed tokens: round trips, tampering, purposes, expiry, link keys and the URL scheme."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import time
from datetime import date

import pytest
from itsdangerous import Signer, TimestampSigner
from itsdangerous.encoding import base64_encode

from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.core.errors import InputError
from newsletter.core.models import new_link_key

KEY = "k3y-Of_a-Subscr1"


class _TwoDaysAgoSigner(TimestampSigner):
    """Sign as if the clock were two days behind."""

    def get_timestamp(self) -> int:
        return int(time.time()) - 2 * 86400


@pytest.mark.parametrize("purpose", ["unsubscribe", "manage", "confirm"])
def test_token_round_trip(settings: Settings, purpose: str) -> None:
    token = tokens.make_token(settings, purpose, 4711, KEY)
    assert tokens.read_token(settings, purpose, token, max_age=3600) == tokens.LinkClaim(4711, KEY)


@pytest.mark.parametrize("purpose", ["unsubscribe", "manage"])
@pytest.mark.parametrize("subscriber_id", [0, 7, 4711, 9_999_999_999, 11_111_111_111_111_111])
def test_tokens_are_plain_itsdangerous_signatures(
    settings: Settings, purpose: str, subscriber_id: int
) -> None:
    # The fast path must give the same bytes as itsdangerous itself.
    signer = Signer(settings.secret_key, salt=f"newsletter.{purpose}")
    expected = signer.sign(f"{subscriber_id}.{KEY}").decode()
    assert tokens.make_token(settings, purpose, subscriber_id, KEY) == expected


def test_a_token_names_the_link_key_it_was_made_for(settings: Settings) -> None:
    old, new = new_link_key(), new_link_key()
    assert old != new and len(old) == 16
    token = tokens.make_token(settings, "manage", 42, old)
    assert tokens.read_token(settings, "manage", token).key == old
    assert token != tokens.make_token(settings, "manage", 42, new)


def test_tampered_token_is_rejected(settings: Settings) -> None:
    token = tokens.make_token(settings, "unsubscribe", 42, KEY)
    payload, signature = token.rsplit(".", 1)
    forged_payload = tokens.make_token(settings, "unsubscribe", 43, KEY).rsplit(".", 1)[0]
    other_key = tokens.make_token(settings, "unsubscribe", 42, "another").rsplit(".", 1)[0]
    for bad in (
        forged_payload + "." + signature,
        other_key + "." + signature,
        payload + "." + signature[::-1],
        token + "x",
        "",
        "é" + token,
    ):
        with pytest.raises(InputError, match="invalid or expired link"):
            tokens.read_token(settings, "unsubscribe", bad)


def test_token_of_another_purpose_is_rejected(settings: Settings) -> None:
    manage = tokens.make_token(settings, "manage", 42, KEY)
    with pytest.raises(InputError, match="invalid or expired link"):
        tokens.read_token(settings, "unsubscribe", manage)
    unsubscribe = tokens.make_token(settings, "unsubscribe", 42, KEY)
    with pytest.raises(InputError):
        tokens.read_token(settings, "confirm", unsubscribe, max_age=3600)
    with pytest.raises(InputError):
        tokens.read_token(settings, "manage", unsubscribe)


def test_token_signed_with_another_key_is_rejected(settings: Settings) -> None:
    other = dataclasses.replace(settings, secret_key="another-secret-" + "x" * 32)
    token = tokens.make_token(other, "unsubscribe", 42, KEY)
    with pytest.raises(InputError):
        tokens.read_token(settings, "unsubscribe", token)


def test_tokens_of_the_old_format_are_refused(settings: Settings) -> None:
    # Before link keys, a token signed the id alone: it could name a later row.
    old = Signer(settings.secret_key, salt="newsletter.unsubscribe").sign("NDI").decode()
    with pytest.raises(InputError, match="invalid or expired link"):
        tokens.read_token(settings, "unsubscribe", old)


def test_unsubscribe_token_has_no_timestamp(settings: Settings) -> None:
    token = tokens.make_token(settings, "unsubscribe", 42, KEY)
    assert token.count(".") == 2  # id . key . signature
    assert token == tokens.make_token(settings, "unsubscribe", 42, KEY)
    assert tokens.read_token(settings, "unsubscribe", token, max_age=0).subscriber_id == 42


def test_confirm_token_expires(settings: Settings) -> None:
    signer = _TwoDaysAgoSigner(settings.secret_key, salt="newsletter.confirm")
    token = signer.sign(f"42.{KEY}").decode()
    assert tokens.read_token(settings, "confirm", token, max_age=3 * 86400).subscriber_id == 42
    with pytest.raises(InputError, match="invalid or expired link"):
        tokens.read_token(settings, "confirm", token, max_age=86400)


def test_signed_values_that_are_no_claim_are_rejected(settings: Settings) -> None:
    signer = Signer(settings.secret_key, salt="newsletter.unsubscribe")
    for value in ("42", "x.key", "42.", "42.key.more", "-1.key", "42.k y"):
        with pytest.raises(InputError):
            tokens.read_token(settings, "unsubscribe", signer.sign(value).decode())


def test_bad_arguments_are_programming_errors(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown token purpose"):
        tokens.make_token(settings, "login", 1, KEY)
    with pytest.raises(ValueError, match="link key"):
        tokens.make_token(settings, "manage", 1, "")
    with pytest.raises(ValueError, match="link key"):
        tokens.make_token(settings, "manage", 1, "a.b")


def test_url_scheme(settings: Settings) -> None:
    base = "https://news.example.test"
    unsubscribe = tokens.unsubscribe_url(settings, 7, KEY)
    manage = tokens.manage_url(settings, 7, KEY)
    confirm = tokens.confirm_url(settings, 7, KEY, 12)
    assert unsubscribe.startswith(base + "/unsubscribe/")
    assert manage.startswith(base + "/manage/")
    assert confirm.startswith(base + "/confirm/")
    claim = tokens.LinkClaim(7, KEY)
    assert tokens.read_token(settings, "unsubscribe", unsubscribe.rsplit("/", 1)[1]) == claim
    assert tokens.read_token(settings, "manage", manage.rsplit("/", 1)[1]) == claim
    assert tokens.read_confirm_token(settings, confirm.rsplit("/", 1)[1], 60) == (claim, 12)
    with pytest.raises(InputError):  # a link of the older form named no sign-up
        tokens.read_confirm_token(settings, tokens.make_token(settings, "confirm", 7, KEY), 60)
    assert tokens.archive_url(settings, date(2025, 11, 27)) == base + "/archive/2025-11-27"


def test_trailing_slash_in_base_url_is_not_doubled(settings: Settings) -> None:
    slashed = dataclasses.replace(settings, base_url="https://news.example.test/")
    assert (
        tokens.archive_url(slashed, date(2025, 1, 2))
        == "https://news.example.test/archive/2025-01-02"
    )


@pytest.mark.parametrize("purpose", ["unsubscribe", "confirm"])
def test_a_token_has_one_spelling(settings: Settings, purpose: str) -> None:
    token = tokens.make_token(settings, purpose, 42, KEY)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Last characters that decode to the same bytes (the unused bits differ) are refused.
    for other in alphabet:
        respelled = token[:-1] + other
        if respelled == token:
            continue
        with pytest.raises(InputError):
            tokens.read_token(settings, purpose, respelled, max_age=60)
    with pytest.raises(InputError):
        tokens.read_token(settings, purpose, token.replace("_", "/").replace("-", "+") + "/")


def test_the_fast_vote_link_maker_gives_the_same_links(settings: Settings) -> None:
    make = tokens.feedback_url_maker(settings, 42, KEY)
    for paper_id in (0, 7, 123456789):
        url = make(paper_id)
        assert url == tokens.feedback_url(settings, 42, KEY, paper_id)
        claim, named = tokens.read_paper_token(settings, url.rsplit("/", 1)[1])
        assert (claim, named) == (tokens.LinkClaim(42, KEY), paper_id)
    with pytest.raises(ValueError, match="link key"):
        tokens.feedback_url_maker(settings, 42, "a.b")


def test_links_are_signed_as_itsdangerous_signs_them(settings: Settings) -> None:
    """The prepared MAC gives the very tokens of itsdangerous' own Signer, for every purpose."""
    for purpose in ("unsubscribe", "manage", "feedback"):
        signer = Signer(settings.secret_key, salt=f"newsletter.{purpose}")
        for subscriber_id in (1, 42, 10**17):
            expected = signer.sign(f"{subscriber_id}.{KEY}").decode("ascii")
            if purpose != "feedback":
                assert tokens.make_token(settings, purpose, subscriber_id, KEY) == expected
                continue
            make = tokens.feedback_url_maker(settings, subscriber_id, KEY)
            for paper_id in (0, 9, 123456789):
                token = signer.sign(f"{subscriber_id}.{KEY}.{paper_id}").decode("ascii")
                assert make(paper_id).rsplit("/", 1)[1] == token
                assert tokens.make_paper_token(settings, subscriber_id, KEY, paper_id) == token


@pytest.mark.parametrize("key", [b"", b"k" * 20, b"k" * 64, b"k" * 65, b"k" * 500])
@pytest.mark.parametrize("digest", [hashlib.sha1, hashlib.sha256, hashlib.sha512])
def test_the_prepared_mac_is_hmac(key: bytes, digest) -> None:  # noqa: ANN001
    """Keys longer than a block are hashed first, shorter ones padded, as RFC 2104 says."""
    for message in (b"", b"1.key.2", b"x" * 1000):
        expected = base64_encode(hmac.new(key, message, digest).digest())
        assert tokens._KeyedMac.new(key, digest).sign(message) == expected


def test_every_use_of_the_secret_key_signs_under_a_purpose_of_its_own(settings):
    import base64

    from newsletter.audience.limits import rate_key
    from newsletter.bounces.signing import MAC_CHARS, token_delivery_id, verp_token
    from newsletter.core.tokens import form_signer, keyed_digest

    # A return path signed before the keyed digest was one helper still verifies: same bytes.
    old = hmac.new(settings.secret_key.encode(), b"newsletter.verp:rs", "sha256").digest()
    assert verp_token(settings, 1000) == "rs-" + base64.b32encode(old).decode().lower()[:MAC_CHARS]
    assert token_delivery_id(settings, verp_token(settings, 1000)) == 1000
    # One message under two purposes: two digests, and a rate key reveals nothing of its value.
    assert keyed_digest(settings.secret_key, b"a", b"x") != keyed_digest(settings.secret_key,
                                                                          b"b", b"x")  # fmt: skip
    key = rate_key(settings, "subscribe-ip", "192.0.2.0/24")
    plain = hashlib.sha256(b"192.0.2.0/24").hexdigest()[:40]
    assert key.startswith("subscribe-ip:") and plain not in key and "192.0" not in key
    # A CSRF value is no link token: signed under its own salt, time-stamped.
    signed = form_signer(settings).sign(b"value").decode()
    assert re.fullmatch(r"value\.[\w-]+\.[\w-]+", signed)
    with pytest.raises(ValueError):
        form_signer(settings, "manage")


def test_only_the_tokens_module_signs_with_the_secret_key():
    from pathlib import Path

    import newsletter

    root = Path(newsletter.__file__).parent
    signing = re.compile(r"hmac\.new\(|\b(?:Timestamp)?Signer\(|URLSafe\w*Serializer\(")
    users = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if signing.search(p.read_text(encoding="utf-8"))
    )
    assert users == ["core/tokens.py"]
