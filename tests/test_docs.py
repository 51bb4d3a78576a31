"""The documentation holds every setting of the registry, with its variable and its default.

docs/configuration.md is generated from the registry: the file must be what the generator
writes today. The README's table of essentials is checked row by row against the registry.
Links between the README and docs/ must point at files that exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.core.config import ENV_PREFIX, SETTINGS
from newsletter.core.setting_fields import Setting
from newsletter.core.settings_reference import BEGIN, END, ESSENTIALS, settings_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "configuration.md"
_CELL_BORDER = re.compile(r"(?<!\\)\|")


def _tables(text: str) -> dict[str, dict[str, str]]:
    """Return the rows of the settings tables in a Markdown text, by setting name."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in _CELL_BORDER.split(line.strip())[1:-1]]
        if header is None:
            header = cells
        elif not set(line) <= set("|-") and header[0] == "setting":
            row = dict(zip(header, cells, strict=True))
            name = row["setting"].strip("`")
            assert name not in rows, f"{name} is documented twice"
            rows[name] = row
    return rows


def _readme_configuration() -> str:
    return README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1].split("\n## ")[0]


DOCUMENTED = _tables(REFERENCE.read_text(encoding="utf-8"))
ESSENTIAL_ROWS = _tables(_readme_configuration())


def test_the_reference_is_what_the_registry_generates_today() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    generated = BEGIN + text.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"
    assert generated == settings_reference(), "docs/configuration.md is stale: run `make docs`"


def _assert_row_matches(row: dict[str, str], setting: Setting) -> None:
    assert row["default"].replace("`", "") == setting.default_text()
    assert row["what"]
    expected_env = f"`{ENV_PREFIX}{setting.env}`" if setting.env else ""
    assert row.get("environment", "") == expected_env


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_the_reference_documents_the_setting(setting: Setting) -> None:
    assert setting.name in DOCUMENTED, f"docs/configuration.md has no row for {setting.name}"
    _assert_row_matches(DOCUMENTED[setting.name], setting)


def test_the_reference_documents_no_setting_that_does_not_exist() -> None:
    assert set(DOCUMENTED) - {s.name for s in SETTINGS} == set()


def test_the_readme_shows_the_essentials_as_the_registry_has_them() -> None:
    by_name = {s.name: s for s in SETTINGS}
    assert tuple(ESSENTIAL_ROWS) == ESSENTIALS
    for name, row in ESSENTIAL_ROWS.items():
        _assert_row_matches(row, by_name[name])


def test_links_between_the_readme_and_the_docs_point_at_files_that_exist() -> None:
    for page in (README, *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
        for image in re.findall(r'<img src="([^"]+)"', page.read_text(encoding="utf-8")):
            assert (page.parent / image).exists(), f"{page.name} shows missing {image}"
