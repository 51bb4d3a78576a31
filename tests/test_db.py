import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from newsletter.core import db
from newsletter.core.models import Base


@pytest.mark.only_db("sqlite")
def test_migrations_build_exactly_the_models(app):
    with app.engine.connect() as conn, warnings.catch_warnings():
        # Expression indexes (lower(email)) cannot be reflected on SQLite; they are checked below.
        warnings.simplefilter("ignore")
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        names = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(subscribers)")}
    assert "uq_subscribers_email_lower" in names


def test_ensure_schema_migrates_an_empty_database_once(settings):
    from newsletter.core.app import App

    application = App(settings)
    assert db.current_revision(application.engine) is None
    assert application.ensure_schema() is True
    assert db.current_revision(application.engine) == db.head_revision(application.engine)
    assert db.ensure_schema(application.engine) is False
    application.close()


@pytest.mark.only_db("sqlite")
def test_sqlite_runs_in_wal_mode_with_foreign_keys(app):
    with app.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.only_db("postgresql")
def test_postgres_schema_matches_the_models(app):
    with app.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        indexes = {row[0] for row in conn.exec_driver_sql("SELECT indexname FROM pg_indexes")}
    assert {"uq_subscribers_email_lower", "ix_suppressions_email_lower"} <= indexes
