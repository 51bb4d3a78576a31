"""The schema's state as `init` and `health` report it: migrations applied, a database that
does not answer."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from newsletter.core import db
from newsletter.core.errors import DatabaseUnavailable
from tests.conftest import Cli

# Nothing listens on port 1: the database refuses at once.
UNREACHABLE = "postgresql+psycopg://reader:secret@127.0.0.1:1/newsletter"


@pytest.mark.empty_db
def test_migrating_an_empty_database_goes_from_nothing_to_the_newest_revision(settings):
    engine = db.make_engine(settings)
    head = db.head_revision(engine)

    assert db.schema_state(engine) == (None, head)
    assert db.migrate(engine) == (None, head)
    assert db.migrate(engine) == (head, head)
    assert db.schema_state(engine) == (head, head)
    engine.dispose()


def test_a_database_that_does_not_answer_is_one_error_naming_the_failure():
    engine = create_engine(UNREACHABLE)
    with pytest.raises(DatabaseUnavailable, match="^database unreachable: OperationalError$"):
        db.schema_state(engine)
    engine.dispose()


def test_health_says_so_in_one_line_and_exits_1(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = Cli({**env, "NEWSLETTER_DATABASE_URL": UNREACHABLE})("health")

    assert result.exit_code == 1
    assert result.output == "Error: database unreachable: OperationalError\n"
