from pathlib import Path

import pytest

from newsletter.core.config import load_settings, mask_url_password
from newsletter.core.errors import ConfigError
from tests.factories import dump_database

KEY = "a-secret-key-of-thirty-two-bytes"  # the shortest key accepted


def test_defaults_are_the_embedded_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.database_url == "sqlite:///var/newsletter.db"
    assert s.transport == "maildir:var/outbox"
    assert s.base_url == "http://localhost:8000"


def test_secret_key_is_generated_once_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    first = load_settings(env={})
    assert "secret_key" in caplog.text.lower() or "SECRET_KEY" in caplog.text
    second = load_settings(env={})
    assert first.secret_key == second.secret_key and len(first.secret_key) > 40
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_file_then_environment_override(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text(
        'base_url = "https://file.example"\nfrom_address = "a@b.example"\n'
        f'secret_key = "{KEY}"\nmatch_threshold = 2.5\n'
    )
    s = load_settings(cfg, env={"NEWSLETTER_BASE_URL": "https://env.example"})
    assert s.base_url == "https://env.example"
    assert s.from_address == "a@b.example"
    assert s.match_threshold == 2.5


def test_config_from_environment_variable(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text(f'[newsletter]\nsecret_key = "{KEY}"\nlist_id = "x"\n')
    assert load_settings(env={"NEWSLETTER_CONFIG": str(cfg)}).list_id == "x"


def test_bad_toml_and_missing_file_are_config_errors(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_passwords_are_masked():
    assert (
        mask_url_password("smtp://u:secret@h:587?tls=starttls")
        == "smtp://u:****@h:587?tls=starttls"
    )
    assert mask_url_password("sqlite:///x.db") == "sqlite:///x.db"


def test_config_command_masks_secrets(run, env):
    env["NEWSLETTER_TRANSPORT"] = "smtp://user:hunter2@127.0.0.1:2525?tls=none"
    result = run("config", "--json")
    assert result.exit_code == 0
    assert "hunter2" not in result.output and "test-secret-key" not in result.output
    assert "user:****@127.0.0.1" in result.output


@pytest.mark.empty_db
def test_init_migrates_then_reports_up_to_date(run):
    first = run("init")
    assert first.exit_code == 0 and "migrated from empty" in first.output
    assert "up to date" in run("init").output


@pytest.mark.empty_db
def test_health_reports_an_unmigrated_then_a_healthy_database(run):
    before = run("health")
    assert before.exit_code == 1 and "expected 0" in before.output and "run init" in before.output
    assert run("init").exit_code == 0
    after = run("health")
    assert after.exit_code == 0 and after.output.startswith("ok:")


def _one_line_error(run, app) -> str:
    """Run a command that needs the settings; return its one error line."""
    before = dump_database(app.engine)
    result = run("subscribers", "list")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    assert dump_database(app.engine) == before
    return result.stderr


@pytest.mark.parametrize("where", ["environment", "toml"])
def test_a_short_secret_key_is_refused_with_how_to_make_one(run, app, env, tmp_path, where):
    if where == "environment":
        env["NEWSLETTER_SECRET_KEY"] = "a"
    else:
        del env["NEWSLETTER_SECRET_KEY"]
        (tmp_path / "newsletter.toml").write_text('secret_key = "a"\n')

    error = _one_line_error(run, app)

    assert "too short (1 of at least 32 bytes)" in error
    assert "secrets.token_urlsafe(32)" in error
    assert ("NEWSLETTER_SECRET_KEY" if where == "environment" else "newsletter.toml") in error


def test_a_key_of_32_bytes_is_accepted(tmp_path):
    settings = load_settings(env={"NEWSLETTER_SECRET_KEY": KEY}, var_dir=str(tmp_path))
    assert settings.secret_key == KEY
    with pytest.raises(ConfigError, match="31 of at least 32"):
        load_settings(env={"NEWSLETTER_SECRET_KEY": KEY[:-1]}, var_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "is empty"), (b"\n  \n", "is empty"), (b"\xff\xfe\x00k", "not UTF-8"),
     (None, "is a folder"), (b"short\n", "too short")],
)  # fmt: skip
def test_a_broken_key_file_is_one_line_saying_how_to_fix_it(run, app, env, settings, content,
                                                            problem):  # fmt: skip
    del env["NEWSLETTER_SECRET_KEY"]
    key_file = Path(settings.var_dir) / "secret_key"
    if content is None:
        key_file.mkdir()
    else:
        key_file.write_bytes(content)

    error = _one_line_error(run, app)

    assert str(key_file) in error and problem in error
    assert "delete it to generate a new key" in error or "token_urlsafe" in error
