"""Which environment variables the application gets: ``application.variables``, per profile."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.app import application_environment, application_sources
from components.config import APPLICATION_SOURCES, DEPLOY_SECRET_KEYS, SECRET_KEYS
from components.mqtt import client_sources
from components.parsing import ConfigurationError, merge_settings, parse_environment
from components.placement import stack_placement

ROOT = Path(__file__).resolve().parents[2]


def broker_sources(settings: Any) -> dict[str, str]:
    """What the stack's MqttBroker hands the application: its client settings, by placement."""
    broker = stack_placement(settings).mqtt
    return client_sources(broker, settings.mqtt) if broker is not None else {}


def makapix(stack: str = "dev", **changes: Any):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in config.items()}
    return parse_environment(merge_settings(values, changes), f"Pulumi.{stack}.yaml", "makapix")


def test_every_source_the_config_accepts_is_one_the_program_computes():
    """APPLICATION_SOURCES (validated in config) and application_sources (app.py) stay in step."""
    settings = makapix(
        domain={"vault": "vault-dev.makapix.club"},
        application={"admin": {"email": "admin@makapix.club"}},
    )
    # The application's secrets: every secret key but the deployment's own (load_stack_config splits them).
    secrets: Any = {key: f"value-of-{key}" for key in SECRET_KEYS if key not in DEPLOY_SECRET_KEYS}
    plain, secret = application_sources(settings, "db-url", "redis://redis:6379/0", broker_sources(settings), secrets)  # type: ignore[arg-type]
    assert set(plain) | set(secret) == set(APPLICATION_SOURCES)
    assert set(plain).isdisjoint(secret)
    assert secret["secret.admin_password"] == "value-of-admin_password"


def test_variables_map_sources_and_secrets_stay_secret():
    settings = makapix(application={"variables": {"CACHE_URL": "redis.url", "APP_KEY": "secret.jwt_secret"}})
    secrets: Any = {"jwt_secret": "the-jwt"}
    plain, secret = application_environment(settings, "the-db-url", "redis://redis:6379/0", broker_sources(settings), secrets)  # type: ignore[arg-type]
    assert plain["CACHE_URL"] == plain["REDIS_URL"] == "redis://redis:6379/0"
    assert secret == {"DATABASE_URL": "the-db-url", "JWT_SECRET_KEY": "the-jwt", "APP_KEY": "the-jwt"}
    # Optional settings that are not configured pass nothing: no OAuth secret was given.
    assert "GITHUB_OAUTH_CLIENT_SECRET" not in secret


def test_null_removes_a_default_variable():
    settings = makapix(application={"variables": {"NEXT_PUBLIC_API_BASE_URL": None}})
    plain, _ = application_environment(settings, "u", "redis://redis:6379/0", broker_sources(settings), {})  # type: ignore[arg-type]
    assert "NEXT_PUBLIC_API_BASE_URL" not in plain and plain["BASE_URL"] == "https://development.makapix.club"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"application": {"variables": {"REDIS": "redis.uri"}}},
            "makapix:application.variables: Value error, REDIS: 'redis.uri' is not a setting the program can pass",
        ),
        (
            {"application": {"variables": {"lower": "redis.url"}}},
            "'lower' is not an environment variable name",
        ),
        (
            # `mqtt: null` alone drops the default MQTT variables; one the stack file maps there is refused.
            {"mqtt": None, "application": {"variables": {"MQTT_HOST": "mqtt.host"}}},
            "application.variables.MQTT_HOST passes 'mqtt.host' but mqtt is not configured",
        ),
        (
            {"application": {"variables": {"ADMIN": "admin.username"}}},
            "passes 'admin.username' but application.admin is not configured",
        ),
        (
            {"services": {"web": {"route": "/api"}}},
            "services api, web all have route '/api'",
        ),
    ],
)
def test_bad_application_settings_are_named(change, words):
    with pytest.raises(ConfigurationError) as caught:
        makapix(**change)
    message = str(caught.value).replace("Value error, ", "")
    assert message.startswith("Pulumi.dev.yaml: ")
    assert words.replace("Value error, ", "") in message
