"""Subscribers: validation, add/show/list/remove, and streaming CSV import and export.

Addresses are stored as email-validator normalises them: the domain lowercased (and in
Unicode form), the local part as given. Two addresses are the same subscriber when they
differ only in the case of ASCII letters (`Jane@x.org` is `jane@X.ORG`): mail servers
treat local parts case-insensitively in practice, and people retype their address with
other capitals. ASCII only, because SQLite's lower() is ASCII only: the rule is the same on
SQLite and PostgreSQL. The first spelling seen is kept, since it is the one that works.
"""

from __future__ import annotations

import csv
import io
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, selectinload

from newsletter.content.headers import address_problem, has_format_character, hides_control
from newsletter.core.config import Settings
from newsletter.core.db import insert_or_ignore
from newsletter.core.errors import InputError, NotFound, quoted
from newsletter.core.models import (
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Suppression,
    Topic,
    new_link_key,
    utcnow,
    xml_safe,
)
from newsletter.matching.interests import MAX_INTERESTS_LENGTH, embed_interests, stored_vector
from newsletter.matching.personal import MAX_RULE_LENGTH, MAX_RULES
from newsletter.matching.seeds import seed_of
from newsletter.matching.topics import split_list

# The CSV format, shared by import and export. Export separates topics by ";" inside their
# field so that a spreadsheet never has to quote them; import also reads a quoted "a,b",
# as people type it (a slug never holds a comma, so the two cannot be confused).
CSV_COLUMNS = (
    "email", "name", "topics", "timezone", "hour", "max_papers", "status", "interests"
)  # fmt: skip
REQUIRED_COLUMNS = ("email", "topics")
TOPIC_SEPARATOR = ";"
OTHER_TOPIC_SEPARATOR = ","
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV
# injection); export puts a quote before such a cell so that it shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BATCH_SIZE = 5000
MAX_REPORTED_ERRORS = 1000
# A longer line is not a subscriber row: refuse it rather than read a binary file whole.
MAX_LINE_BYTES = 1 << 20
MAX_NAME_LENGTH = 200
HOURS = range(0, 24)
MAX_PAPERS = range(1, 51)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
IMPORT_STATUSES = (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)
FORBIDDEN_CHARS = re.compile(r"[\r\n\x00]")
# Interests are a paragraph: line breaks, tabs and other spacing become single spaces; any
# other control character is refused (see validate_interests).
_SPACING = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NO_WANTS = "no topics given, and no interests: a subscriber needs one or the other"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)

# Their Tables, which SQLAlchemy types as any FromClause a model could be mapped to.
SUBSCRIBERS = cast(Table, Subscriber.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)


@dataclass(frozen=True)
class Defaults:
    """Delivery preferences given to a new subscriber who states none."""

    timezone: str = Settings.default_timezone
    hour: int = Settings.default_hour
    max_papers: int = Settings.default_max_papers

    @classmethod
    def from_settings(cls, settings: Settings) -> Defaults:
        """Take the defaults from the instance settings."""
        return cls(settings.default_timezone, settings.default_hour, settings.default_max_papers)


# --- validation -------------------------------------------------------------------------


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


def set_interests(
    subscriber: Subscriber, interests: str, embedded: tuple[str, bytes] | None = None
) -> None:
    """Set a subscriber's checked interests and their sentence vector (embedded here unless
    given: the text is embedded once, when it changes, never per edition)."""
    current = stored_vector(subscriber.interests_model, subscriber.interests_vector)
    if interests == subscriber.interests and (current is not None or not interests):
        return
    if embedded is None and interests:
        (embedded,) = embed_interests([interests])
    subscriber.interests = interests
    subscriber.interests_model, subscriber.interests_vector = embedded or (None, None)


def split_topics_cell(value: str) -> list[str]:
    """Split a CSV topics cell on ";" or ","."""
    return split_list(value.replace(OTHER_TOPIC_SEPARATOR, TOPIC_SEPARATOR), TOPIC_SEPARATOR)


def topic_ids(*, session: Session) -> dict[str, int]:
    """Return every topic's id by slug."""
    return {slug: topic_id for slug, topic_id in session.execute(select(Topic.slug, Topic.id))}


def resolve_topics(
    slugs: Sequence[str], known: dict[str, int], *, required: bool = True
) -> list[int]:
    """Return the ids of the slugs, in any case, once each; raise InputError naming unknown ones
    (and, when `required`, for none at all)."""
    slugs = list(dict.fromkeys(slug.strip().lower() for slug in slugs))
    if not slugs and required:
        raise InputError("no topics given")
    unknown = [s for s in slugs if s not in known]
    if unknown:
        names = ", ".join(quoted(s) for s in unknown)
        listing = ", ".join(sorted(known)) or "none defined yet"
        plural = "s" if len(unknown) > 1 else ""
        raise InputError(f"unknown topic{plural} {names} (known: {listing})")
    return [known[s] for s in slugs]


# --- single subscribers -----------------------------------------------------------------


def add_subscriber(
    *,
    session: Session,
    email: str,
    name: str = "",
    topics: str | Iterable[str] = "",
    interests: str = "",
    confirmed: bool = False,
    timezone: str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    frequency: Frequency | str = Frequency.DAILY,
    weekly_day: int | str = 0,
    paused: bool = False,
    consent_source: str = "admin",
    defaults: Defaults | None = None,
) -> Subscriber:
    """Add one subscriber with their topics or interests; raise InputError if the address exists."""
    defaults = defaults or Defaults()
    address = mailable_email(email)
    subscriber = Subscriber(
        email=address,
        name=validate_name(name),
        timezone=validate_timezone(timezone or defaults.timezone),
        delivery_hour=validate_hour(defaults.hour if hour is None else hour),
        max_papers=validate_max_papers(defaults.max_papers if max_papers is None else max_papers),
        frequency=validate_frequency(frequency),
        weekly_day=validate_weekday(weekly_day),
        paused=paused,
        consent_source=consent_source[:64],
    )
    wants = validate_interests(interests)
    ids = resolve_topics(split_list(topics), topic_ids(session=session), required=False)
    require_wants(ids, wants)
    if _find(session, address) is not None:
        raise InputError(f"subscriber {quoted(address)} already exists")
    reason = suppressed(session, [address]).get(email_key(address))
    if reason is not None:
        raise InputError(f"{quoted(address)} is suppressed ({reason}): it must not be mailed again")
    now = utcnow()
    subscriber.status = SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING
    subscriber.confirmed_at = now if confirmed else None
    subscriber.consent = {"source": consent_source, "recorded_at": now.isoformat()}
    subscriber.subscriptions = [Subscription(topic_id=i) for i in ids]
    set_interests(subscriber, wants)
    session.add(subscriber)
    session.flush()
    return subscriber


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


def edit_subscriber(
    email: str,
    *,
    session: Session,
    name: str | None = None,
    topics: str | None = None,
    timezone: str | None = None,
    hour: int | None = None,
    max_papers: int | None = None,
    frequency: Frequency | str | None = None,
    weekly_day: int | str | None = None,
    paused: bool | None = None,
    follow_authors: str | None = None,
    muted_words: str | None = None,
    personal_keywords: str | None = None,
    interests: str | None = None,
) -> Subscriber:
    """Change what is given of a subscriber's preferences; None leaves a field as it is.

    Every value is checked before any is set: on an error the subscriber is as before.
    """
    subscriber = get_subscriber(email, session=session)
    given = {
        "name": name,
        "timezone": timezone,
        "delivery_hour": hour,
        "max_papers": max_papers,
        "frequency": frequency,
        "weekly_day": weekly_day,
        "follow_authors": follow_authors,
        "muted_words": muted_words,
        "personal_keywords": personal_keywords,
    }
    checked = {k: _FIELD_CHECKS[k](v) for k, v in given.items() if v is not None}
    if paused is not None:
        checked["paused"] = paused
    wants = subscriber.interests if interests is None else validate_interests(interests)
    ids = None
    if topics is not None:
        ids = resolve_topics(split_list(topics), topic_ids(session=session), required=False)
    require_wants([s.topic_id for s in subscriber.subscriptions] if ids is None else ids, wants)
    for column, value in checked.items():
        setattr(subscriber, column, value)
    set_interests(subscriber, wants)
    if ids is not None:
        current = {s.topic_id: s for s in subscriber.subscriptions}
        subscriber.subscriptions = [current.get(i) or Subscription(topic_id=i) for i in ids]
    session.flush()
    return subscriber


# How edit_subscriber() checks each column it is given.
_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": validate_name,
    "timezone": validate_timezone,
    "delivery_hour": validate_hour,
    "max_papers": validate_max_papers,
    "frequency": validate_frequency,
    "weekly_day": validate_weekday,
    "follow_authors": lambda v: split_rules(v, "followed authors"),
    "muted_words": lambda v: split_rules(v, "muted words"),
    "personal_keywords": lambda v: split_rules(v, "keywords"),
}


def _lookup_values(keys: Iterable[str]) -> list[str]:
    # PostgreSQL's lower() may also fold non-ASCII letters: match both spellings in SQL and
    # let email_key() decide, so both databases agree on who is who.
    return list({v for k in keys for v in (k, k.lower())})


def _find(session: Session, address: str) -> Subscriber | None:
    key = email_key(address)
    query = select(Subscriber).where(func.lower(Subscriber.email).in_(_lookup_values([key])))
    matches = [
        s for s in session.scalars(query.order_by(Subscriber.id)) if email_key(s.email) == key
    ]
    return matches[0] if matches else None


def suppressed(session: Session, addresses: Sequence[str]) -> dict[str, str]:
    """Return the reason each suppressed address is suppressed, by email_key()."""
    keys = {email_key(a) for a in addresses}
    sql = f"SELECT email, reason FROM {Suppression.__tablename__} WHERE lower(email) IN ({{}})"
    rows = _select_in(session, sql, _lookup_values(keys)) if keys else []
    return {email_key(e): r for e, r in rows if email_key(e) in keys}


def stored_ids(session: Session, addresses: Sequence[str]) -> dict[str, int]:
    """Return the id of each of these addresses already a subscriber, by email_key()."""
    keys = {email_key(a) for a in addresses}
    sql = "SELECT email, id FROM subscribers WHERE lower(email) IN ({}) ORDER BY id DESC"
    rows = _select_in(session, sql, _lookup_values(keys)) if keys else []
    # Descending, so that the first row of one address (the one _find returns) wins.
    return {email_key(e): i for e, i in rows if email_key(e) in keys}


def get_subscriber(email: str, *, session: Session) -> Subscriber:
    """Return the subscriber with this address or raise NotFound."""
    try:
        address = normalise_email(email)
    except InputError:
        address = email.strip()
    subscriber = _find(session, address)
    if subscriber is None:
        raise NotFound(f"no subscriber {quoted(address)}")
    return subscriber


def list_subscribers(
    *, session: Session, status: SubscriberStatus | str | None = None, topic: str | None = None
) -> list[Subscriber]:
    """Return subscribers by address, optionally only those with a status or topic."""
    query = select(Subscriber).options(
        selectinload(Subscriber.subscriptions).selectinload(Subscription.topic),
        selectinload(Subscriber.seeds),
    )
    if status is not None:
        query = query.where(Subscriber.status == SubscriberStatus(status))
    if topic is not None:
        (topic_id,) = resolve_topics([topic], topic_ids(session=session))
        query = query.join(Subscription).where(Subscription.topic_id == topic_id)
    return list(session.scalars(query.order_by(Subscriber.email)))


def remove_subscriber(email: str, *, session: Session) -> Subscriber:
    """Delete a subscriber and their topic choices; return the deleted subscriber."""
    subscriber = get_subscriber(email, session=session)
    session.delete(subscriber)
    session.flush()
    return subscriber


def topic_slugs(subscriber: Subscriber) -> list[str]:
    """Return the slugs of the subscriber's topics, sorted."""
    return sorted(s.topic.slug for s in subscriber.subscriptions)


def subscriber_to_dict(subscriber: Subscriber, *, consent: bool = False) -> dict[str, Any]:
    """Return the subscriber as plain JSON-ready data."""
    data: dict[str, Any] = {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status.value,
        "topics": topic_slugs(subscriber),
        "timezone": subscriber.timezone,
        "hour": subscriber.delivery_hour,
        "max_papers": subscriber.max_papers,
        "frequency": subscriber.frequency.value,
        "weekly_day": subscriber.weekly_day,
        "paused": subscriber.paused,
        "consent_source": subscriber.consent_source,
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
        "unsubscribed_at": subscriber.unsubscribed_at,
        "follow_authors": list(subscriber.follow_authors or ()),
        "muted_words": list(subscriber.muted_words or ()),
        "personal_keywords": list(subscriber.personal_keywords or ()),
        "seed_papers": [seed_of(row).to_dict() for row in subscriber.seeds],
        "interests": subscriber.interests or "",
    }
    if consent:
        data["consent"] = subscriber.consent
    return data


# --- CSV import -------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: counts, and the first errors by line."""

    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    max_errors: int = MAX_REPORTED_ERRORS
    # Who the file's rows are, new or not (for the confirmation emails of pending ones),
    # 4 bytes each however long the file.
    subscriber_ids: array[int] = field(default_factory=lambda: array("I"), repr=False)

    def add_error(self, line: int, reason: str) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append((line, reason))

    @property
    def errors_truncated(self) -> bool:
        return self.skipped > len(self.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "errors": [{"line": line, "reason": reason} for line, reason in self.errors],
            "errors_truncated": self.errors_truncated,
        }


@dataclass(slots=True)
class _Row:
    line: int
    key: str
    email: str
    name: str | None
    topic_ids: frozenset[int]
    timezone: str | None
    hour: int | None
    max_papers: int | None
    status: SubscriberStatus | None
    interests: str | None  # None: the cell was empty or absent
    embedded: tuple[str, bytes] | None = None


class _Lines:
    """Decode a binary stream line by line, counting lines and bytes for errors and progress."""

    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        lineno = 0
        while raw := self.stream.readline(MAX_LINE_BYTES):
            lineno += 1
            self.bytes_read += len(raw)
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise InputError(f"{self.name}, line {lineno}: line longer than 1 MiB: not CSV")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.name}, line {lineno}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                    "save the file as UTF-8"
                ) from None


@contextmanager
def _open_source(source: str | os.PathLike[str] | IO[Any]) -> Iterator[_Lines]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        with stream:
            yield _Lines(stream, path.name)
        return
    name = Path(str(getattr(source, "name", "<stream>"))).name
    yield _Lines(_EncodedText(source) if isinstance(source, io.TextIOBase) else source, name)


class _EncodedText:
    """Present an open text stream as the UTF-8 bytes _Lines reads."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def readline(self, limit: int) -> bytes:
        return self.text.readline(limit).encode()


def _read_header(reader: Any, name: str) -> list[str]:
    header = next((r for r in reader if r), None)
    expected = ",".join(CSV_COLUMNS)
    if header is None:
        raise InputError(f"{name} is empty: expected a header line such as {expected}")
    columns = [c.strip().lower() for c in header]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if unknown or missing or repeated:
        what = (
            f"unknown column(s) {', '.join(map(repr, unknown))}"
            if unknown
            else f"missing column(s) {', '.join(missing)}"
            if missing
            else f"repeated column(s) {', '.join(repeated)}"
        )
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t"):
            hint = " (columns seem separated by ';' or tabs: save the file as comma-separated)"
        raise InputError(
            f"{name}, line {reader.line_num}: {what}; the header must name columns from {expected} "
            f"and include {' and '.join(REQUIRED_COLUMNS)}{hint}"
        )
    return columns


class _Importer:
    """Validate rows and write them in batches with bulk statements."""

    def __init__(
        self,
        session: Session,
        report: ImportReport,
        status: SubscriberStatus,
        defaults: Defaults,
        consent_source: str,
    ) -> None:
        self.session = session
        self.report = report
        self.status = status
        self.defaults = defaults
        self.consent_source = consent_source
        self.known_topics = topic_ids(session=session)
        self.pending: dict[str, _Row] = {}
        # The line that last wrote each subscriber id: finds repeats across batches in
        # 4 bytes per subscriber instead of keeping every address of the file.
        self.written_by = array("I")
        self._constants: dict[SubscriberStatus, dict[str, Any]] = {}

    def add(self, line: int, values: dict[str, str]) -> None:
        try:
            row = self._parse(line, values)
        except InputError as exc:
            self.report.add_error(line, str(exc))
            return
        first = self.pending.get(row.key)
        if first is not None:
            self.report.add_error(line, f"duplicate of line {first.line} ({row.email})")
            return
        self.pending[row.key] = row

    def _parse(self, line: int, values: dict[str, str]) -> _Row:
        email = mailable_email(values["email"])
        interests = validate_interests(values.get("interests", ""))
        slugs = split_topics_cell(values["topics"])
        ids = resolve_topics(slugs, self.known_topics, required=False)
        require_wants(ids, interests)
        get = values.get
        timezone = get("timezone", "").strip()
        hour = get("hour", "").strip()
        max_papers = get("max_papers", "").strip()
        status = get("status", "").strip()
        return _Row(
            line=line,
            key=email_key(email),
            email=email,
            name=validate_name(values.get("name", "")) or None,
            topic_ids=frozenset(ids),
            timezone=validate_timezone(timezone) if timezone else None,
            hour=validate_hour(hour) if hour else None,
            max_papers=validate_max_papers(max_papers) if max_papers else None,
            status=_parse_status(status.lower()) if status else None,
            interests=interests or None,
        )

    def flush(self) -> None:
        rows, self.pending = list(self.pending.values()), {}
        if not rows:
            return
        given = [r for r in rows if r.interests]
        for row, embedded in zip(given, embed_interests([r.interests or "" for r in given]),
                                 strict=True):  # fmt: skip
            row.embedded = embedded
        blocked = suppressed(self.session, [r.email for r in rows])
        if blocked:
            for row in rows:
                if row.key in blocked:
                    reason = blocked[row.key]
                    self.report.add_error(row.line, f"{row.email} is suppressed ({reason})")
            rows = [r for r in rows if r.key not in blocked]
        existing = self._existing([r.key for r in rows])
        new: list[_Row] = []
        changed: list[tuple[_Row, dict[str, Any]]] = []
        for row in rows:
            current = existing.get(row.key)
            if current is None:
                new.append(row)
            elif self._seen(current["id"]):
                first = self.written_by[current["id"]]
                self.report.add_error(row.line, f"duplicate of line {first} ({row.email})")
            else:
                self._mark(current["id"], row.line)
                changed.append((row, current))
        self._insert(new)
        self._update(changed)

    def _seen(self, subscriber_id: int) -> bool:
        return subscriber_id < len(self.written_by) and self.written_by[subscriber_id] != 0

    def _mark(self, subscriber_id: int, line: int) -> None:
        size = len(self.written_by)
        if subscriber_id >= size:
            grow = max(subscriber_id + 1, 2 * size) - size
            self.written_by.frombytes(bytes(grow * self.written_by.itemsize))
        self.written_by[subscriber_id] = line

    def _existing(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        columns = ("id", "email", "name", "timezone", "delivery_hour", "max_papers", *_INTERESTS)
        sql = f"SELECT {', '.join(columns)} FROM subscribers WHERE lower(email) IN ({{}})"
        records = _select_in(self.session, sql + " ORDER BY id", _lookup_values(keys))
        wanted = set(keys)
        found: dict[str, dict[str, Any]] = {}
        for record in records:
            key = email_key(record[1])
            if key in wanted and key not in found:
                found[key] = dict(zip(columns, record, strict=True), topic_ids=set())
        by_id = {r["id"]: r for r in found.values()}
        if by_id:
            sql = "SELECT subscriber_id, topic_id FROM subscriptions WHERE subscriber_id IN ({})"
            for subscriber_id, topic_id in _select_in(self.session, sql, list(by_id)):
                by_id[subscriber_id]["topic_ids"].add(topic_id)
        return found

    def _insert(self, rows: list[_Row]) -> None:
        if not rows:
            return
        now = utcnow()
        self._constants.clear()  # they hold the previous batch's time
        # No conflict target: a unique index on lower(email), if the schema has one, counts too.
        stmt = insert_or_ignore(self.session, SUBSCRIBERS)
        _executemany(self.session, stmt, [self._new_values(r, now) for r in rows])
        sql = "SELECT email, id FROM subscribers WHERE email IN ({})"
        ids = dict(_select_in(self.session, sql, [r.email for r in rows]))
        links = []
        for row in rows:
            subscriber_id = ids.get(row.email)
            if subscriber_id is None or self._seen(subscriber_id):
                # Only another writer can get in between the lookup and the insert.
                self.report.add_error(row.line, f"{row.email} was added during the import")
                continue
            self._mark(subscriber_id, row.line)
            links += [(subscriber_id, t) for t in row.topic_ids]
            self.report.new += 1
        self._link(links, now)

    def _new_values(self, row: _Row, now: datetime) -> dict[str, Any]:
        status = row.status or self.status
        constants = self._constants.get(status)
        if constants is None:
            constants = self._constants[status] = self._status_constants(status, now)
        return {
            **constants,
            "email": row.email,
            "name": row.name or "",
            "timezone": row.timezone or self.defaults.timezone,
            "delivery_hour": self.defaults.hour if row.hour is None else row.hour,
            "max_papers": self.defaults.max_papers if row.max_papers is None else row.max_papers,
            "link_key": new_link_key(),
            **_interest_columns(row),
        }

    def _status_constants(self, status: SubscriberStatus, now: datetime) -> dict[str, Any]:
        """Return the columns every new row of this status shares, ready for the driver."""
        values = {
            "status": status,
            "frequency": Frequency.DAILY,
            "weekly_day": 0,
            "paused": False,
            "confirmation_sent_at": None,
            "consent_source": self.consent_source,
            "consent": {"source": self.consent_source, "recorded_at": now.isoformat()},
            "created_at": now,
            "confirmed_at": now if status == SubscriberStatus.CONFIRMED else None,
            "unsubscribed_at": now if status == SubscriberStatus.UNSUBSCRIBED else None,
            "follow_authors": [],
            "muted_words": [],
            "personal_keywords": [],
        }
        return _db_values(self.session, SUBSCRIBERS, values)

    def _update(self, pairs: list[tuple[_Row, dict[str, Any]]]) -> None:
        updates, unlink, links = [], [], []
        now = utcnow()
        for row, current in pairs:
            wanted = {
                "name": row.name if row.name is not None else current["name"],
                "timezone": row.timezone or current["timezone"],
                "delivery_hour": current["delivery_hour"] if row.hour is None else row.hour,
                "max_papers": current["max_papers"] if row.max_papers is None else row.max_papers,
                **_interest_columns(row, current),
            }
            fields_changed = any(wanted[k] != current[k] for k in wanted)
            old_topics = current["topic_ids"]
            if not fields_changed and old_topics == row.topic_ids:
                self.report.unchanged += 1
                continue
            self.report.updated += 1
            if fields_changed:
                updates.append({"b_id": current["id"], **{f"b_{k}": v for k, v in wanted.items()}})
            unlink += [{"b_sid": current["id"], "b_tid": t} for t in old_topics - row.topic_ids]
            links += [(current["id"], t) for t in row.topic_ids - old_topics]
        self._write_updates(updates, unlink)
        self._link(links, now)

    def _write_updates(self, updates: list[dict[str, Any]], unlink: list[dict[str, Any]]) -> None:
        conn = self.session.connection()
        if updates:
            stmt = (
                update(SUBSCRIBERS)
                .where(SUBSCRIBERS.c.id == bindparam("b_id"))
                .values(
                    {
                        k: bindparam(f"b_{k}")
                        for k in ("name", "timezone", "delivery_hour", "max_papers", *_INTERESTS)
                    }
                )
            )
            conn.execute(stmt, updates)
        if unlink:
            unlinking = delete(SUBSCRIPTIONS).where(
                SUBSCRIPTIONS.c.subscriber_id == bindparam("b_sid"),
                SUBSCRIPTIONS.c.topic_id == bindparam("b_tid"),
            )
            conn.execute(unlinking, unlink)

    def _link(self, links: list[tuple[int, int]], now: datetime) -> None:
        if not links:
            return
        created = _db_values(self.session, SUBSCRIPTIONS, {"created_at": now})["created_at"]
        stmt = insert_or_ignore(self.session, SUBSCRIPTIONS)
        rows = [{"subscriber_id": s, "topic_id": t, "created_at": created} for s, t in links]
        _executemany(self.session, stmt, rows)


_INTERESTS = ("interests", "interests_model", "interests_vector")


def _interest_columns(row: _Row, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a row's interests columns: the current ones when its cell is empty or the same."""
    if current is not None and row.interests in (None, current["interests"]):
        return {k: current[k] for k in _INTERESTS}
    model, vector = row.embedded or (None, None)
    return {"interests": row.interests or "", "interests_model": model, "interests_vector": vector}


def _db_values(session: Session, table: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Convert values to what the driver expects, as SQLAlchemy would for each row."""
    dialect = session.get_bind().dialect
    out = {}
    for key, value in values.items():
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        out[key] = process(value) if process and value is not None else value
    return out


def _select_in(session: Session, sql: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """Run a query whose `{}` is a list of placeholders, one per value."""
    # Plain placeholders: SQLAlchemy's expanding IN renders thousands of values slowly.
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    query = sql.format(", ".join([mark] * len(values)))
    return [tuple(r) for r in conn.exec_driver_sql(query, tuple(values))]


def _executemany(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Run an INSERT for many rows of driver-ready values, compiled once."""
    # SQLAlchemy's per-row parameter processing costs more than the database's own work
    # here; the values that need a type conversion are converted once by _db_values.
    conn = session.connection()
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    if compiled.positional:
        pick = itemgetter(*(compiled.positiontup or []))
        params: list[Any] = [pick(row) for row in rows]
    else:
        params = rows
    conn.exec_driver_sql(str(compiled), params)


def _parse_status(value: str) -> SubscriberStatus:
    try:
        return SubscriberStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in SubscriberStatus)
        raise InputError(f"unknown status {quoted(value)} (known: {known})") from None


def import_csv(
    source: str | os.PathLike[str] | IO[Any],
    *,
    session: Session,
    status: SubscriberStatus | str = SubscriberStatus.CONFIRMED,
    defaults: Defaults | None = None,
    batch_size: int = BATCH_SIZE,
    on_progress: Callable[[int], None] | None = None,
    max_errors: int = MAX_REPORTED_ERRORS,
) -> ImportReport:
    """Import subscribers from a CSV file in batches; bad rows are reported and skipped.

    The file is read as a stream, so memory does not grow with its size. An unusable file
    (no header, unknown or missing columns, not UTF-8, not CSV) raises InputError, possibly
    after some batches were written: the caller's transaction must roll back. Existing
    subscribers keep their status; their name, preferences and topics are updated when the
    row gives them, so importing the same file twice changes nothing the second time.
    `on_progress` receives the number of bytes read since its last call.
    """
    status = SubscriberStatus(status)
    if status not in IMPORT_STATUSES:
        raise InputError(f"import status must be confirmed or pending, got {status.value!r}")
    with _open_source(source) as lines:
        report = ImportReport(source=lines.name, max_errors=max_errors)
        importer = _Importer(
            session, report, status, defaults or Defaults(), f"import:{lines.name}"[:64]
        )
        reader = csv.reader(lines)
        header = _read_header(reader, lines.name)
        reported = 0

        def progress() -> None:
            nonlocal reported
            if on_progress is not None:
                on_progress(lines.bytes_read - reported)
                reported = lines.bytes_read

        try:
            _import_rows(reader, header, importer, batch_size, progress)
        except csv.Error as exc:
            raise InputError(
                f"{lines.name}, line {reader.line_num}: not valid CSV: {exc}"
            ) from None
        importer.flush()
        progress()
    report.errors.sort()
    report.subscriber_ids = array("I", (i for i, line in enumerate(importer.written_by) if line))
    return report


def _import_rows(
    reader: Any,
    header: list[str],
    importer: _Importer,
    batch_size: int,
    progress: Callable[[], None],
) -> None:
    width = len(header)
    line = reader.line_num
    for record in reader:
        start, line = line + 1, reader.line_num
        if not record:
            continue
        if len(record) != width:
            importer.report.add_error(start, f"expected {width} fields, got {len(record)}")
            continue
        importer.add(start, dict(zip(header, map(unquote_cell, record), strict=True)))
        if len(importer.pending) >= batch_size:
            importer.flush()
            progress()


# --- export -----------------------------------------------------------------------------


def subscriber_pages(
    session: Session, *, page_size: int = 1000, history: bool = False
) -> Iterator[list[Subscriber]]:
    """Yield every subscriber by id, a page at a time, with their topics (and history)."""
    options = [selectinload(Subscriber.subscriptions).selectinload(Subscription.topic)]
    if history:
        options += [selectinload(Subscriber.consent_events), selectinload(Subscriber.seeds)]
    last_id = 0
    while True:
        query = (
            select(Subscriber)
            .where(Subscriber.id > last_id)
            .options(*options)
            .order_by(Subscriber.id)
            .limit(page_size)
        )
        page = list(session.scalars(query))
        if not page:
            return
        yield page
        last_id = page[-1].id
        session.expunge_all()  # keep memory flat however many subscribers there are


def export_csv(out: IO[str], *, session: Session) -> int:
    """Write every subscriber to `out` as CSV, the import format; return the count."""
    count = 0
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for page in subscriber_pages(session):
        for subscriber in page:
            writer.writerow(_csv_row(subscriber))
            count += 1
    return count


def iso_time(value: object) -> str:
    """Write a timestamp as JSON text (for json.dumps' default=)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _csv_row(subscriber: Subscriber) -> list[Any]:
    cells = [
        subscriber.email,
        subscriber.name,
        TOPIC_SEPARATOR.join(topic_slugs(subscriber)),
        subscriber.timezone,
        subscriber.delivery_hour,
        subscriber.max_papers,
        subscriber.status.value,
        subscriber.interests or "",
    ]
    return [quote_cell(c) if isinstance(c, str) else c for c in cells]


def quote_cell(value: str) -> str:
    """Put a quote before a cell a spreadsheet would run as a formula."""
    # Quotes already there are looked through ("'=x" becomes "''=x"), so that
    # unquote_cell() can tell the quote added here from the cell's own.
    return "'" + value if _is_formula(value) else value


def unquote_cell(value: str) -> str:
    """Remove the quote quote_cell() added, and only that one."""
    return value[1:] if value.startswith("'") and _is_formula(value) else value


def _is_formula(value: str) -> bool:
    return value.lstrip("'").startswith(FORMULA_STARTS)
