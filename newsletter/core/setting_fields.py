"""A setting as a field of Settings: its type, default, help and checks; raw values (from the
TOML file, the environment or calling code) parsed to its type, and values written as TOML.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from newsletter.core.urls import mask_url_password

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Setting:
    """One setting: its name, type, default, help, and the checks its value must pass."""

    name: str
    kind: type
    default: Any
    help: str
    env: str = ""  # the NEWSLETTER_* variable that overrides it, if any
    secret: bool = False
    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str] | None = None  # returns what is wrong, or ""
    shown_default: str = ""  # how the default reads where the value itself would mislead
    mask: Callable[[str], str] | None = None  # hides the password the way its reader parses

    def parse(self, raw: Any) -> Any:
        """Return raw as this setting's type, checked; raise ValueError saying what is wrong."""
        value = _PARSERS[self.kind](raw)
        problem = self._problem(value)
        if problem:
            raise ValueError(f"{problem}, got {toml_value(raw)}")
        return value

    def masked(self, value: Any) -> Any:
        """Return value with a secret, or the password in a URL, hidden."""
        if self.secret:
            return "****" if value else ""
        if self.mask is not None and isinstance(value, str):
            return self.mask(value)
        if isinstance(value, str) and "://" in value:
            return mask_url_password(value)
        return value

    def default_text(self) -> str:
        """Return the default as documented: a TOML value, or words where that misleads."""
        if self.shown_default or self.default in ("", ()):
            return self.shown_default or "empty"
        return toml_value(self.default)

    def _problem(self, value: Any) -> str:
        if self.at_least is not None and value < self.at_least:
            return f"must be at least {self.at_least:g}"
        if self.above is not None and value <= self.above:
            return f"must be more than {self.above:g}"
        if self.at_most is not None and value > self.at_most:
            return f"must be at most {self.at_most:g}"
        items = value if isinstance(value, tuple) else (value,)
        if self.choices and any(item not in self.choices for item in items):
            return f"must be {' or '.join(self.choices)}"
        return self.check(value) if self.check and value != self.default else ""


def setting(default: Any, help: str, **options: Any) -> Any:
    """Declare a field of Settings with its help text and checks (see `Setting`)."""
    return field(default=default, metadata={"help": help, **options})


def _parse_str(raw: Any) -> str:
    if isinstance(raw, os.PathLike):  # a folder or file given as a Path by calling code
        raw = os.fspath(raw)
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {toml_value(raw)}")
    return raw


def _parse_int(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", raw):
        return int(raw)
    raise ValueError(f"expected a whole number, got {toml_value(raw)}")


def _parse_float(raw: Any) -> float:
    value = math.nan
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and len(raw) < 40:
        try:
            value = float(raw)
        except ValueError:
            pass
    if not math.isfinite(value):
        raise ValueError(f"expected a number, got {toml_value(raw)}")
    return value


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    word = raw.strip().lower() if isinstance(raw, str) else None
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    # A typo must not quietly switch a safety check off (or on).
    raise ValueError(f"expected true or false, got {toml_value(raw)}")


def _parse_names(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise ValueError(f"expected a list of names, got {toml_value(raw)}")
    return tuple(dict.fromkeys(v.strip() for v in raw if v.strip()))


_PARSERS: dict[type, Callable[[Any], Any]] = {
    str: _parse_str,
    int: _parse_int,
    float: _parse_float,
    bool: _parse_bool,
    tuple: _parse_names,
}
KINDS = {"str": str, "int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple}


def toml_value(value: Any) -> str:
    """Write a value as TOML would, for messages and `newsletter config`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)
