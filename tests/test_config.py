from pathlib import Path

import pytest

from newsletter.config import load_settings, mask_url_password
from newsletter.errors import ConfigError


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
        'secret_key = "k"\nmatch_threshold = 2.5\n'
    )
    s = load_settings(cfg, env={"NEWSLETTER_BASE_URL": "https://env.example"})
    assert s.base_url == "https://env.example"
    assert s.from_address == "a@b.example"
    assert s.match_threshold == 2.5


def test_config_from_environment_variable(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text('[newsletter]\nsecret_key = "k"\nlist_id = "x"\n')
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


def test_init_migrates_then_reports_up_to_date(run):
    first = run("init")
    assert first.exit_code == 0 and "migrated from empty" in first.output
    assert "up to date" in run("init").output


def test_health_reports_an_unmigrated_then_a_healthy_database(run):
    before = run("health")
    assert before.exit_code == 1 and "expected 0" in before.output and "run init" in before.output
    assert run("init").exit_code == 0
    after = run("health")
    assert after.exit_code == 0 and after.output.startswith("ok:")
