import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from newsletter.core.config import (
    ENV_PREFIX,
    SETTINGS,
    SETTINGS_BY_NAME,
    Settings,
    load_settings,
)
from newsletter.core.errors import ConfigError
from newsletter.core.urls import mask_url_password
from newsletter.papers.sources.arxiv import DEFAULT_CATEGORIES
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


# --- the registry: unknown keys, wrong values, the environment, `newsletter config` --------


def test_every_setting_has_a_default_of_its_type_and_a_one_line_help():
    for item in SETTINGS:
        assert item.parse(item.default) == item.default, item.name
        assert item.help and "\n" not in item.help and len(item.help) <= 90, item.name
    assert Settings() == Settings(**{item.name: item.default for item in SETTINGS})


def test_the_environment_variables_are_the_ones_deploy_tooling_knows():
    names = {ENV_PREFIX + item.env: item.name for item in SETTINGS if item.env}
    assert names == {
        "NEWSLETTER_DATABASE_URL": "database_url",
        "NEWSLETTER_TRANSPORT": "transport",
        "NEWSLETTER_BASE_URL": "base_url",
        "NEWSLETTER_FROM": "from_address",
        "NEWSLETTER_SECRET_KEY": "secret_key",
        "NEWSLETTER_POSTAL_ADDRESS": "postal_address",
        "NEWSLETTER_VAR_DIR": "var_dir",
        "NEWSLETTER_TEMPLATES_DIR": "templates_dir",
        "NEWSLETTER_LIST_ID": "list_id",
        "NEWSLETTER_EMPTY_POLICY": "empty_policy",
        "NEWSLETTER_MATCH_NEIGHBOURS": "match_neighbours",
    }


def test_each_environment_variable_overrides_the_file(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text(f'secret_key = "{"f" * 32}"\nempty_policy = "skip"\nlist_id = "File <f.x>"\n')
    special = {"empty_policy": "note", "match_neighbours": False}
    wanted = {item.name: special.get(item.name, f"from-env-{item.name}") for item in SETTINGS}
    env = {ENV_PREFIX + item.env: str(wanted[item.name]) for item in SETTINGS if item.env}
    env[ENV_PREFIX + "SECRET_KEY"] = wanted["secret_key"] = KEY
    settings = load_settings(cfg, env=env)
    for item in SETTINGS:
        if item.env:
            assert getattr(settings, item.name) == wanted[item.name], item.name


@pytest.mark.parametrize(
    ("typo", "closest"),
    [("bounce_domian", "bounce_domain"), ("soft_bounce_limt", "soft_bounce_limit"),
     ("scheduler_source", "scheduler_sources"), ("colour", "")],
)  # fmt: skip
def test_an_unknown_key_is_one_line_naming_the_closest(run, app, tmp_path, typo, closest):
    (tmp_path / "newsletter.toml").write_text(f'base_url = "https://x.example"\n{typo} = 3\n')

    error = _one_line_error(run, app)

    assert f"newsletter.toml: unknown setting '{typo}'" in error
    if closest:
        assert error.endswith(f": did you mean {closest}?\n")
    else:
        assert "did you mean" not in error and "lists every setting" in error


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("soft_bounce_limit = 0", "setting soft_bounce_limit: must be at least 1, got 0"),
        ("bounce_recent_days = 2.5", "setting bounce_recent_days: expected a whole number"),
        ('bounce_require_verp = "maybe"', "setting bounce_require_verp: expected true or false"),
        ('http_timeout = "soon"', 'setting http_timeout: expected a number, got "soon"'),
        ("http_timeout = nan", "setting http_timeout: expected a number, got nan"),
        ("match_threshold = 0", "setting match_threshold: must be more than 0, got 0"),
        ("default_hour = 24", "setting default_hour: must be at most 23, got 24"),
        ("postal_address = 5", "setting postal_address: expected text, got 5"),
        ('empty_policy = "later"', 'setting empty_policy: must be skip or note, got "later"'),
        # Which names are sources is checked where they are used (test_source_registry.py).
        ('scheduler_sources = ["hf", "RSS feed"]', "setting scheduler_sources: must be source"),
        ("scheduler_sources = [1]", "setting scheduler_sources: expected a list of names"),
        ('scheduler_listing_ready = "25:00"', "setting scheduler_listing_ready: must be a time"),
        ('scheduler_fetch_cron = "daily"', "setting scheduler_fetch_cron: must be a cron line"),
        ("scheduler_tick_seconds = -1", "setting scheduler_tick_seconds: must be more than 0"),
        ('default_timezone = "Mars/Base"', "setting default_timezone: must be a time zone"),
        ('bounce_domain = "bounces@x.org"', "setting bounce_domain: must be a domain name"),
        ('bounce_prefix = "a+b"', "setting bounce_prefix: must be letters, digits"),
        (
            'scheduler_arxiv_categories = ["cond-mat", "cond-mat.superconductivity"]',
            "setting scheduler_arxiv_categories: must be arXiv categories or archives, not "
            "'cond-mat.superconductivity'; did you mean cond-mat.supr-con?",
        ),
        ('unsubscribe_mailto = "u@x.org\\nBcc: v@y.org"', "setting unsubscribe_mailto: must be"),
    ],
)
def test_a_wrong_value_in_the_file_is_one_line_naming_the_key(run, app, tmp_path, line, message):
    (tmp_path / "newsletter.toml").write_text(line + "\n")

    error = _one_line_error(run, app)

    assert "newsletter.toml: " + message in error


def test_a_wrong_value_in_the_environment_names_the_variable(run, app, env):
    env["NEWSLETTER_EMPTY_POLICY"] = "later"
    error = _one_line_error(run, app)
    assert "NEWSLETTER_EMPTY_POLICY: setting empty_policy: must be skip or note" in error


def test_a_key_beside_the_newsletter_table_is_refused(tmp_path: Path):
    cfg = tmp_path / "n.toml"
    cfg.write_text(f'base_url = "https://x.example"\n[newsletter]\nsecret_key = "{KEY}"\n')
    with pytest.raises(ConfigError, match="setting base_url is outside the \\[newsletter\\] table"):
        load_settings(cfg, env={})


def test_values_are_checked_however_settings_are_made(settings):
    with pytest.raises(ConfigError, match="setting soft_bounce_days: must be at least 1"):
        dataclasses.replace(settings, soft_bounce_days=0)
    with pytest.raises(ConfigError, match="unknown setting 'soft_bounce_day'"):
        load_settings(env={}, var_dir=settings.var_dir, soft_bounce_day=3)
    loose = dataclasses.replace(
        settings, scheduler_sources="hf, arxiv", http_retries="4", var_dir=Path("v")
    )
    assert (loose.scheduler_sources, loose.http_retries, loose.var_dir) == (("hf", "arxiv"), 4, "v")


def test_config_prints_each_value_default_and_help_as_a_loadable_file(run, env, tmp_path):
    (tmp_path / "newsletter.toml").write_text(
        'soft_bounce_limit = 5\nscheduler_sources = ["hf", "arxiv"]\nbounce_require_verp = false\n'
    )
    env["NEWSLETTER_TRANSPORT"] = "smtp://user:hunter2@127.0.0.1:2525?tls=none"

    result = run("config")

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith(f"# read from {tmp_path / 'newsletter.toml'}, then the environment")
    assert "hunter2" not in text and "test-secret-key" not in text
    for item in SETTINGS:
        assert f"# {item.help}\n# default {item.default_text()}" in text, item.name
    assert "\n# default 3\nsoft_bounce_limit = 5\n" in text
    assert '; environment NEWSLETTER_TRANSPORT\ntransport = "smtp://user:****@127.0.0.1' in text
    printed = tomllib.loads(text)
    assert list(printed) == [item.name for item in SETTINGS]
    assert printed["scheduler_sources"] == ["hf", "arxiv"] and not printed["bounce_require_verp"]
    assert printed["http_timeout"] == 20 and printed["secret_key"] == "****"
    # What it prints is a settings file that loads (the masked secret aside).
    again = tmp_path / "again.toml"
    again.write_text(text.replace('secret_key = "****"', f'secret_key = "{KEY}"'))
    assert load_settings(again, env={}).soft_bounce_limit == 5


def test_config_json_has_value_default_help_and_variable(run, env, tmp_path):
    (tmp_path / "newsletter.toml").write_text('bounce_domain = "b.example.org"\n')
    data = json.loads(run("config", "--json").stdout)
    assert data["config_file"] == str(tmp_path / "newsletter.toml")
    assert list(data["settings"]) == [item.name for item in SETTINGS]
    assert data["settings"]["bounce_domain"] == {
        "value": "b.example.org",
        "default": "",
        "help": SETTINGS_BY_NAME["bounce_domain"].help,
        "environment": None,
    }
    assert data["settings"]["secret_key"]["value"] == "****"
    assert data["settings"]["from_address"]["environment"] == "NEWSLETTER_FROM"
    assert data["settings"]["scheduler_sources"]["default"] == ["hf"]


def test_the_documented_arxiv_default_is_the_sources_own():
    shown = SETTINGS_BY_NAME["scheduler_arxiv_categories"].default_text()
    assert shown.endswith(", ".join(DEFAULT_CATEGORIES))


def test_option_classes_take_their_defaults_from_the_settings():
    from newsletter.audience.limits import Limits
    from newsletter.delivery.engine import SendOptions
    from newsletter.delivery.guard import GuardLimits
    from newsletter.editions.schedule import ScheduleConfig

    settings = Settings()
    assert Limits() == Limits.from_settings(settings)
    assert GuardLimits() == GuardLimits.from_settings(settings)
    plain = ScheduleConfig.from_settings(dataclasses.replace(settings, scheduler_sources=()))
    assert plain == ScheduleConfig()
    options = SendOptions()
    assert (options.batch_size, options.lease_seconds, options.max_attempts) == (
        settings.send_batch_size, settings.claim_lease_seconds, settings.max_attempts
    )  # fmt: skip
    assert (options.backoff_base, options.backoff_max, options.max_wait, options.empty_policy) == (
        settings.retry_base_seconds, settings.retry_max_seconds, settings.retry_wait_seconds,
        settings.empty_policy,
    )  # fmt: skip
