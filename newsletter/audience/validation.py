"""Check and normalise what a subscriber is made of: address, name, time zone, hour, papers,
frequency, day, interests and the reader's own rules. Each check returns the clean value or
raises InputError with one line saying what is wrong.

Addresses are stored as email-validator normalises them: the domain lowercased (and in
Unicode form), the local part as given. Two addresses are the same subscriber when they
differ only in the case of ASCII letters (`Jane@x.org` is `jane@X.ORG`): mail servers
treat local parts case-insensitively in practice, and people retype their address with
other capitals. ASCII only, because SQLite's lower() is ASCII only: the rule is the same on
SQLite and PostgreSQL. The first spelling seen is kept, since it is the one that works.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache, lru_cache
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)

from newsletter.content.headers import address_problem, has_format_character, hides_control
from newsletter.core.errors import InputError, quoted
from newsletter.core.models import Frequency, xml_safe
from newsletter.matching.interests import MAX_INTERESTS_LENGTH
from newsletter.matching.personal import MAX_RULE_LENGTH, MAX_RULES

MAX_NAME_LENGTH = 200
HOURS = range(0, 24)
MAX_PAPERS = range(1, 51)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FORBIDDEN_CHARS = re.compile(r"[\r\n\x00]")
# Interests are a paragraph: line breaks, tabs and other spacing become single spaces; any
# other control character is refused (see validate_interests).
_SPACING = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NO_WANTS = "no topics given, and no interests: a subscriber needs one or the other"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def normalise_email(raw: str) -> str:
    """Return the normalised address or raise InputError saying why it is invalid."""
    address = raw.strip(" \t")
    if FORBIDDEN_CHARS.search(address):
        raise InputError(f"invalid email address {quoted(raw)}: contains a line break or NUL")
    fast = _fast_normalise(address)
    if fast is not None:
        return fast
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InputError(f"invalid email address {quoted(raw)}: {exc}") from None


def mailable_email(raw: str) -> str:
    """Return the normalised address of a new subscriber or recipient, or raise InputError.

    The one rule for every address given to the product (the sign-up form, `subscribers add`
    and `import`, `send --to`): valid for email-validator, nothing but ASCII before the @, and
    no "=?" there (see headers.address_problem). A domain may be internationalised: it is
    stored in Unicode and written as its A-label in headers and the SMTP envelope.
    """
    address = normalise_email(raw)
    problem = address_problem(address)
    if problem is not None:
        raise InputError(f"invalid email address {quoted(raw)}: {problem}")
    return address


def _fast_normalise(address: str) -> str | None:
    """Normalise a plain ASCII address exactly as email-validator would, or return None."""
    # Most rows of a big import are plain: skip email-validator's per-character work for
    # them and validate each domain once. Anything unusual takes the full path.
    local, at, domain = address.partition("@")
    if not at or not address.isascii() or "@" in domain or '"' in address or "<" in address:
        return None
    if not DOT_ATOM_TEXT.match(local) or local.lower() in _MAILBOX_NAMES:
        return None
    domains = _domain_forms(domain)
    if domains is None:
        return None
    unicode_domain, ascii_domain = domains
    normalised = f"{local}@{unicode_domain}"
    longest = max(len(address), len(normalised.encode()), len(local) + 1 + len(ascii_domain))
    return normalised if longest <= EMAIL_MAX_LENGTH else None


@lru_cache(maxsize=65536)
def _domain_forms(domain: str) -> tuple[str, str] | None:
    """Return the (Unicode, ASCII) forms of a valid domain, or None when it is invalid."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


def email_key(email: str) -> str:
    """Return the identity of a normalised address: ASCII letters folded to lowercase."""
    return email.lower() if email.isascii() else email.translate(_ASCII_LOWER)


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_timezone(name: str) -> str:
    """Return the IANA time zone name or raise InputError."""
    name = name.strip()
    if name in _time_zones():
        return name
    hint = next((z for z in _time_zones() if z.lower() == name.lower()), None)
    suffix = f" (did you mean {hint!r}?)" if hint else " (expected Area/City, e.g. Europe/Paris)"
    raise InputError(f"unknown time zone {quoted(name)}{suffix}")


def _whole_number(value: int | str, what: str, allowed: range) -> int:
    text = str(value).strip()
    # The length is checked before int(): Python refuses strings of over 4,300 digits.
    plain = text.isascii() and text.isdigit() and len(text.lstrip("0")) <= len(str(allowed[-1]))
    if not plain or int(text) not in allowed:
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise InputError(f"{what} must be a whole number {allowed[0]}-{allowed[-1]}, got {shown!r}")
    return int(text)


def validate_hour(value: int | str) -> int:
    """Return the delivery hour 0-23 or raise InputError."""
    return _whole_number(value, "hour", HOURS)


def validate_max_papers(value: int | str) -> int:
    """Return the papers-per-digest limit 1-50 or raise InputError."""
    return _whole_number(value, "max papers", MAX_PAPERS)


def validate_frequency(value: Frequency | str) -> Frequency:
    """Return the digest frequency, daily or weekly, or raise InputError."""
    text = str(value).strip().lower()
    try:
        return Frequency(text)
    except ValueError:
        known = " or ".join(f.value for f in Frequency)
        raise InputError(f"frequency must be {known}, got {quoted(str(value))}") from None


def validate_weekday(value: int | str) -> int:
    """Return the weekly digest's day, 0 (Monday) to 6, from a number or a day's name.

    A name may be shortened to its first three letters: "fri" is Friday.
    """
    text = str(value).strip().lower()
    if text.isascii() and text.isdigit() and len(text) == 1 and int(text) < len(WEEKDAYS):
        return int(text)
    matches = [i for i, day in enumerate(WEEKDAYS) if len(text) >= 3 and day.startswith(text)]
    if len(matches) != 1:
        raise InputError(
            f"weekly day must be a day of the week, Monday to Sunday (or 0-6), "
            f"got {quoted(str(value))}"
        )
    return matches[0]


def validate_name(value: str) -> str:
    """Return the display name stripped, or raise InputError for one unsafe in a header.

    A name is checked as mail readers will see it: after decoding any RFC 2047 encoded word
    in it, it must hold no control character nor line break. Other characters XML cannot
    hold are dropped: names appear in the web pages.
    """
    name = value.strip()
    if FORBIDDEN_CHARS.search(name):
        raise InputError(f"invalid name {quoted(value)}: contains a line break or NUL")
    if len(name) > MAX_NAME_LENGTH:  # first: decoding a long text costs more
        raise InputError(f"name longer than {MAX_NAME_LENGTH} characters")
    if hides_control(name):
        raise InputError(
            f"invalid name {quoted(value)}: contains a control character or an invisible one, "
            "plain or encoded"
        )
    return xml_safe(name).strip()


def validate_interests(value: str) -> str:
    """Return a reader's interests on one line, or raise InputError for unsafe or long text.

    Every run of spacing (line breaks and tabs included) becomes one space: a paragraph typed
    in a text box reads the same. Any other control character, or an invisible one, is
    refused; so is a text over MAX_INTERESTS_LENGTH characters. "" clears the interests.
    """
    if len(value) > 4 * MAX_INTERESTS_LENGTH:  # first: a huge text is not worth reading
        raise InputError(f"interests longer than {MAX_INTERESTS_LENGTH} characters")
    text = _SPACING.sub(" ", value).strip()
    if _CONTROL.search(text) or has_format_character(text):
        raise InputError("interests contain a control character or an invisible one")
    if len(text) > MAX_INTERESTS_LENGTH:
        raise InputError(
            f"interests longer than {MAX_INTERESTS_LENGTH} characters ({len(text)} given)"
        )
    return xml_safe(text)


def require_wants(topic_ids: Sequence[int], interests: str, message: str = NO_WANTS) -> None:
    """Raise InputError unless a subscriber has a topic or interests: else nothing can match."""
    if not topic_ids and not interests:
        raise InputError(message)


def split_rules(value: str, what: str) -> list[str]:
    """Split a reader's ";"-separated authors, muted words or keywords, checking each."""
    items = [" ".join(part.split()) for part in value.split(";")]
    items = list(dict.fromkeys(i for i in items if i))
    if len(items) > MAX_RULES:
        raise InputError(f"{what}: at most {MAX_RULES} entries, got {len(items)}")
    for item in items:
        if len(item) > MAX_RULE_LENGTH:
            raise InputError(f"{what}: {quoted(item, 30)} is over {MAX_RULE_LENGTH} characters")
        if FORBIDDEN_CHARS.search(item) or hides_control(item):
            raise InputError(
                f"{what}: {quoted(item)} contains a control character or an invisible one"
            )
    return [xml_safe(i) for i in items]
