"""The packages stand in layers: each imports only the ones below it, never an entry point."""

from __future__ import annotations

import re
from pathlib import Path

import newsletter

ROOT = Path(newsletter.__file__).parent
# Each stage and the stages it may import; entry points (cli, web, runners) come last.
ALLOWED = {
    "core": set(),
    "matching": {"core"},
    "papers": {"core", "matching"},
    "content": {"core"},
    "audience": {"core", "matching", "content"},
    "editions": {"core", "matching", "papers", "content"},
    "bounces": {"core", "content", "audience"},
    "delivery": {"core", "matching", "papers", "content", "audience", "editions", "bounces"},
    "runners": {"core", "matching", "papers", "content", "audience", "editions", "bounces",
                "delivery"},  # fmt: skip
}
IMPORT = re.compile(r"^\s*(?:from|import) newsletter\.(\w+)", re.M)


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for target in IMPORT.findall(path.read_text(encoding="utf-8")):
            if target != package:
                found.setdefault(target, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_each_package_imports_only_the_layers_below_it():
    wrong = {
        f"{package} -> {target} ({', '.join(sorted(files))})"
        for package, allowed in ALLOWED.items()
        for target, files in _imports(package).items()
        if target not in allowed
    }
    assert wrong == set()


def test_every_package_is_placed_and_documents_what_it_may_import():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"cli", "web", "migrations"} == set(ALLOWED)
    for package in ALLOWED:
        doc = (ROOT / package / "__init__.py").read_text(encoding="utf-8")
        assert "Owns:" in doc and ("May import" in doc or "Imports nothing" in doc), package
