"""Alembic environment: runs against the engine the application hands over."""

from alembic import context

from newsletter.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:  # `alembic` command line: build the engine from settings
        from newsletter.config import load_settings
        from newsletter.db import make_engine

        engine = make_engine(load_settings())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
