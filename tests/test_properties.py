"""Property-based tests: parsers, tokens and the text and address helpers on arbitrary input."""

from __future__ import annotations

import email
import email.policy
import string
from datetime import date

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from newsletter.audience.validation import normalise_email
from newsletter.content.digest import Recipient, RenderedDigest
from newsletter.content.mime import build_message_data
from newsletter.content.templating import one_line
from newsletter.core import tokens
from newsletter.core.config import Settings
from newsletter.core.errors import InputError, NoListing, SourceError
from newsletter.papers.sources.common import normalise_title
from newsletter.papers.sources.files import PARSERS, parse_paper_bytes

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SETTINGS = Settings(
    secret_key="property-secret-of-at-least-32-bytes",
    base_url="https://news.example.test",
    from_address="Daily Papers <papers@news.example.test>",
)
PURPOSES = ("unsubscribe", "manage", "confirm")
LINK_KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
_json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@FAST
@given(data=st.binary(max_size=2000), fmt=st.sampled_from(["auto", *PARSERS]))
def test_every_parser_raises_only_its_own_errors_on_arbitrary_bytes(data, fmt):
    try:
        parse_paper_bytes(data, name="x", fmt=fmt, listing_date=date(2026, 11, 27))
    except (InputError, NoListing, SourceError):
        pass


@FAST
@given(doc=_json_text, fmt=st.sampled_from(["auto", "json", "hf-json"]))
def test_json_parsers_raise_only_their_own_errors_on_any_json_shape(doc, fmt):
    import json

    try:
        parse_paper_bytes(json.dumps(doc).encode(), name="x", fmt=fmt)
    except (InputError, NoListing, SourceError):
        pass


@FAST
@given(
    subscriber_id=st.integers(min_value=1, max_value=2**53),
    purpose=st.sampled_from(PURPOSES),
    key=st.text(alphabet=LINK_KEY_ALPHABET, min_size=1, max_size=64),
)
def test_tokens_round_trip(subscriber_id, purpose, key):
    token = tokens.make_token(SETTINGS, purpose, subscriber_id, key)
    assert tokens.read_token(SETTINGS, purpose, token) == tokens.LinkClaim(subscriber_id, key)


@FAST
@given(
    subscriber_id=st.integers(min_value=1, max_value=2**31),
    purpose=st.sampled_from(PURPOSES),
    position=st.integers(min_value=0),
    char=st.characters(codec="ascii", categories=["L", "N", "P"]),
)
def test_any_changed_character_makes_a_token_invalid(subscriber_id, purpose, position, char):
    token = tokens.make_token(SETTINGS, purpose, subscriber_id, f"key{subscriber_id}")
    i = position % len(token)
    assume(token[i] != char)
    tampered = token[:i] + char + token[i + 1 :]
    with pytest.raises(InputError):
        tokens.read_token(SETTINGS, purpose, tampered)


@FAST
@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_valid_token(text):
    for purpose in PURPOSES:
        try:
            claim = tokens.read_token(SETTINGS, purpose, text)
        except InputError:
            continue
        # only a real one
        assert text == tokens.make_token(SETTINGS, purpose, claim.subscriber_id, claim.key)


@FAST
@given(st.text(max_size=120))
def test_normalise_email_returns_a_one_line_fixed_point_or_refuses(raw):
    try:
        address = normalise_email(raw)
    except InputError:
        return
    assert "@" in address and not any(c in address for c in "\r\n\x00")
    assert normalise_email(address) == address


@FAST
@given(st.text(max_size=300))
def test_normalise_title_is_idempotent_bounded_and_one_line(title):
    key = normalise_title(title)
    assert normalise_title(key) == key
    assert len(key) <= 512 and "\n" not in key and key == key.strip()


@FAST
@given(st.text(max_size=300))
def test_one_line_has_no_line_break_or_control_and_is_idempotent(value):
    line = one_line(value)
    assert one_line(line) == line
    assert not any(c in line for c in "\r\n\x00\x85\u2028\u2029")
    assert line == line.strip()


_display = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


@FAST
@given(name=_display, subject=_display, body=st.text(max_size=400))
def test_built_messages_parse_back_to_the_same_values(name, subject, body):
    recipient = Recipient(subscriber_id=7, email="eve@example.org", name=name, topics=())
    rendered = RenderedDigest(subject or "x", body, f"<p>{len(body)}</p>")
    raw, _dot_free = build_message_data(
        rendered,
        recipient=recipient,
        settings=SETTINGS,
        message_id="<1@news.example.test>",
        list_unsubscribe_url="https://news.example.test/u/1",
        list_unsubscribe_mailto=None,
    )
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"") and head.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.org"]
    assert message.get_all("To") and len(message.get_all("To")) == 1
    assert "Bcc" not in message
    text = message.get_body(("plain",)).get_content()
    assert text.replace("\r\n", "\n").rstrip("\n") == body.replace("\r\n", "\n").replace(
        "\r", "\n"
    ).rstrip("\n")
