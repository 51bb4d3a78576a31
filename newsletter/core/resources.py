"""Locate the data shipped with the package: email templates and the demo seeds."""

from __future__ import annotations

from pathlib import Path

import newsletter

_PACKAGE = Path(newsletter.__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Return a shipped folder: inside the wheel (`_data/NAME`) or in a source checkout."""
    installed = _PACKAGE / "_data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
