"""The `[[sources]]` tables of newsletter.toml: each a source to fetch, with its own schedule.

    [[sources]]
    kind = "arxiv"                       # a source's name (`newsletter papers sources`)
    name = "magnets"                     # how this one is called: logs, `papers sources`
    categories = ["cond-mat.str-el", "cond-mat.supr-con"]
    cron = "30 1 * * mon-fri"            # when it is fetched (UTC); default scheduler_fetch_cron

    [[sources]]
    kind = "feed"
    name = "nature-neuroscience"
    url = "https://www.nature.com/neuro.rss"

Core checks what it can without the papers registry: the keys, their types, the names'
spelling and uniqueness, the cron lines and the addresses. Whether a kind exists and takes
those categories is the registry's to say (`papers.sources.registry.scheduled_sources`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from newsletter.core.errors import ConfigError

KEYS = ("kind", "name", "url", "categories", "cron")
MAX_TABLES = 100  # a list of sources, not a crawl
MAX_CATEGORIES = 200
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # a fetch marker holds one in 64 characters
_URL = re.compile(r"https?://[^\s/]+\S*")


@dataclass(frozen=True)
class SourceTable:
    """One `[[sources]]` table, its shape checked."""

    kind: str
    name: str
    url: str | None = None
    categories: tuple[str, ...] = ()
    cron: str | None = None  # None: scheduler_fetch_cron


def as_toml(tables: tuple[SourceTable, ...]) -> str:
    """Write the tables back as `[[sources]]` TOML, as `newsletter config` prints them."""
    blocks = []
    for table in tables:
        lines = ["[[sources]]"]
        for key in KEYS:
            value = getattr(table, key)
            if value:
                shown = ", ".join(json.dumps(v) for v in value) if key == "categories" else None
                lines.append(f"{key} = [{shown}]" if shown is not None else f"{key} = "
                             f"{json.dumps(value, ensure_ascii=False)}")  # fmt: skip
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def as_dicts(tables: tuple[SourceTable, ...]) -> list[dict[str, Any]]:
    """Return the tables as plain values, each key given (for `newsletter config --json`)."""
    return [dataclasses.asdict(table) | {"categories": list(table.categories)} for table in tables]


def parse_source_tables(
    raw: Any, where: str, *, check_cron: Callable[[str], str]
) -> tuple[SourceTable, ...]:
    """Return the tables as SourceTables; ConfigError names the first wrong one in one line.

    `check_cron` returns what is wrong with a cron line, or "" (the settings' own check).
    """
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"{where}sources must be [[sources]] tables")
    if len(raw) > MAX_TABLES:
        raise ConfigError(f"{where}more than {MAX_TABLES} [[sources]] tables")
    tables = tuple(
        _table(t, f"{where}[[sources]] table {n}: ", check_cron) for n, t in enumerate(raw, 1)
    )
    seen: set[str] = set()
    for table in tables:
        if table.name in seen:
            raise ConfigError(f"{where}two [[sources]] tables are named {table.name!r}")
        seen.add(table.name)
    return tables


def _table(raw: dict[str, Any], where: str, check_cron: Callable[[str], str]) -> SourceTable:
    unknown = [key for key in raw if key not in KEYS]
    if unknown:
        raise ConfigError(f"{where}unknown key {unknown[0]!r} (keys: {', '.join(KEYS)})")
    kind = _text(raw, "kind", where)
    if not kind:
        raise ConfigError(f"{where}needs kind, a source's name such as arxiv or feed")
    name = _text(raw, "name", where) or kind
    for key, value in (("kind", kind), ("name", name)):
        if not _NAME.fullmatch(value):
            raise ConfigError(
                f"{where}{key} must be lower-case letters, digits, '-' or '_', not {value!r}"
            )
    url = _text(raw, "url", where) or None
    if url is not None and not _URL.fullmatch(url):
        raise ConfigError(f"{where}url must be an http(s) address, not {url!r}")
    cron = _text(raw, "cron", where) or None
    if cron is not None and (problem := check_cron(cron)):
        raise ConfigError(f"{where}cron {problem}, not {cron!r}")
    return SourceTable(kind, name, url, _categories(raw, where), cron)


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}{key} must be text")
    return value.strip()


def _categories(raw: dict[str, Any], where: str) -> tuple[str, ...]:
    value = raw.get("categories", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}categories must be a list of names")
    if len(value) > MAX_CATEGORIES:
        raise ConfigError(f"{where}more than {MAX_CATEGORIES} categories")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
