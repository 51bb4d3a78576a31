"""The secret key that signs links: checked for length, or generated once into var/."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from newsletter.core.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret_key"
# Links are signed with HMAC-SHA1 (itsdangerous): a shorter key is guessable offline.
SECRET_KEY_MIN_BYTES = 32
MAKE_SECRET_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def exposed_to_others(path: Path) -> str:
    """Say how a key file is open to every user of the machine, or return "" if it is not."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return ""
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return f"{path} is readable or writable by every user (mode {stat.S_IMODE(mode):04o})"
    return ""


def warn_if_exposed(path: Path) -> None:
    """Log a warning when a key file is readable by every user: anyone could sign as us."""
    exposed = exposed_to_others(path)
    if exposed:
        log.warning("%s: run chmod 600 %s", exposed, path)


def check_secret_key(key: str, origin: str) -> None:
    """Refuse a key short enough to guess; the error says how to make a good one."""
    size = len(key.encode("utf-8"))
    if size < SECRET_KEY_MIN_BYTES:
        raise ConfigError(
            f"{origin} is too short ({size} of at least {SECRET_KEY_MIN_BYTES} bytes): "
            f"make one with {MAKE_SECRET_KEY}"
        )


def stored_secret_key(var_dir: str) -> str:
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
    check_secret_key(key, f"the secret key in {path}")
    warn_if_exposed(path)
    return key
