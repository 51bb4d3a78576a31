"""README.md documents every setting of the registry, with its variable and its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.core.config import ENV_PREFIX, SETTINGS, Setting

README = Path(__file__).resolve().parent.parent / "README.md"
_CELL_BORDER = re.compile(r"(?<!\\)\|")


def _configuration_tables() -> dict[str, dict[str, str]]:
    """Return the rows of the tables of README's Configuration section, by setting name."""
    section = README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1]
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in section.split("\n## ", 1)[0].splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in _CELL_BORDER.split(line.strip())[1:-1]]
        if header is None:
            header = cells
        elif not set(line) <= set("|-"):
            row = dict(zip(header, cells, strict=True))
            name = row["setting"].strip("`")
            assert name not in rows, f"{name} is documented twice"
            rows[name] = row
    return rows


DOCUMENTED = _configuration_tables()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_readme_documents_the_setting(setting: Setting) -> None:
    assert setting.name in DOCUMENTED, f"README's Configuration has no row for {setting.name}"
    row = DOCUMENTED[setting.name]
    assert row["default"].replace("`", "") == setting.default_text()
    assert row["what"]
    expected_env = f"`{ENV_PREFIX}{setting.env}`" if setting.env else ""
    assert row.get("environment", "") == expected_env


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    assert set(DOCUMENTED) - {s.name for s in SETTINGS} == set()
