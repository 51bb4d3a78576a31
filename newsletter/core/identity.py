"""What the list calls itself: its name, tagline, List-Id and the digest's subject line.

One place for each, so that the web pages, the emails, the headers and `doctor` agree: the
name is the `list_name` setting, else the From header's display name, else "Daily Papers";
the List-Id is the `list_id` setting, else that name and an id under the From domain.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config checks subjects with this module: no import back at run time
    from newsletter.core.config import Settings

DEFAULT_LIST_NAME = "Daily Papers"
# The fields a `subject` setting may use; `check_subject` refuses any other.
SUBJECT_FIELDS = ("list_name", "kind", "date", "top_title", "more", "count")
TOP_TITLE_MAX = 56
_NOT_ID = re.compile(r"[^a-z0-9]+")


# Every message asks these: each is worked out once per distinct setting (a few strings).


def list_name(settings: Settings) -> str:
    """Return the list's name as readers see it on pages and in emails."""
    return _list_name(settings.list_name, settings.from_address)


def from_name(settings: Settings) -> str:
    """Return the display name of the From header, or ""."""
    return _from_name(settings.from_address)


def from_domain(settings: Settings) -> str:
    """Return the From address's domain as headers carry it: lower case, an internationalised
    one as its A-label ("" when it has none, or none that can be written in ASCII)."""
    return _from_domain(settings.from_address)


def list_id(settings: Settings) -> str:
    """Return the List-Id value: the setting, or `Name <name-as-id.from-domain>`."""
    return _list_id(settings.list_id, settings.list_name, settings.from_address)


@lru_cache(maxsize=16)
def _list_name(configured: str, from_address: str) -> str:
    return configured.strip() or _from_name(from_address) or DEFAULT_LIST_NAME


@lru_cache(maxsize=16)
def _from_name(from_address: str) -> str:
    return parseaddr(from_address)[0].strip()


@lru_cache(maxsize=16)
def _from_domain(from_address: str) -> str:
    domain = parseaddr(from_address)[1].rpartition("@")[2].lower()
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return ""


@lru_cache(maxsize=16)
def _list_id(configured: str, configured_name: str, from_address: str) -> str:
    if configured.strip():
        return configured.strip()
    name = _list_name(configured_name, from_address)
    return f"{_quoted(name)} <{_id_label(name)}.{_from_domain(from_address) or 'localhost'}>"


def _id_label(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    label = _NOT_ID.sub("-", ascii_name.lower()).strip("-")[:50].strip("-")
    return label or "papers"


def _quoted(name: str) -> str:
    # A display name with specials ("," "<" ...) must be quoted to stay one phrase.
    if re.fullmatch(r"[A-Za-z0-9 !#$%&'*+\-/=?^_`{|}~]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_subject(template: str) -> str:
    """Return what is wrong with a `subject` setting, or "" (for the settings registry)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a subject line with {{fields}} ({exc}; write {{{{ for a brace)"
    fields = [name for _, name, _, _ in parsed if name is not None]
    if any(spec or conv for _, name, spec, conv in parsed if name is not None):
        return "takes plain {fields}, without a format or conversion"
    unknown = sorted({f for f in fields if f not in SUBJECT_FIELDS})
    if unknown:
        known = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
        return f"uses unknown field {{{unknown[0]}}} (known: {known})"
    return ""


@dataclass(frozen=True)
class SubjectFields:
    """The values a digest's subject line is made of."""

    kind: str
    date: str
    top_title: str
    count: int

    def line(self, settings: Settings) -> str:
        """Return the subject line the `subject` setting makes of these values."""
        more = f" (+{self.count - 1} more)" if self.count > 1 else ""
        return settings.subject.format(
            list_name=list_name(settings),
            kind=self.kind,
            date=self.date,
            top_title=shorten_title(self.top_title),
            more=more,
            count=self.count,
        )


def shorten_title(title: str) -> str:
    """Return a title on one line, cut at a word to fit a subject beside the date."""
    one = " ".join(title.split())
    if len(one) <= TOP_TITLE_MAX:
        return one
    cut = one[: TOP_TITLE_MAX - 1]
    if " " in cut[TOP_TITLE_MAX // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"
