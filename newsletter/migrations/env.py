"""Alembic environment: runs against the engine the application hands over."""

from alembic import context

from newsletter.core.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:  # `alembic` command line: build the engine from settings
        from newsletter.core.config import load_settings
        from newsletter.core.db import make_engine

        engine = make_engine(load_settings())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        try:
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection, *, on: bool) -> None:  # noqa: ANN001
    # Rebuilding a table drops the old one; with foreign keys on, SQLite would cascade that
    # drop into every row referring to it. The pragma only works outside a transaction.
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={int(on)}")


run_migrations()
