import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select

from newsletter.core import db
from newsletter.core.models import Base, Topic


@pytest.mark.only_db("sqlite")
def test_migrations_build_exactly_the_models(app):
    with app.engine.connect() as conn, warnings.catch_warnings():
        # Expression indexes (lower(email)) cannot be reflected on SQLite; they are checked below.
        warnings.simplefilter("ignore")
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        names = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list(subscribers)")}
    assert "uq_subscribers_email_lower" in names


@pytest.mark.empty_db
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


def _template_url(request: pytest.FixtureRequest) -> str:
    if request.config.getoption("--db") == "sqlite":
        return f"sqlite:///{request.getfixturevalue('sqlite_template')}"
    server = request.getfixturevalue("pg_server")
    return server.replace("/postgres?", f"/{request.getfixturevalue('pg_template')}?")


def test_a_test_writes_to_its_own_copy_of_the_migrated_template(app, request):
    with app.transaction() as session:
        session.add(Topic(slug="llm", name="Large language models"))
    template = create_engine(_template_url(request))
    try:
        assert app.engine.url.database != template.url.database
        assert db.current_revision(template) == db.head_revision(template)
        with template.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Topic)).scalar() == 0
    finally:
        template.dispose()  # a template with an open connection cannot be copied
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Topic)) == 1


@pytest.mark.empty_db
def test_a_test_marked_empty_db_starts_without_tables(settings):
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_insert_or_ignore_skips_a_row_whose_unique_key_exists(app):
    with app.transaction() as session:
        stmt = db.insert_or_ignore(session, Topic)
        session.execute(stmt.values(slug="llm", name="Large language models"))
        session.execute(stmt.values(slug="llm", name="Another name"))
        session.execute(stmt, [{"slug": "llm", "name": "A third"}, {"slug": "cv", "name": "CV"}])
    with app.sessions() as session:
        rows = session.execute(select(Topic.slug, Topic.name).order_by(Topic.slug)).all()
    assert [tuple(row) for row in rows] == [("cv", "CV"), ("llm", "Large language models")]
