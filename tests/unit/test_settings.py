"""Settings: embedded defaults, fixed variable names, clear errors, secrets kept secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.errors import ConfigurationError
from switchboard.settings import Settings, load_settings


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_") or name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_describe_the_embedded_mode(clean_env: Path) -> None:
    settings = load_settings()
    data_dir = clean_env / ".switchboard"
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'switchboard.db'}"
    assert settings.broker_url == f"redis+socket://{data_dir / 'redis.sock'}"
    assert settings.result_backend == settings.broker_url
    assert settings.uses_embedded_broker and settings.is_sqlite
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.all_queues == ["critical", "high", "default", "low"]
    assert settings.poll_insights_interval_s == 2.0


def test_fixed_variable_names_are_read(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "SWITCHBOARD_DATABASE_URL": "postgresql://u@db:5432/sb",
        "SWITCHBOARD_BROKER_URL": "redis://broker:6379/0",
        "SWITCHBOARD_API_HOST": "0.0.0.0",
        "SWITCHBOARD_API_PORT": "9000",
        "SWITCHBOARD_OPERATOR_KEYS": "key-one, key-two",
        "SWITCHBOARD_INGEST_KEYS": "key-three",
        "SWITCHBOARD_ALLOWED_HOSTS": "Switchboard.example.com, sb.internal",
        "SWITCHBOARD_TRUSTED_PROXIES": "10.0.0.5,10.1.0.0/16",
        "SWITCHBOARD_STRIPE_API_KEY": "sk_test_x",
        "SWITCHBOARD_STRIPE_API_BASE": "http://127.0.0.1:1/stripe",
        "SWITCHBOARD_STRIPE_WEBHOOK_SECRET": "whsec_x",
        "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN": "pat-x",
        "SWITCHBOARD_HUBSPOT_API_BASE": "http://127.0.0.1:1/hubspot",
        "SWITCHBOARD_HUBSPOT_CLIENT_SECRET": "hs-secret",
        "SWITCHBOARD_CALLS_API_KEY": "calls-key",
        "SWITCHBOARD_CALLS_API_BASE": "http://127.0.0.1:1/calls",
        "SWITCHBOARD_ANTHROPIC_API_KEY": "sk-ant-x",
        "SWITCHBOARD_ANTHROPIC_BASE_URL": "http://127.0.0.1:1/anthropic",
        "SWITCHBOARD_GEMINI_API_KEY": "gem-x",
        "SWITCHBOARD_GEMINI_BASE_URL": "http://127.0.0.1:1/gemini",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.database_url == "postgresql://u@db:5432/sb"
    assert settings.broker_url == "redis://broker:6379/0"
    assert settings.result_backend == "redis://broker:6379/0"
    assert not settings.uses_embedded_broker and not settings.is_sqlite
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 9000)
    assert [key.get_secret_value() for key in settings.operator_keys] == ["key-one", "key-two"]
    assert [key.get_secret_value() for key in settings.ingest_keys] == ["key-three"]
    assert settings.allowed_hosts == ["switchboard.example.com", "sb.internal"]
    assert settings.trusted_proxies == ["10.0.0.5", "10.1.0.0/16"]
    assert settings.stripe_api_key is not None and settings.stripe_api_key.get_secret_value() == "sk_test_x"
    assert settings.stripe_api_base == "http://127.0.0.1:1/stripe"
    assert settings.hubspot_api_base == "http://127.0.0.1:1/hubspot"
    assert settings.calls_api_base == "http://127.0.0.1:1/calls"
    assert settings.anthropic_base_url == "http://127.0.0.1:1/anthropic"
    assert settings.gemini_base_url == "http://127.0.0.1:1/gemini"
    assert settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value() == "sk-ant-x"
    assert settings.gemini_api_key is not None and settings.gemini_api_key.get_secret_value() == "gem-x"


def test_usual_provider_key_names_work_and_prefixed_ones_win(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plain-anthropic")
    monkeypatch.setenv("GEMINI_API_KEY", "plain-gemini")
    settings = load_settings()
    assert settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value() == "plain-anthropic"
    assert settings.gemini_api_key is not None and settings.gemini_api_key.get_secret_value() == "plain-gemini"
    monkeypatch.setenv("SWITCHBOARD_ANTHROPIC_API_KEY", "prefixed")
    assert load_settings().anthropic_api_key.get_secret_value() == "prefixed"  # type: ignore[union-attr]


def test_supabase_style_postgres_url_is_normalised(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", "postgres://u:p@db.example.supabase.co:5432/postgres")
    assert load_settings().database_url == "postgresql://u:p@db.example.supabase.co:5432/postgres"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SWITCHBOARD_API_PORT", "eighty"),
        ("SWITCHBOARD_API_PORT", "70000"),
        ("SWITCHBOARD_DATABASE_URL", "mysql://root@localhost/x"),
        ("SWITCHBOARD_BROKER_URL", "http://localhost:6379"),
        ("SWITCHBOARD_POLL_INSIGHTS_INTERVAL_S", "-1"),
        ("SWITCHBOARD_ANALYST_PROVIDER", "openai"),
        ("SWITCHBOARD_FLOWER_BASIC_AUTH", "no-colon"),
    ],
)
def test_invalid_settings_name_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert variable in str(caught.value)


def test_secrets_never_appear_in_repr_or_errors(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_STRIPE_API_KEY", "sk_live_very_secret_value")
    monkeypatch.setenv("SWITCHBOARD_FLOWER_BASIC_AUTH", "admin-without-password-separator")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "admin-without-password-separator" not in str(caught.value)
    monkeypatch.delenv("SWITCHBOARD_FLOWER_BASIC_AUTH")
    settings = load_settings()
    assert "sk_live_very_secret_value" not in repr(settings)
    assert "sk_live_very_secret_value" not in str(settings.model_dump())


def test_queue_prefix_applies_to_every_queue(clean_env: Path) -> None:
    settings = Settings(queue_prefix="acme.")
    assert settings.all_queues == ["acme.critical", "acme.high", "acme.default", "acme.low"]


def test_cli_reports_invalid_setting_and_exits_2(clean_env: Path) -> None:
    env = {"PATH": os.environ["PATH"], "SWITCHBOARD_API_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "switchboard", "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "SWITCHBOARD_API_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_visibility_timeout_must_exceed_task_limit_and_backoff_cap(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_VISIBILITY_TIMEOUT_S", "600")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()  # default task time limit is 900 s
    assert "SWITCHBOARD_VISIBILITY_TIMEOUT_S (600) must exceed" in str(caught.value)
    monkeypatch.setenv("SWITCHBOARD_TASK_TIME_LIMIT_S", "500")
    assert load_settings().visibility_timeout_s == 600


def test_the_old_single_key_list_is_refused_with_how_it_was_split(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_API_KEYS", "sbk_old_key_value")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "SWITCHBOARD_OPERATOR_KEYS" in message and "SWITCHBOARD_INGEST_KEYS" in message
    assert "sbk_old_key_value" not in message


def test_keyless_api_refuses_a_public_bind_and_makes_a_local_key(clean_env: Path) -> None:
    from switchboard.processes import api_command

    with pytest.raises(ConfigurationError, match="SWITCHBOARD_OPERATOR_KEYS"):
        api_command(load_settings(api_host="0.0.0.0"))

    argv, env, url = api_command(load_settings())
    key = env["SWITCHBOARD_LOCAL_OPERATOR_KEY"]
    assert len(key) >= 40 and url == f"http://127.0.0.1:8000/dashboard#key={key}"
    assert key not in " ".join(argv)  # never on a command line that `ps` shows
    assert "--no-proxy-headers" in argv  # no forwarding header is believed by default
    assert api_command(load_settings())[1]["SWITCHBOARD_LOCAL_OPERATOR_KEY"] != key  # new per start

    configured = load_settings(api_host="0.0.0.0", operator_keys="k-1", trusted_proxies="10.0.0.5")
    argv, env, url = api_command(configured)
    assert env == {} and url == "http://0.0.0.0:8000/dashboard"
    assert argv[argv.index("--forwarded-allow-ips") + 1] == "10.0.0.5" and "--proxy-headers" in argv
