"""The header builder: values stay literal text, folding is the only line break, addresses."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import re
import unicodedata
from email.header import decode_header, make_header

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.content.headers import (
    address_field,
    address_problem,
    envelope_address,
    hides_control,
    mailbox_address,
    text_field,
    token_field,
)
from newsletter.content.templating import one_line
from newsletter.core.errors import InputError

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A field name, then printable ASCII; a CRLF only where a fold (CRLF + space or tab) follows.
WELL_FORMED_FIELD = re.compile(rb"[!-9;-~]+: [ -~]*(?:\r\n[ \t]+[!-~][ -~]*)*")
HIDDEN = (
    "x\r\nReply-To: a@evil.example\r\nBcc: b@evil.example\r\nContent-Type: text/html\r\n\r\n"
    "<h1>Your account is closed</h1>"
)
ATTACK = "=?utf-8?b?" + base64.b64encode(HIDDEN.encode()).decode() + "?="


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def q_word(text: str) -> str:
    return "=?utf-8?q?" + binascii.b2a_qp(text.encode(), header=True).decode() + "?="


def parse_field(field: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(field + b"\r\n\r\n", policy=email.policy.default)


def display_text(field: bytes) -> str:
    """Return a To field's name and address as a reader shows them.

    The stdlib's address parser keeps the folding space between two encoded words of a
    display name, which RFC 2047 says to drop: decode encoded names as RFC 2047 says.
    """
    if b"=?utf-8?b?" not in field:
        [address] = parse_field(field)["To"].addresses
        return f"{address.display_name} <{address.addr_spec}>".lstrip()
    value = field.split(b": ", 1)[1].replace(b"\r\n", b"").decode("ascii")
    return str(make_header(decode_header(value)))


def assert_one_well_formed_field(field: bytes) -> None:
    assert WELL_FORMED_FIELD.fullmatch(field), field
    assert all(len(line) <= 998 for line in field.split(b"\r\n"))


# Anything at all, and text that mail readers would decode into header lines.
_any_text = st.text(max_size=200)
_encoded_attacks = st.builds(
    lambda before, hidden, word: before + word(hidden),
    st.text(max_size=20),
    st.text(st.sampled_from("\r\n\x00\x85\u2028\u2029\tBcc: x@evil.example"), max_size=40),
    st.sampled_from([b_word, q_word]),
)
_hostile = _any_text | _encoded_attacks
_readable = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)


@FAST
@given(text=_hostile)
def test_a_text_field_breaks_lines_only_by_folding(text):
    field = text_field("Subject", text)
    assert_one_well_formed_field(field)
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    message = parse_field(field)
    assert list(message.keys()) == ["Subject"]
    assert not re.search(r"[\r\n\x00\x85\u2028\u2029]", str(message["Subject"]))


@FAST
@given(name=_hostile)
def test_an_address_field_breaks_lines_only_by_folding_and_names_one_mailbox(name):
    field = address_field("To", name, "eve@example.org")
    assert_one_well_formed_field(field)
    message = parse_field(field)
    assert list(message.keys()) == ["To"]
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.org"]


@FAST
@given(text=_readable)
def test_a_text_field_parses_back_to_the_same_text(text):
    assert str(parse_field(text_field("Subject", text))["Subject"]) == _visible(text)


def _visible(text: str) -> str:
    """Return what a header shows of text: one line, without invisible format characters."""
    kept = (c for c in one_line(text) if unicodedata.category(c) != "Cf" or c in "\u200c\u200d")
    return one_line("".join(kept))


INVISIBLE = "\u202e\u2066\u2067\u2068\u2069\u200b\u200e\u200f\ufeff\u061c\u00ad"


@pytest.mark.parametrize("char", INVISIBLE)
def test_headers_drop_bidirectional_and_invisible_characters(char):
    subject = parse_field(text_field("Subject", f"Paper{char} title"))["Subject"]
    assert str(subject) == "Paper title"
    to = display_text(address_field("To", f"Ann{char}a Lee", "eve@example.org"))
    assert to == "Anna Lee <eve@example.org>"
    assert hides_control(f"Ann{char}") and hides_control(b_word(f"Ann{char}"))


@FAST
@given(name=_readable)
def test_a_display_name_parses_back_to_the_same_text(name):
    field = address_field("To", name, "eve@example.org")
    assert display_text(field) == f"{_visible(name)} <eve@example.org>".lstrip()


@FAST
@given(text=st.text(max_size=40), word=st.sampled_from([b_word, q_word]))
def test_text_with_a_control_character_is_found_however_it_is_encoded(text, word):
    hidden = text + "\n"
    assert hides_control(word(hidden))
    assert hides_control("Ann " + word(word(hidden)))  # encoded twice


@FAST
@given(
    text=st.text(st.characters(blacklist_categories=["Cc", "Cf", "Cs", "Zl", "Zp"]), max_size=80)
)
def test_text_without_control_characters_is_not_refused(text):
    assert not hides_control(text) and not hides_control(b_word(text))


def test_the_encoded_attack_is_shown_literally_not_decoded():
    field = address_field("To", ATTACK, "eve@example.org")
    assert_one_well_formed_field(field)
    assert b"Reply-To" not in field and b"=?utf-8?b?PT91" in field  # "=?u" itself is encoded
    assert display_text(field) == f"{ATTACK} <eve@example.org>"
    assert str(parse_field(text_field("Subject", ATTACK))["Subject"]) == ATTACK


@pytest.mark.parametrize(
    "name",
    [
        ATTACK,
        "Ann\u0085Bcc: x@evil.example",  # NEL
        "Ann\u2028Bcc: x@evil.example",
        "Ann\u2029Bcc: x@evil.example",
        "Ann\tLee",
        "Ann\x1b[31m",
        q_word("Ann\r\nBcc: x@evil.example"),
        "=?UTF-8?Q?Ann=0ABcc:_x@evil.example?=",
        q_word("Ann\u0085Bcc"),  # an encoded NEL
        b_word("Ann\nBcc", "utf-16"),  # another charset
        "=?x-unknown?q?Ann=0A?=",  # a charset Python does not know
        "=?utf-8*en?q?Ann=0A?=",  # RFC 2231 language
        "Zo=?utf-8?q?=0A?=e",  # inside a word, as lenient readers decode it
        b_word(b_word("Ann\r\nBcc: x@evil.example")),
        "=?utf-8?b?QW5uDQpCY2M?=",  # no padding
    ],
)
def test_hides_control_finds_control_characters_plain_or_encoded(name):
    assert hides_control(name)


@pytest.mark.parametrize(
    "name", ["Ann Lee", "Zoë Ødegård", "שלום Ada", q_word("Zoë"), "a =? b ?= c"]
)
def test_hides_control_accepts_ordinary_and_harmless_encoded_names(name):
    assert not hides_control(name)


def test_long_values_fold_within_78_characters():
    subject = text_field("Subject", "word " * 40)
    assert max(len(line) for line in subject.split(b"\r\n")) <= 78
    assert str(parse_field(subject)["Subject"]) == ("word " * 40).strip()
    long_word = text_field("Subject", "x" * 200)  # no space to fold at: encoded words instead
    assert max(len(line) for line in long_word.split(b"\r\n")) <= 78
    assert str(parse_field(long_word)["Subject"]) == "x" * 200
    to = address_field("To", 'O\'Neil, "Jr." (Lab) ' * 5, "odd@example.org")
    assert max(len(line) for line in to.split(b"\r\n")) <= 78
    [address] = parse_field(to)["To"].addresses
    assert address.display_name == ('O\'Neil, "Jr." (Lab) ' * 5).strip()


def test_field_names_and_tokens_are_checked():
    with pytest.raises(ValueError, match="field name"):
        text_field("Bcc: x@evil.example\r\nSubject", "hi")
    with pytest.raises(ValueError, match="printable ASCII"):
        token_field("Precedence", "bulk\r\nBcc: x@evil.example")


# --- addresses -------------------------------------------------------------------------------


def test_idn_domains_become_idna_2008_a_labels():
    # Python's idna codec (IDNA 2003) would send "straße" mail to strasse.de, another domain.
    assert mailbox_address("ana@straße.de", "To") == "ana@xn--strae-oqa.de"
    assert mailbox_address("user@exämple.org", "To") == "user@xn--exmple-cua.org"
    assert envelope_address("user@exämple.org") == "user@xn--exmple-cua.org"
    assert envelope_address("user@example.org") == "user@example.org"
    [address] = parse_field(address_field("To", "Ana", "ana@straße.de"))["To"].addresses
    assert address.addr_spec == "ana@xn--strae-oqa.de"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("jösé@example.org", "non-ASCII local part"),
        ("ｊｏｈｎ@example.org", "non-ASCII local part"),
        ("=?utf-8?q?a?=@example.org", "cannot contain '=?'"),
        ("a@exa mple.org", "not a valid email address"),
        ("a@-.example", None),  # ASCII domains are email-validator's to judge
        ("a@\u2028.org", "not a valid email address"),
        ("a@xn--.org\u0085", "not a valid email address"),
        ("a@ex\u00e4mple..org", "domain name is not valid"),
    ],
)
def test_address_problems(address, problem):
    found = address_problem(address)
    assert (found is None) if problem is None else (problem.lower() in found.lower())
    if problem is not None:
        with pytest.raises(InputError):
            address_field("To", "", address)
