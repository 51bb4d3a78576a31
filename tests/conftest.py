"""Shared fixtures: a fresh SQLite file per test, settings, the App, and a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.app import App
from newsletter.cli import cli
from newsletter.config import Settings, load_settings

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for an isolated instance under tmp_path (SQLite file, Maildir outbox)."""
    var = tmp_path / "var"
    return load_settings(
        env={},
        database_url=f"sqlite:///{var / 'newsletter.db'}",
        transport=f"maildir:{var / 'outbox'}",
        var_dir=str(var),
        secret_key="test-secret-key",
        base_url="https://news.example.test",
        from_address="Daily Papers <papers@news.example.test>",
        postal_address="1 Test Street, Testville",
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
