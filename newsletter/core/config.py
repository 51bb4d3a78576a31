"""Settings: one typed object, read from a TOML file and overridden by the environment."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from newsletter.core.errors import ConfigError, InputError

log = logging.getLogger(__name__)

CONFIG_FILENAME = "newsletter.toml"
ENV_PREFIX = "NEWSLETTER_"
SECRET_KEY_FILE = "secret_key"
SECRET_FIELDS = frozenset({"secret_key"})
# Links are signed with HMAC-SHA1 (itsdangerous): a shorter key is guessable offline.
SECRET_KEY_MIN_BYTES = 32
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# Settings and topics files are a few levels deep; deeper ones are not ours, and nesting
# in the thousands would exhaust the stack of whatever walks the data next.
TOML_MAX_DEPTH = 16

# Environment names are a contract with deploy tooling: do not rename them.
ENV_FIELDS = {
    "DATABASE_URL": "database_url",
    "TRANSPORT": "transport",
    "BASE_URL": "base_url",
    "FROM": "from_address",
    "SECRET_KEY": "secret_key",
    "POSTAL_ADDRESS": "postal_address",
    "VAR_DIR": "var_dir",
    "TEMPLATES_DIR": "templates_dir",
    "LIST_ID": "list_id",
    "EMPTY_POLICY": "empty_policy",
}


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one running instance."""

    database_url: str = "sqlite:///var/newsletter.db"
    transport: str = "maildir:var/outbox"
    base_url: str = "http://localhost:8000"
    from_address: str = "Daily Papers <papers@localhost>"
    secret_key: str = ""
    postal_address: str = ""
    var_dir: str = "var"
    templates_dir: str = ""
    list_id: str = "Daily Papers <daily-papers.localhost>"
    # Matching: a paper enters a topic's digest when its score reaches this.
    match_threshold: float = 1.0
    # Sources
    hf_url: str = "https://huggingface.co"
    arxiv_api_url: str = "https://export.arxiv.org"
    arxiv_rss_url: str = "https://rss.arxiv.org"
    http_timeout: float = 20.0
    http_retries: int = 3
    http_backoff: float = 1.0
    # arXiv asks for at most one request every 3 seconds.
    arxiv_request_interval: float = 3.0
    user_agent: str = "daily-papers-newsletter/0.1 (+https://github.com/daily-papers-newsletter)"
    # Delivery defaults for new subscribers
    default_max_papers: int = 10
    default_hour: int = 8
    default_timezone: str = "UTC"
    # Sending
    empty_policy: str = "skip"  # or "note": a short "nothing today" email
    max_attempts: int = 5
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    retry_wait_seconds: float = 0.0  # how long one `send` run waits for retries not yet due
    send_batch_size: int = 500
    # A sender's claim on its rows lasts this long past its last heartbeat (a third of it).
    claim_lease_seconds: float = 60.0
    # This machine's part of process names ("host:pid") in claims and leases; empty: the
    # host name. Every machine or container needs its own.
    host_name: str = ""
    # `send` from a terminal asks for --yes above this many recipients.
    confirm_above: int = 1000
    # Web pages: confirmation links, pending sign-ups, rate limits, proxies in front.
    confirm_max_age_hours: int = 72
    pending_max_age_days: int = 7
    mail_interval_minutes: int = 10
    subscribe_per_ip_per_hour: int = 20
    web_proxy_count: int = 0
    config_file: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def masked(self) -> dict[str, Any]:
        """Return the settings as a dict with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "****" if value else ""
            elif isinstance(value, str) and "://" in value:
                value = mask_url_password(value)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out


def mask_url_password(url: str) -> str:
    """Replace the password in a URL with ****."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc[1]}"))


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, a TOML file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    path = _find_config_file(config_file, env)
    values: dict[str, Any] = _read_toml(path) if path else {}
    for name, attr in ENV_FIELDS.items():
        if ENV_PREFIX + name in env:
            values[attr] = env[ENV_PREFIX + name]
    values.update(overrides)
    if path:
        values["config_file"] = str(path)
    settings = _build(values)
    if settings.secret_key:
        _check_secret_key(settings.secret_key, _secret_key_origin(path, env, overrides))
    else:
        settings = dataclasses.replace(settings, secret_key=_stored_secret_key(settings.var_dir))
    return settings


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
    # Accept both a flat file and one with a [newsletter] table.
    return dict(data.get("newsletter", data))


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


def _build(values: dict[str, Any]) -> Settings:
    known = {f.name: f for f in dataclasses.fields(Settings)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            extra[key] = value
            continue
        kwargs[key] = _coerce(key, value, known[key].type)
    kwargs.setdefault("extra", extra)
    return Settings(**kwargs)


def _coerce(key: str, value: Any, type_name: Any) -> Any:
    target = {"int": int, "float": float, "str": str}.get(str(type_name))
    if target is None:
        return value
    try:
        return target(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key}: expected {type_name}, got {value!r}") from exc


def _secret_key_origin(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> str:
    if "secret_key" in overrides:
        return "the secret_key setting"
    if env.get(ENV_PREFIX + "SECRET_KEY"):
        return ENV_PREFIX + "SECRET_KEY"
    return f"secret_key in {path}"


def _check_secret_key(key: str, origin: str) -> None:
    """Refuse a key short enough to guess; the error says how to make a good one."""
    size = len(key.encode("utf-8"))
    if size < SECRET_KEY_MIN_BYTES:
        raise ConfigError(
            f"{origin} is too short ({size} of at least {SECRET_KEY_MIN_BYTES} bytes): "
            f"make one with {MAKE_SECRET_KEY}"
        )


def _stored_secret_key(var_dir: str) -> str:
    """Read the generated secret key from var/, creating it once with a warning."""
    path = Path(var_dir) / SECRET_KEY_FILE
    if path.exists():
        return _read_secret_key_file(path)
    key = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_secret_key_file(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the secret key file {path}: {exc.strerror}; "
            f"set NEWSLETTER_VAR_DIR to a writable folder or set NEWSLETTER_SECRET_KEY"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    log.warning("NEWSLETTER_SECRET_KEY is unset: generated one into %s", path)
    return key


def _read_secret_key_file(path: Path) -> str:
    """Read the key file, or say what is wrong with it and how to recover."""
    # A new key makes the links in every email already sent invalid: say so before deleting.
    fix = (
        "restore it from a backup, or delete it to generate a new key "
        "(links in emails already sent then stop working)"
    )
    try:
        key = path.read_text(encoding="utf-8").strip()
    except IsADirectoryError:
        raise ConfigError(f"the secret key file {path} is a folder: {fix}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the secret key file {path} is not UTF-8 text: {fix}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the secret key file {path}: {exc.strerror}") from None
    if not key:
        raise ConfigError(f"the secret key file {path} is empty: {fix}")
    _check_secret_key(key, f"the secret key in {path}")
    return key
