"""Shared fixtures: a fresh database per test, settings, the App, and a CLI runner.

The suite runs on SQLite by default; `pytest --db postgresql` (or NEWSLETTER_TEST_DB=postgresql)
runs every test on a fresh database of a throwaway PostgreSQL cluster instead. Migrations run
once per session into a template; each test gets its own copy of it (a copied SQLite file, or
`CREATE DATABASE ... TEMPLATE`), or an empty database when marked `empty_db`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.core import db
from newsletter.core.app import App
from newsletter.core.config import Settings, load_settings
from tests.postgres import throwaway_cluster

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgresql"),
        default=os.environ.get("NEWSLETTER_TEST_DB", "sqlite"),
        help="database the suite runs on",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {config.getoption('--db')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Checks of one database are left out of the other database's run, not skipped: a run
    # that reports skips means something it should have tested did not run.
    backend = config.getoption("--db")
    kept, left_out = [], []
    for item in items:
        marker = item.get_closest_marker("only_db")
        (left_out if marker and backend not in marker.args else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "only_db(*names): run only on these databases")
    config.addinivalue_line("markers", "empty_db: the test's database starts unmigrated")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, migrated to head (empty when marked `empty_db`)."""
    migrated = request.node.get_closest_marker("empty_db") is None
    if request.config.getoption("--db") == "sqlite":
        path = tmp_path / "var" / "newsletter.db"
        if migrated:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_template") if migrated else None
    with _postgres_database(server, template) as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests copy it."""
    path = tmp_path_factory.mktemp("template") / "newsletter.db"
    engine = db.make_engine(Settings(database_url=f"sqlite:///{path}"))
    db.upgrade(engine)
    engine.dispose()
    # Everything into the main file: a copy of it alone is then the whole database.
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head once per session; tests clone it."""
    with _postgres_database(pg_server) as url:
        engine = db.make_engine(Settings(database_url=url))
        db.upgrade(engine)
        # CREATE DATABASE ... TEMPLATE needs the template to have no open connection.
        engine.dispose()
        yield _database_name(url)


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""


@contextmanager
def _postgres_database(server: str, template: str | None = None) -> Iterator[str]:
    """Create a database of its own (a copy of template, if given), drop it afterwards."""
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        copy = f" TEMPLATE {template}" if template else ""
        conn.execute(text(f"CREATE DATABASE {name}{copy}"))
    try:
        yield server.replace("/postgres?", f"/{name}?")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for an isolated instance under tmp_path (its own database, Maildir outbox)."""
    var = tmp_path / "var"
    var.mkdir(exist_ok=True)  # as on SQLite, where the database file lives there
    return load_settings(
        env={},
        database_url=database_url,
        transport=f"maildir:{var / 'outbox'}",
        var_dir=str(var),
        secret_key="test-secret-key-of-at-least-32-bytes",
        base_url="https://news.example.test",
        from_address="Daily Papers <papers@news.example.test>",
        postal_address="1 Test Street, Testville",
        # The sentence model costs ~0.1 s of CPU per stored paper: tests of the neighbours
        # turn it on, the rest match by keywords as before.
        match_neighbours=False,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    application = App(settings)
    application.ensure_schema()
    yield application
    application.close()


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    """Environment that points the CLI at the test instance."""
    return {
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_TRANSPORT": settings.transport,
        "NEWSLETTER_VAR_DIR": settings.var_dir,
        "NEWSLETTER_SECRET_KEY": settings.secret_key,
        "NEWSLETTER_BASE_URL": settings.base_url,
        "NEWSLETTER_FROM": settings.from_address,
        "NEWSLETTER_POSTAL_ADDRESS": settings.postal_address,
        "NEWSLETTER_MATCH_NEIGHBOURS": "true" if settings.match_neighbours else "false",
        # Child processes import the package the tests import, wherever it was found.
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }


class Cli:
    """Runs `newsletter ...` in-process against the test instance."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(
            cli, list(args), env=self.env, input=input, catch_exceptions=False
        )


@pytest.fixture
def run(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Invoke the CLI in tmp_path: `result = run("papers", "list", "--json")`."""
    monkeypatch.chdir(tmp_path)
    return Cli(env)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL: NEWSLETTER_TEST_POSTGRES_URL, or a throwaway cluster.

    Skipped when no server is installed, except in CI, where it must run.
    """
    url = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        with throwaway_cluster() as started:
            yield started
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
def pg_app(pg_server: str, pg_template: str, settings: Settings) -> Iterator[App]:
    """The App on a fresh PostgreSQL database of its own, migrated to head, whatever --db says."""
    with _postgres_database(pg_server, pg_template) as url:
        application = App(dataclasses.replace(settings, database_url=url))
        application.ensure_schema()
        yield application
        application.close()
