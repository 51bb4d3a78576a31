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
    "ranking": {"core", "matching"},
    "audience": {"core", "matching", "content"},
    "editions": {"core", "matching", "ranking", "papers", "content", "audience"},
    "bounces": {"core", "content", "audience"},
    "delivery": {"core", "matching", "ranking", "papers", "content", "audience", "editions",
                 "bounces"},  # fmt: skip
    "runners": {"core", "matching", "ranking", "papers", "content", "audience", "editions",
                "bounces", "delivery"},  # fmt: skip
}
IMPORT = re.compile(r"^\s*(?:from|import) newsletter\.(\w+)", re.M)
# A module a reader can hold; past this, split it by what a reader looks for.
MAX_MODULE_LINES = 600


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


def _threads() -> list[tuple[str, str, str]]:
    """Return (module, class or "", target) of every thread the package starts."""
    import ast

    found = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owner = {id(node): cls.name for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                 for node in ast.walk(cls)}  # fmt: skip
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and ast.unparse(call.func) == "threading.Thread":
                target = next(ast.unparse(k.value) for k in call.keywords if k.arg == "target")
                found.append((path.relative_to(ROOT).as_posix(), owner.get(id(call), ""), target))
    return sorted(found)


def test_one_runner_base_runs_every_loop():
    """Every thread the package starts runs a Runner's loop: one stop, one sleep, one hand-back."""
    import importlib

    from newsletter.core.runner import Runner

    threads = [t for t in _threads() if t[1]]  # a class's thread; a module-level one is a fault
    assert len(threads) == len(_threads()) and threads, _threads()
    for module, name, target in threads:
        cls = getattr(importlib.import_module("newsletter." + module[:-3].replace("/", ".")), name)
        assert issubclass(cls, Runner) and target == "self.run", (module, name, target)


def test_reads_go_through_reading_and_writes_through_a_transaction():
    """A plain session (on SQLite it takes the write lock) is left only to the previews that
    plan and roll back."""
    import ast

    plain = []
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, ast.withitem) and ast.unparse(node.context_expr).endswith(
                    "app.sessions()"
                ):
                    plain.append(f"{path.relative_to(ROOT).as_posix()}:{func.name}")
    assert sorted(plain) == ["delivery/service.py:dry_run", "delivery/service.py:preview_plan"]


def test_one_place_writes_delivery_rows():
    """Planning, stale skips, the sign-up flow and the sender all go through the store."""
    writes = re.compile(
        r"\b(?:insert|update|delete)\(Delivery\b"
        r"|Delivery\.__table__\.(?:insert|update|delete)|session\.add\(Delivery\("
    )
    writers = sorted(
        p.relative_to(ROOT).as_posix()
        for p in ROOT.rglob("*.py")
        if writes.search(p.read_text(encoding="utf-8"))
    )
    assert writers == ["core/deliveries.py"]


def test_no_module_is_longer_than_a_reader_can_hold():
    """Every module of the package but the migrations is at most MAX_MODULE_LINES lines."""
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in ROOT.rglob("*.py")
        if "migrations" not in path.relative_to(ROOT).parts
    }
    assert len(lengths) > 100  # the walk found the package
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


# What only a service may do: open a session (or an engine's connection) and run SQL.
SESSION_CALLS = frozenset({
    "reading", "transaction", "sessions", "read_sessions", "connect", "begin", "execute",
    "query", "scalars", "scalar", "refresh",
})  # fmt: skip


def _database_work(path: Path) -> list[str]:
    """Return what a module does with the database itself: sqlalchemy imports, sessions."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            modules = []
        found += [f"imports {m}" for m in modules if m.split(".")[0] == "sqlalchemy"]
        if isinstance(node, ast.Attribute) and node.attr in SESSION_CALLS:
            found.append(f"calls .{node.attr} (line {node.lineno})")
        if isinstance(node, ast.Name | ast.arg) and "session" in (
            getattr(node, "id", None), getattr(node, "arg", None)
        ):
            found.append(f"holds a session (line {node.lineno})")
    return found


def test_the_cli_opens_no_session_and_imports_no_sqlalchemy():
    """A command parses, calls a service and prints: the service opens the session and runs
    the SQL, so a web page can call the same one."""
    work = {
        path.relative_to(ROOT).as_posix(): found
        for path in sorted((ROOT / "cli").rglob("*.py"))
        if (found := _database_work(path))
    }
    assert work == {}


def _callers(name: str) -> set[str]:
    """Return module:function of every function of the package that calls `name` (a plain
    name or an attribute)."""
    import ast

    found = set()
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
                called = call.func
                if getattr(called, "id", None) == name or getattr(called, "attr", None) == name:
                    found.add(f"{path.relative_to(ROOT).as_posix()}:{func.name}")
    return found


def test_ranking_reads_no_database():
    """The ranking is one pure function: no SQL, no session, whatever it is handed."""
    import ast

    for path in (ROOT / "ranking").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in modules if m.split(".")[0] == "sqlalchemy"}, path
        names = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        assert "session" not in names, path


def test_every_digest_preview_test_copy_and_dry_run_is_ranked_in_one_place():
    """One call of `rank`, behind the one selection every path asks for a reader's papers."""
    assert _callers("rank") == {"editions/selection.py:_chosen"}
    assert _callers("_chosen") == {
        "editions/selection.py:for_topics",
        "editions/selection.py:for_reader",
    }
    askers = _callers("for_topics") | _callers("for_reader")
    assert {a for a in askers if not a.startswith("editions/selection.py")} == {
        "editions/readers.py:papers_for",
        "editions/readers.py:_personal_choice",
    }
    # The send and the workers (compose), preview, a test copy and a dry run (service).
    assert {
        "delivery/compose.py:prepare",
        "delivery/compose.py:warm",
        "delivery/service.py:build_preview",
        "delivery/service.py:_anyone_message",
        "delivery/service.py:_planned_digests",
    } <= _callers("papers_for")
