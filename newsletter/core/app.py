"""The application object: settings plus lazily built engine and sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsletter.core import db
from newsletter.core.config import Settings


class App:
    """What entry points (CLI, web, scheduler) share: settings, the engine, sessions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._schema_checked = False
        self._on_close: list[Callable[[], None]] = []

    @cached_property
    def engine(self) -> Engine:
        return db.make_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        self.ensure_schema()
        return db.make_session_factory(self.engine)

    def ensure_schema(self) -> bool:
        """Migrate the database to the newest schema once per process."""
        if self._schema_checked:
            return False
        migrated = db.ensure_schema(self.engine)
        self._schema_checked = True
        return migrated

    @cached_property
    def read_sessions(self) -> sessionmaker[Session]:
        self.ensure_schema()
        return db.make_session_factory(db.read_only_engine(self.engine))

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Yield a session for reads only: on SQLite it never holds or waits for the write lock."""
        # Closing ends the transaction without expiring what was loaded (no rollback()).
        with self.read_sessions() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session in one transaction that commits on success."""
        with db.transaction(self.sessions) as session:
            yield session

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the app closes, before its engine goes (a thread that uses
        the database stops first)."""
        self._on_close.append(callback)

    def close(self) -> None:
        """Stop what was registered with `on_close`, last first, then close the engine."""
        while self._on_close:
            self._on_close.pop()()
        if "engine" in self.__dict__:
            self.engine.dispose()
