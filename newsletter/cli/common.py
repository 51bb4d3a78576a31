"""Shared CLI plumbing: error mapping, the lazy App, JSON output, files written whole."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import click

from newsletter.core import db
from newsletter.core.app import App
from newsletter.core.config import load_settings
from newsletter.core.errors import InputError, NewsletterError
from newsletter.core.urls import mask_database_url

P = ParamSpec("P")
R = TypeVar("R")


class LazyApp:
    """Builds the App on first use, so `--help` never reads config or opens a database."""

    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._app: App | None = None

    def get(self) -> App:
        if self._app is None:
            self._app = App(load_settings(self.config_file))
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def database_url(self) -> str:
        """Return the configured database URL with its password masked, or "" before use."""
        return mask_database_url(self._app.settings.database_url) if self._app else ""


class NewsletterGroup(click.Group):
    """A click group that turns domain errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise _one_line(exc) from exc
        except db.FAILURES as exc:
            # Refused, down, unreadable, locked or full: the reason, not 140 lines of stack.
            raise _one_line(db.database_error(exc, where=_database_named(ctx))) from exc

    @staticmethod
    def lazy_app(ctx: click.Context, config_file: str | None) -> LazyApp:
        lazy = LazyApp(config_file)
        ctx.call_on_close(lazy.close)
        return lazy


def _one_line(exc: NewsletterError) -> click.ClickException:
    err = click.ClickException(str(exc))
    err.exit_code = exc.exit_code  # type: ignore[misc]  # click types it per class, not per error
    return err


def _database_named(ctx: click.Context) -> str:
    """Return the URL of the database the command opened (password masked), for a refusal."""
    lazy = ctx.obj
    where = lazy.database_url() if isinstance(lazy, LazyApp) else ""
    return where or "(unknown)"


def pass_app(f: Callable[Concatenate[App, P], R]) -> Callable[P, R]:
    """Pass the App as the first argument of a command."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        app = click.get_current_context().find_root().obj.get()
        return f(app, *args, **kwargs)

    return functools.update_wrapper(wrapper, f)


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def echo_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def parse_date(value: str | None, *, param: str = "--date") -> date | None:
    """Parse YYYY-MM-DD or raise a usage error naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=param) from None


def check_output_folder(path: Path, *, param: str = "--output") -> None:
    """Raise InputError unless the folder a file is to be written into exists."""
    # Not created on demand: a mistyped folder would silently scatter files elsewhere.
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{param}: folder {str(folder)!r} does not exist")


def write_output(path: Path, data: bytes, *, param: str = "--output") -> None:
    """Write a file the user named, turning an OS refusal into one InputError line."""
    check_output_folder(path, param=param)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"{param}: cannot write {str(path)!r}: {exc.strerror or exc}") from None


def export_to_file(path: Path, write: Callable[[IO[str]], int]) -> int:
    """Export into a temporary file renamed over `path` at the end: no half-written files."""
    check_output_folder(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"--output: cannot write in {str(folder)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = write(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return count
