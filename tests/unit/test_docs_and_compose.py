"""The README and docker-compose.yml stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from switchboard.cli import cli
from switchboard.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`(SWITCHBOARD_[A-Z0-9_]+)`", readme))
    # "SWITCHBOARD_QUEUE_CRITICAL / _HIGH" style rows name the rest by suffix.
    suffixes = set(re.findall(r"`(_[A-Z0-9_]+)`", readme))
    missing = []
    for field, info in Settings.model_fields.items():
        variable = ENV_PREFIX + field.upper()
        if variable in documented:
            continue
        aliases = getattr(info.validation_alias, "choices", [])
        if aliases and not str(aliases[0]).startswith(ENV_PREFIX):  # OpenTelemetry's own variables
            if any(f"`{alias}`" in readme or f"`{alias}=" in readme for alias in aliases):
                continue
            missing.append(str(aliases[0]))
            continue
        if any(variable.endswith(suffix) for suffix in suffixes):
            continue
        missing.append(variable)
    assert missing == []


def test_compose_services_run_real_cli_commands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    commands = {command.name or command.callback.__name__ for command in cli.registered_commands if command.callback}
    for name, service in services.items():
        if name in ("postgres", "redis"):
            continue
        argv = service["command"]
        assert argv[0] == "switchboard" and argv[1] in commands, name
    assert services["worker-critical"]["command"][2:] == ["--queues", "critical,high"]
    assert services["worker"]["command"][2:] == ["--queues", "default,low"]
    beats = [name for name, service in services.items() if service.get("command", [None, None])[1:2] == ["beat"]]
    assert beats == ["beat"] and services["beat"]["deploy"]["replicas"] == 1
    assert services["migrate"]["restart"] == "no"
    assert "SWITCHBOARD_FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def test_readme_points_at_nothing_outside_the_repo_and_links_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "../" not in readme
    assert "(docs/architecture.md)" in readme and (ROOT / "docs" / "architecture.md").is_file()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    # the modules the plan names as homes exist
    for module in re.findall(r"`((?:switchboard/)?(?:db|tasks|hooks|api)/[a-z_]+\.py)`", architecture):
        assert (ROOT / "switchboard" / module.removeprefix("switchboard/")).is_file(), module
