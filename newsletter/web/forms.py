"""Validate the web forms into Preferences, with one clear message per bad field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from newsletter.audience.signup import Preferences
from newsletter.audience.validation import (
    mailable_email,
    split_rules,
    validate_frequency,
    validate_hour,
    validate_interests,
    validate_max_papers,
    validate_name,
    validate_timezone,
    validate_weekday,
)
from newsletter.core.config import Settings
from newsletter.core.errors import InputError
from newsletter.core.models import Frequency, Subscriber
from newsletter.matching.interests import MAX_INTERESTS_LENGTH

RULE_FIELDS = ("follow_authors", "muted_words", "personal_keywords")
RULE_LABELS = {
    "follow_authors": "followed authors",
    "muted_words": "muted words",
    "personal_keywords": "keywords",
}
# What the sign-up form shows (and topics): a POST of anything else is not read. The confirm
# page shows the same fields but the address.
SIGNUP_FIELDS = ("email", "name", "interests", "frequency", "hour", "timezone")
CONFIRM_FIELDS = ("name", "interests", "frequency", "hour", "timezone")
PREFERENCE_FIELDS = (
    "email", "name", "interests", "frequency", "weekly_day", "hour", "timezone", "max_papers",
    *RULE_FIELDS,
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_FIELD_LENGTH = 400
# Bots fill every field; people never see this one (hidden by CSS and from screen readers).
HONEYPOT = "website"
# Longer fields: a list of names or words, a paragraph of interests (cut past the length
# the check refuses, so that the reader is told rather than cut short).
_LIMITS = {
    **dict.fromkeys(RULE_FIELDS, MAX_FIELD_LENGTH * 8),
    "interests": 4 * MAX_INTERESTS_LENGTH + 1,
}


@dataclass
class FormResult:
    """A parsed form: the values to show again, the errors by field, and the result."""

    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    email: str = ""
    prefs: Preferences | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def subscribe_values(settings: Settings) -> dict[str, Any]:
    """Return the subscribe form's initial values."""
    return {
        "email": "",
        "name": "",
        "interests": "",
        "topics": [],
        "frequency": Frequency.DAILY.value,
        "weekly_day": "0",
        "hour": str(settings.default_hour),
        "timezone": settings.default_timezone,
        "max_papers": str(settings.default_max_papers),
        "paused": False,
    }


def subscriber_values(subscriber: Subscriber) -> dict[str, Any]:
    """Return the preferences form's values for a stored subscriber."""
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "interests": subscriber.interests or "",
        "topics": sorted(s.topic.slug for s in subscriber.subscriptions),
        "frequency": subscriber.frequency.value,
        "weekly_day": str(subscriber.weekly_day),
        "hour": str(subscriber.delivery_hour),
        "timezone": subscriber.timezone,
        "max_papers": str(subscriber.max_papers),
        "paused": subscriber.paused,
        **{field: "; ".join(getattr(subscriber, field) or ()) for field in RULE_FIELDS},
    }


def signup_values(prefs: Preferences, slugs: Mapping[int, str]) -> dict[str, Any]:
    """Return the confirm form's values: the choices of the sign-up it confirms."""
    return {
        "name": prefs.name,
        "interests": prefs.interests or "",
        "topics": [slugs[t] for t in prefs.topic_ids if t in slugs],
        "frequency": prefs.frequency.value,
        "weekly_day": str(prefs.weekly_day),
        "hour": str(prefs.hour),
        "timezone": prefs.timezone,
        "max_papers": str(prefs.max_papers),
        "paused": False,
    }


def parse_subscribe(
    form: MultiDict[str, str], topics: Mapping[str, int], settings: Settings
) -> FormResult:
    """Validate the subscribe form: address, name and delivery preferences."""
    values = dict(subscribe_values(settings), **_raw(form, SIGNUP_FIELDS))
    result = FormResult(values)
    result.email = _check(result, "email", _email, _email_message) or ""
    result.prefs = _prefs(result, topics, with_pause=False)
    if result.errors:
        result.prefs = None
    return result


def parse_confirm(
    form: MultiDict[str, str], topics: Mapping[str, int], signup: dict[str, Any]
) -> FormResult:
    """Validate the confirm form: the sign-up's `signup_values` as its owner left them."""
    result = FormResult(dict(signup, **_raw(form, CONFIRM_FIELDS)))
    result.prefs = _prefs(result, topics, with_pause=False)
    if result.errors:
        result.prefs = None
    return result


def parse_preferences(form: MultiDict[str, str], topics: Mapping[str, int]) -> FormResult:
    """Validate the preferences form."""
    result = FormResult(_raw(form, PREFERENCE_FIELDS))
    result.prefs = _prefs(result, topics, with_pause=True)
    if result.errors:
        result.prefs = None
    return result


def is_bot(form: MultiDict[str, str]) -> bool:
    """Return True when the hidden honeypot field was filled in."""
    return bool(form.get(HONEYPOT, "").strip())


def _raw(form: MultiDict[str, str], fields: tuple[str, ...]) -> dict[str, Any]:
    """Return the given fields that the form holds, each cut to a sane length."""
    values: dict[str, Any] = {}
    for key in fields:
        if key in form:
            values[key] = form.get(key, "")[: _LIMITS.get(key, MAX_FIELD_LENGTH)]
    values["topics"] = [t.strip().lower() for t in form.getlist("topics") if t.strip()]
    values["paused"] = form.get("paused") == "on"
    return values


def _prefs(result: FormResult, topics: Mapping[str, int], *, with_pause: bool) -> Preferences:
    v = result.values
    chosen = [topics[s] for s in dict.fromkeys(v.get("topics", [])) if s in topics]
    interests = None
    if "interests" in v:
        interests = _check(result, "interests", validate_interests, _interests_message)
    if not chosen and not interests and "interests" not in result.errors:
        result.errors["topics"] = "Choose at least one topic, or describe your interests."
    return Preferences(
        topic_ids=tuple(chosen),
        name=_check(result, "name", validate_name, _name_message) or "",
        frequency=_check(
            result, "frequency", validate_frequency, lambda _: "Choose daily or weekly."
        )
        or Frequency.DAILY,
        weekly_day=_check(
            result, "weekly_day", validate_weekday, lambda _: "Choose a day of the week."
        )
        or 0,
        hour=_check(result, "hour", validate_hour, lambda _: "Choose an hour from 0 to 23.") or 0,
        timezone=_check(result, "timezone", validate_timezone, _timezone_message) or "UTC",
        max_papers=_check(
            result, "max_papers", validate_max_papers, lambda _: "Choose from 1 to 50 papers."
        )
        or 1,
        paused=bool(v.get("paused")) if with_pause else False,
        **{field: _rules(result, field) for field in RULE_FIELDS if field in v},
        interests=interests,
    )


def _rules(result: FormResult, field: str) -> tuple[str, ...] | None:
    try:
        return tuple(split_rules(str(result.values[field]), RULE_LABELS[field]))
    except InputError as exc:
        result.errors[field] = f"{str(exc)[:1].upper()}{str(exc)[1:]}."
        return None


def _check(
    result: FormResult, name: str, parse: Callable[[Any], Any], message: Callable[[str], str]
) -> Any:
    """Parse one field, recording a message instead of raising."""
    raw = str(result.values.get(name, ""))
    try:
        return parse(raw)
    except (InputError, ValueError) as exc:
        result.errors[name] = message(str(exc))
        return None


def _email(value: str) -> str:
    if not value.strip():
        raise InputError("")
    return mailable_email(value)


def _email_message(detail: str) -> str:
    if not detail:
        return "Enter your email address."
    # email-validator's reason after the address, e.g. "The domain name x is not valid."
    reason = detail.split(": ", 1)[-1]
    return f"Enter a valid email address, like name@example.org. {reason}"


def _name_message(detail: str) -> str:
    if "control character" in detail:
        return "Use a name without control characters, invisible ones or encoded line breaks."
    return "Use a shorter name, on one line." if detail else "Check your name."


def _interests_message(detail: str) -> str:
    if "longer" in detail:
        return f"Keep your interests to {MAX_INTERESTS_LENGTH:,} characters or fewer."
    return "Write your interests as plain text, without control characters or invisible ones."


def _timezone_message(detail: str) -> str:
    return "Choose your time zone from the list."
