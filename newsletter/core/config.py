"""Settings: one typed registry, read from a TOML file and overridden by the environment.

Every setting is a field of `Settings` with a default, a one-line help text and its checks
(declared and parsed as `setting_fields` says); `SETTINGS` lists them in order for `newsletter
config` and the README.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.core.errors import ConfigError, InputError
from newsletter.core.identity import check_subject
from newsletter.core.secret_key import check_secret_key, stored_secret_key
from newsletter.core.setting_fields import KINDS, Setting, setting
from newsletter.core.source_tables import SourceTable, parse_source_tables
from newsletter.core.taxonomy import canonical_code, closest_code
from newsletter.core.urls import mask_database_url, mask_transport_url

CONFIG_FILENAME = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
# Settings and topics files are a few levels deep; deeper ones are not ours, and nesting
# in the thousands would exhaust the stack of whatever walks the data next.
TOML_MAX_DEPTH = 16
DEFAULT_FETCH_CRON = "0 6 * * mon-fri"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_ADDRESS = re.compile(r"[^@\s\x00-\x1f\x7f?&<>\"]+@[^@\s\x00-\x1f\x7f?&<>\"]+")
_LOCAL_PART = re.compile(r"[A-Za-z0-9._-]+")
_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")  # a fetch marker holds one in 64


# --- checks of single values: each returns what is wrong, or "" -----------------------------


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be a time zone name such as Europe/London"
    return ""


def _clock_time(value: str) -> str:
    if not value:
        return ""
    try:
        time.fromisoformat(value)
    except ValueError:
        return "must be a time of day HH:MM"
    return ""


def _cron_line(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger  # slow to import: only for a new line

    try:
        CronTrigger.from_crontab(value, timezone=UTC)
    except ValueError:
        return "must be a cron line of five fields such as 0 6 * * mon-fri"
    return ""


def _domain(value: str) -> str:
    if value and not _DOMAIN.fullmatch(value):
        return "must be a domain name such as bounces.example.org"
    return ""


def _address(value: str) -> str:
    if value and not _ADDRESS.fullmatch(value):
        return "must be an address such as unsubscribe@example.org"
    return ""


def _networks(value: tuple[str, ...]) -> str:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"must be IP addresses or networks such as 10.0.0.0/8, not {item!r}"
    return ""


def _feed_urls(value: tuple[str, ...]) -> str:
    for item in value:
        if not re.fullmatch(r"https?://[^\s/]+\S*", item):
            return f"must be http(s) addresses of feeds, not {item!r}"
    return ""


def _arxiv_categories(value: tuple[str, ...]) -> str:
    for item in value:
        if canonical_code(item) is None:
            closest = closest_code(item)
            hint = f"; did you mean {closest}?" if closest else " such as cs.LG or cond-mat"
            return f"must be arXiv categories or archives, not {item!r}{hint}"
    return ""


def _source_names(value: tuple[str, ...]) -> str:
    for item in value:
        if not _SOURCE_NAME.fullmatch(item):
            return f"must be source names such as hf or arxiv, not {item!r}"
    return ""


def _one_line(value: str) -> str:
    # Names end up in headers (List-Id, Subject): a control character there splits a field.
    if any(unicodedata.category(ch)[0] == "C" for ch in value):
        return "must be one line of text, without control characters"
    return ""


def _subject(value: str) -> str:
    return _one_line(value) or check_subject(value)


def _local_part(value: str) -> str:
    if not _LOCAL_PART.fullmatch(value):
        return "must be letters, digits, '.', '_' or '-'"
    return ""


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one running instance; every value is checked on creation."""

    # --- core: the environment overrides these -------------------------------------------
    database_url: str = setting(
        "sqlite:///var/newsletter.db", "SQLAlchemy URL of the database", env="DATABASE_URL",
        mask=mask_database_url,
    )  # fmt: skip
    transport: str = setting(
        "maildir:var/outbox", "where mail goes: maildir:PATH, or an smtp:// or smtps:// URL",
        env="TRANSPORT", mask=mask_transport_url,
    )  # fmt: skip
    base_url: str = setting(
        "http://localhost:8000", "public URL of the web pages; links in emails use it",
        env="BASE_URL",
    )  # fmt: skip
    from_address: str = setting(
        "Daily Papers <papers@localhost>", "the From header and envelope sender", env="FROM"
    )
    secret_key: str = setting(
        "", "signs the links in emails; at least 32 bytes, keep it stable",
        env="SECRET_KEY", secret=True, shown_default="generated once into var/secret_key",
    )  # fmt: skip
    postal_address: str = setting(
        "", "postal address printed in every footer (CAN-SPAM, GDPR)", env="POSTAL_ADDRESS"
    )
    var_dir: str = setting(
        "var", "folder of the generated secret key and of kept bounce messages", env="VAR_DIR"
    )
    templates_dir: str = setting(
        "", "folder whose email/* and web/* files override the shipped templates of that name",
        env="TEMPLATES_DIR",
    )  # fmt: skip
    list_name: str = setting(
        "", "the list's name on pages and in emails", check=_one_line,
        shown_default='the From name, else "Daily Papers"',
    )  # fmt: skip
    list_tagline: str = setting(
        "research papers on the topics you choose, by email",
        "one line under the list's name on its pages", check=_one_line,
    )  # fmt: skip
    subject: str = setting(
        "Your {kind} papers — {date}: {top_title}{more}",
        "a digest's subject; fields {list_name} {kind} {date} {top_title} {more} {count}",
        check=_subject,
    )  # fmt: skip
    list_id: str = setting(
        "", "the List-Id header ('Name <id.example.org>')", env="LIST_ID", check=_one_line,
        shown_default="the list's name <name.from-domain>",
    )  # fmt: skip
    empty_policy: str = setting(
        "skip", "a reader with no matching paper is skipped, or (note) gets a short note",
        env="EMPTY_POLICY", choices=("skip", "note"),
    )  # fmt: skip
    # --- the database ----------------------------------------------------------------------
    sqlite_busy_timeout: float = setting(
        30.0, "seconds a SQLite writer waits for another's lock before giving up", above=0
    )
    # --- matching and sources --------------------------------------------------------------
    match_threshold: float = setting(1.0, "score at which a paper enters a topic's digest", above=0)
    # The instance's: whether this machine spends ~0.1 s of CPU per new paper on the model.
    match_neighbours: bool = setting(
        True, "embed new papers and match by meaning as well as words (false: keywords alone)",
        env="MATCH_NEIGHBOURS",
    )  # fmt: skip
    hf_url: str = setting("https://huggingface.co", "Hugging Face address the listing comes from")
    arxiv_api_url: str = setting("https://export.arxiv.org", "arXiv API address")
    arxiv_rss_url: str = setting(
        "https://rss.arxiv.org", "address of arXiv's announcement feeds (/rss/CATEGORIES)"
    )
    biorxiv_api_url: str = setting(
        "https://api.biorxiv.org", "bioRxiv and medRxiv API address (one API serves both)"
    )
    http_timeout: float = setting(20.0, "seconds to wait for a source's answer", above=0)
    http_retries: int = setting(3, "tries of one source request before a fetch fails", at_least=1)
    http_backoff: float = setting(
        1.0, "seconds before retrying a source request; doubles each time", at_least=0
    )
    source_max_bytes: int = setting(
        20 * 1024 * 1024, "largest answer read from a source, in bytes; a larger one fails",
        at_least=1024,
    )  # fmt: skip
    # arXiv asks for at most one request every 3 seconds.
    arxiv_request_interval: float = setting(3.0, "seconds between two arXiv requests", at_least=0)
    user_agent: str = setting(
        "daily-papers-newsletter/0.1 (+https://github.com/daily-papers-newsletter)",
        "User-Agent of requests to the sources",
    )
    # --- ranking: how a reader's signals order their digest --------------------------------
    # Chosen on the tuning days of the labelled sets (benchmarks/readers.py --tune).
    ranking_votes_weight: float = setting(
        1.0, "how far likes and dislikes move a paper: a likeness gap of 1 passes all the day's",
        at_least=0,
    )  # fmt: skip
    ranking_topic_weight: float = setting(
        2.0, "how far the chance of a like, from the topics of what a reader voted on, moves a "
        "paper", at_least=0,
    )  # fmt: skip
    ranking_drop_similarity: float = setting(
        0.35, "a paper this like, in words, what a reader disliked (and less like a like) drops",
        at_least=0,
    )  # fmt: skip
    ranking_drop_chance: float = setting(
        0.3, "a paper with less chance of a like by its topics (and less like a like) drops",
        at_least=0, at_most=1,
    )  # fmt: skip
    ranking_min_votes_to_drop: int = setting(
        3, "votes a reader cast before the topics of what they voted on sink or drop papers",
        at_least=1,
    )  # fmt: skip
    ranking_discoveries: int = setting(
        2, "papers from outside a reader's topics that join for resembling what they liked",
        at_least=0, at_most=50,
    )  # fmt: skip
    ranking_discovery_min_likes: int = setting(
        3, "likes (own papers count) a reader needs before papers from outside their topics join",
        at_least=1,
    )  # fmt: skip
    ranking_discovery_similarity: float = setting(
        0.3, "likeness in words to what a reader liked from which an outside paper joins",
        at_least=0,
    )  # fmt: skip
    # Below 3, more unwanted papers joined than wanted on the dev papers of the labelled sets.
    ranking_own_papers_standing: float = setting(
        3.0, "standing among recent papers, near a reader's own papers, from which one joins",
    )  # fmt: skip
    ranking_meaning_discovery_similarity: float = setting(
        0.5, "cosine to a reader's own papers from which one joins where no standing can be "
        "judged",
    )  # fmt: skip
    # Fitted by benchmarks/fit_interests.py (see there for the data and the figures).
    ranking_interest_standing: float = setting(
        1.3, "standing among recent papers from which a paper is close to a reader's interests"
    )
    # --- new subscribers -------------------------------------------------------------------
    default_max_papers: int = setting(
        10, "papers per digest of a new subscriber", at_least=1, at_most=50
    )
    default_hour: int = setting(
        8, "local delivery hour of a new subscriber", at_least=0, at_most=23
    )
    default_timezone: str = setting("UTC", "time zone of a new subscriber", check=_time_zone)
    # --- sending ---------------------------------------------------------------------------
    max_attempts: int = setting(5, "tries of one delivery before it fails", at_least=1)
    retry_base_seconds: float = setting(
        60.0, "wait before retrying a delivery; doubles per attempt, with jitter", at_least=0
    )
    retry_max_seconds: float = setting(
        3600.0, "longest wait before retrying a delivery", at_least=0
    )
    retry_wait_seconds: float = setting(
        0.0, "how long one send run waits for retries that are not yet due", at_least=0
    )
    send_batch_size: int = setting(500, "deliveries claimed at a time", at_least=1)
    build_process_from: int = setting(
        2000, "a run owing this many messages builds them in a second process; 0: never",
        at_least=0,
    )  # fmt: skip
    claim_lease_seconds: float = setting(
        60.0, "a sender's claim on its rows lasts this long past its last heartbeat", above=0
    )
    host_name: str = setting(
        "", "this machine's name in claims and leases (host:pid); empty: the host name",
        shown_default="the host name",
    )
    confirm_above: int = setting(
        1000, "a send to more recipients asks first, or needs --yes from cron", at_least=0
    )
    unsubscribe_mailto: str = setting(
        "", "address of the mailto: unsubscribe; empty: unsubscribe@ the From domain",
        check=_address,
    )  # fmt: skip
    dkim_selector: str = setting("", "DKIM selector; DKIM signs when all three are set")
    dkim_domain: str = setting("", "DKIM signing domain (d=)", check=_domain)
    dkim_private_key_file: str = setting("", "PEM file of the DKIM private key")
    # Relays and mailbox providers judge a sender by its first answers: a bad list import
    # or a block shows there, and going on would burn the domain's standing.
    guard_window: int = setting(
        1000, "an edition's first answers (since a resume) the guard judges", at_least=1
    )
    guard_address_failure_rate: float = setting(
        0.05, "share of address failures (5.1.x, hard bounces) that pauses an edition",
        above=0, at_most=1,
    )  # fmt: skip
    guard_block_rate: float = setting(
        0.02, "share of policy blocks (5.7.x, blocked bounces) that pauses an edition",
        above=0, at_most=1,
    )  # fmt: skip
    # The big mailbox providers' bulk-sender limit is 0.3% of messages reported as spam.
    complaint_rate_limit: float = setting(
        0.003, "the last edition's complaint rate above which the next send needs --force",
        above=0, at_most=1,
    )  # fmt: skip
    # On a small list one reader is a large share: 3 is the count that 0.3% stands for on
    # 1000 messages, below which providers' own complaint rates are barely measured.
    complaint_min_count: int = setting(
        3, "complaints about the last edition needed, besides the rate, to hold the next",
        at_least=1,
    )  # fmt: skip
    # --- web pages -------------------------------------------------------------------------
    confirm_max_age_hours: int = setting(72, "hours a confirmation link works", at_least=1)
    pending_max_age_days: int = setting(
        7, "days before purge-pending forgets an unconfirmed sign-up", at_least=1
    )
    mail_interval_minutes: int = setting(
        10, "the sign-up form mails one address at most once in this many minutes", at_least=1
    )
    subscribe_per_ip_per_hour: int = setting(
        20, "sign-ups accepted per visitor network per hour", at_least=1
    )
    resubscribe_window_hours: int = setting(
        24, "hours in which an unsubscribe link can undo its opt-out", at_least=1
    )
    votes_per_link_per_hour: int = setting(
        10, "vote POSTs counted per feedback link per hour", at_least=1
    )
    votes_per_ip_per_hour: int = setting(
        300, "vote POSTs counted per visitor network per hour", at_least=1
    )
    web_proxy_count: int = setting(
        0, "reverse proxies in front whose X-Forwarded-* headers are trusted", at_least=0
    )
    web_trusted_proxies: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"), "addresses or networks of those proxies; other peers' are ignored",
        check=_networks,
    )  # fmt: skip
    # --- scheduler -------------------------------------------------------------------------
    scheduler_fetch_cron: str = setting(
        DEFAULT_FETCH_CRON, "when the sources are fetched (cron line, UTC)", check=_cron_line
    )
    # Which names are sources is the papers registry's to say: core cannot import it, so it
    # checks the spelling here, and the names where they are used (scheduler, doctor).
    scheduler_sources: tuple[str, ...] = setting(
        ("hf",), "sources the scheduler fetches (`newsletter papers sources` lists them)",
        check=_source_names,
    )  # fmt: skip
    scheduler_feed_urls: tuple[str, ...] = setting(
        (), "journals' feed addresses the feed source fetches (RSS, Atom, JSON Feed)",
        check=_feed_urls,
    )  # fmt: skip
    scheduler_arxiv_categories: tuple[str, ...] = setting(
        (), "arXiv categories or archives (all their subject classes) the scheduler fetches",
        check=_arxiv_categories,
        shown_default="empty: the arXiv source's own, cs.AI, cs.CL, cs.CV, cs.LG",
    )  # fmt: skip
    scheduler_tick_seconds: float = setting(
        300.0, "seconds between two checks for what is due", above=0
    )
    scheduler_staleness_hours: float = setting(
        12.0, "a digest this many hours late is recorded as skipped, not sent", above=0
    )
    scheduler_lease_seconds: float = setting(
        30.0, "a standby takes over after the active scheduler is silent this long", above=0
    )
    scheduler_fetch_backoff_seconds: float = setting(
        300.0, "wait before retrying a failed fetch; doubles each time", above=0
    )
    scheduler_listing_ready: str = setting(
        "", "UTC time HH:MM by which the day's listing is out; empty: the fetch time",
        check=_clock_time,
    )  # fmt: skip
    # --- returned mail ---------------------------------------------------------------------
    bounce_domain: str = setting(
        "", "domain of signed return paths that bring bounces back; empty: none",
        check=_domain,
    )  # fmt: skip
    bounce_prefix: str = setting(
        "bounces", "local part before the + of return paths", check=_local_part
    )
    bounce_require_verp: bool = setting(
        True, "with bounce_domain, act only on reports with a signed return path"
    )
    # A bounce comes back within days; a month also covers weekly digests and slow retries.
    bounce_recent_days: int = setting(
        30, "an unsigned report must quote the Message-ID of a digest sent this many days ago",
        at_least=1,
    )  # fmt: skip
    soft_bounce_limit: int = setting(
        3, "soft bounces within soft_bounce_days that suppress an address", at_least=1
    )
    soft_bounce_days: int = setting(14, "days in which soft bounces count", at_least=1)
    # One run is one transaction over what it read: this bounds its memory and its time.
    bounce_max_messages: int = setting(
        1000, "messages one `bounces process` run reads; the rest wait for the next run",
        at_least=1,
    )  # fmt: skip
    # Not settings: the `[[sources]]` tables of the file, and the file the others were read from.
    sources: tuple[SourceTable, ...] = ()
    config_file: str = ""

    def __post_init__(self) -> None:
        for item in SETTINGS:
            try:
                value = item.parse(getattr(self, item.name))
            except ValueError as exc:
                raise ConfigError(f"setting {item.name}: {exc}") from None
            object.__setattr__(self, item.name, value)


def _registry() -> tuple[Setting, ...]:
    return tuple(
        Setting(f.name, KINDS[str(f.type)], f.default, **f.metadata)
        for f in dataclasses.fields(Settings)
        if "help" in f.metadata
    )


SETTINGS = _registry()
SETTINGS_BY_NAME = {item.name: item for item in SETTINGS}


def default(name: str) -> Any:
    """Return a setting's default: the option classes take theirs from here, never a copy."""
    return SETTINGS_BY_NAME[name].default


def describe_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return each setting's value (secrets masked), default, help and environment variable."""
    return {
        item.name: {
            "value": item.masked(getattr(settings, item.name)),
            "default": item.default,
            "help": item.help,
            "environment": ENV_PREFIX + item.env if item.env else None,
        }
        for item in SETTINGS
    }


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    path = _find_config_file(config_file, env)
    # Each layer is checked on its own, so that an error names the file or the variable, and
    # a wrong value in the file is reported even while the environment overrides it.
    data = _read_toml(path) if path else {}
    tables = data.pop("sources", None)
    values = _parsed(data, f"{path}: ")
    if tables is not None:
        values["sources"] = parse_source_tables(tables, f"{path}: ", check_cron=_cron_line)
        _check_one_source_list(values, f"{path}: ")
    for item in SETTINGS:
        if item.env and ENV_PREFIX + item.env in env:
            raw = env[ENV_PREFIX + item.env]
            values |= _parsed({item.name: raw}, f"{ENV_PREFIX}{item.env}: ")
    values |= _parsed(overrides, "")
    settings = Settings(**values, config_file=str(path) if path else "")
    if settings.secret_key:
        check_secret_key(settings.secret_key, _secret_key_origin(path, env, overrides))
    else:
        settings = dataclasses.replace(settings, secret_key=stored_secret_key(settings.var_dir))
    return settings


def _check_one_source_list(values: Mapping[str, Any], where: str) -> None:
    if values["sources"] and "scheduler_sources" in values:
        raise ConfigError(
            f"{where}scheduler_sources is set beside [[sources]] tables: the tables list "
            "the sources"
        )


def _find_config_file(
    config_file: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    explicit = config_file or env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    local = Path.cwd() / CONFIG_FILENAME
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = parse_toml(path.read_text(encoding="utf-8"), str(path), error=ConfigError)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    # Accept both a flat file and one with a [newsletter] table ([[sources]] beside it or in it).
    table = data.get("newsletter")
    if not isinstance(table, dict):
        return data
    outside = [key for key in data if key not in ("newsletter", "sources")]
    if outside:
        raise ConfigError(f"{path}: setting {outside[0]} is outside the [newsletter] table")
    if "sources" in data and "sources" in table:
        raise ConfigError(f"{path}: [[sources]] tables both inside and outside [newsletter]")
    return dict(table) | ({"sources": data["sources"]} if "sources" in data else {})


def parse_toml(text: str, source: str, *, error: type[InputError] = InputError) -> dict[str, Any]:
    """Parse a TOML document, raising `error` with one line on anything wrong with it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{source}: nested deeper than {TOML_MAX_DEPTH} levels") from None
    except ValueError:  # int() refuses numbers of over 4,300 digits
        raise error(f"{source}: a number has thousands of digits") from None
    if _depth(data, TOML_MAX_DEPTH + 1) > TOML_MAX_DEPTH:
        raise error(f"{source}: nested deeper than {TOML_MAX_DEPTH} levels")
    return data


def _depth(value: Any, limit: int) -> int:
    """Return how deep tables and arrays nest in value, counting at most to limit."""
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth


def _parsed(raw_values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check each value against its setting; a ConfigError names the first wrong one."""
    parsed: dict[str, Any] = {}
    for key, raw in raw_values.items():
        item = SETTINGS_BY_NAME.get(key)
        if item is None:
            raise ConfigError(f"{where}unknown setting {key!r}{_closest_hint(key)}")
        try:
            parsed[key] = item.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}setting {key}: {exc}") from None
    return parsed


def _closest_hint(key: str) -> str:
    close = difflib.get_close_matches(key, SETTINGS_BY_NAME, n=1)
    if close:
        return f": did you mean {close[0]}?"
    return " (README's Configuration section lists every setting)"


def _secret_key_origin(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> str:
    if "secret_key" in overrides:
        return "the secret_key setting"
    if env.get(ENV_PREFIX + "SECRET_KEY"):
        return ENV_PREFIX + "SECRET_KEY"
    return f"secret_key in {path}"
