"""deploy/ cannot run here (no Docker engine): keep its files consistent with the code instead."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import pytest
import yaml

from newsletter.cli import cli

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REPO = DEPLOY.parent


def _cli_path_exists(words: list[str]) -> bool:
    """True when `newsletter WORDS...` names a real (sub)command and its options exist."""
    assert words[0] == "newsletter", words
    command = cli
    for word in words[1:]:
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if not any(name in p.opts for p in command.params):
                return False
            continue
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            continue  # an option's value
        command = sub
    return command is not cli


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_whole_stack(compose):
    services = compose["services"]
    assert {"postgres", "web", "scheduler", "worker", "mailpit", "migrate"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["web"]["ports"] == ["8000:8000"]
    for name in ("web", "scheduler", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["NEWSLETTER_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["NEWSLETTER_TRANSPORT"].startswith("smtp://mailpit:1025")


def test_compose_commands_exist_in_the_cli(compose):
    for name in ("web", "scheduler", "worker", "migrate"):
        command = compose["services"][name]["command"]
        assert _cli_path_exists(command), f"{name}: {command}"


def test_dockerfile_installs_the_package_and_runs_unprivileged():
    text = (DEPLOY / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (REPO / copied).exists(), copied
    assert re.search(r"^USER newsletter$", text, flags=re.M)
    health = re.search(r'CMD \["newsletter", "(\w+)"\]', text.split("HEALTHCHECK", 1)[1])
    assert health and _cli_path_exists(["newsletter", health.group(1)])


@pytest.mark.parametrize("unit", sorted(p.name for p in DEPLOY.glob("*.service")))
def test_systemd_units_start_real_commands(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(DEPLOY / unit)
    exec_start = shlex.split(parser["Service"]["ExecStart"])
    assert exec_start[0].endswith("/newsletter")
    assert _cli_path_exists(["newsletter", *exec_start[1:]]), exec_start
    assert parser["Service"]["User"] == "newsletter"
