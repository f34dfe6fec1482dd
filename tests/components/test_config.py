"""The environment configuration: defaults in code, one override rule, clear errors for bad input."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.config import EnvironmentConfig, memory_bytes
from components.parsing import ConfigurationError, merge_settings, parse_environment

# The SSH host key of the example worker host 10.8.0.5 (remote workers need it pinned).
GPU1_KNOWN_HOSTS = "10.8.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"

ROOT = Path(__file__).resolve().parents[2]


def stack_values(stack: str) -> dict:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in config.items()}


def parse(values: dict, source: str = "Pulumi.dev.yaml") -> EnvironmentConfig:
    return parse_environment(values, source, "makapix")


def dev_with(**changes) -> dict:
    return merge_settings(stack_values("dev"), changes)


def test_stack_files_hold_only_what_differs_and_get_004_defaults():
    dev = parse(stack_values("dev"))
    prod = parse(stack_values("prod"), "Pulumi.prod.yaml")
    assert dev.database.name == "makapix_dev" and prod.database.name == "makapix"
    assert dev.database.tuning == {"shared_buffers": "128MB", "work_mem": "4MB", "max_connections": "50"}
    assert dev.services["api"].resources.memory == "512M"
    assert dev.services["api"].resources.memory_reservation == "256M"
    assert dev.resources["db"].cpus == 1.0 and dev.resources["db"].memory == "1G"
    assert dev.services["web"].resources.cpus == 0.5
    assert (dev.mqtt.public_port, dev.mqtt.topic_prefix) == (8884, "makapix-dev")
    assert (prod.mqtt.public_port, prod.mqtt.topic_prefix) == (8883, "makapix")
    assert dev.services["worker"].queues == ["celery", "cpu", "gpu"]
    assert dev.github_redirect_uri == "https://development.makapix.club/api/auth/github/callback"
    assert dev.edge.block_crawlers and not prod.edge.block_crawlers
    assert (
        dev.container_name("db") == "makapix-dev-db" and dev.volume_name("pg_data") == "makapix-dev_pg_data"
    )
    for key in stack_values("dev"):
        assert key not in ("services", "resources", "mqtt", "redis"), f"{key} repeats a default"


def test_override_rule_maps_merge_lists_replace():
    defaults = {"a": {"b": 1, "c": [1, 2]}, "d": [1]}
    assert merge_settings(defaults, {"a": {"c": [3]}, "d": [2, 3]}) == {"a": {"b": 1, "c": [3]}, "d": [2, 3]}
    settings = parse(dev_with(services={"worker": {"queues": ["cpu"]}, "api": {"resources": {"cpus": 2}}}))
    assert settings.services["worker"].queues == ["cpu"]  # list replaced
    assert settings.services["api"].resources.cpus == 2.0
    assert settings.services["api"].resources.memory == "512M"  # map merged: the rest stays
    assert settings.services["worker"].concurrency == 1


def test_memory_sizes_are_binary():
    assert memory_bytes("512M") == 512 * 2**20
    assert memory_bytes("1G") == 2**30


MALFORMED = [
    # (what, change to the dev stack values, key named in the message, words in the message)
    ("wrong type", {"mqtt": {"public_port": "eighty"}}, "makapix:mqtt.public_port", "valid integer"),
    ("port out of range", {"mqtt": {"public_port": 70000}}, "makapix:mqtt.public_port", "65535"),
    ("unknown key", {"databse": {"name": "x"}}, "makapix:databse", "unknown key"),
    ("unknown nested key", {"database": {"nmae": "x"}}, "makapix:database.nmae", "unknown key"),
    (
        "negative limit",
        {"services": {"api": {"resources": {"cpus": -1}}}},
        "makapix:services.api.resources.cpus",
        "greater than 0",
    ),
    (
        "memory without unit",
        {"resources": {"db": {"memory": "1024"}}},
        "makapix:resources.db.memory",
        "'512M'",
    ),
    (
        "reservation above limit",
        {"services": {"api": {"resources": {"memory_reservation": "1G"}}}},
        "makapix:services.api.resources",
        "above the memory limit",
    ),
    (
        "invalid domain",
        {"domain": {"root": "not a domain"}},
        "makapix:domain.root",
        "development.makapix.club",
    ),
    (
        "unpinned image",
        {"services": {"api": {"image": "ghcr.io/makapix/api"}}},
        "makapix:services.api.image",
        "tag or a digest",
    ),
    ("latest tag", {"services": {"web": {"image": "web:latest"}}}, "makapix:services.web.image", "latest"),
    (
        "relative vault path",
        {"vault": {"host_path": "vault-dev"}},
        "makapix:vault.host_path",
        "absolute path",
    ),
    ("redis db out of range", {"redis": {"db_index": 16}}, "makapix:redis.db_index", "15"),
    (
        "bad sampling fraction",
        {"sampling": {"fraction": 1.5}},
        "makapix:sampling.fraction",
        "less than or equal to 1",
    ),
    (
        "callback of another domain",
        {"oauth": {"redirect_uri": "https://makapix.club/api/auth/github/callback"}},
        "makapix",
        "does not match this environment's domain",
    ),
    (
        "remote worker in dev",
        {
            "remote_workers": [
                {
                    "name": "gpu1",
                    "docker_host": "ssh://deploy@10.8.0.5",
                    "known_hosts": GPU1_KNOWN_HOSTS,
                }
            ],
            "mqtt": None,
        },
        "makapix",
        "remote workers join production only",
    ),
    (
        "bad tuning flag",
        {"database": {"tuning": {"shared buffers": "1"}}},
        "makapix:database.tuning",
        "not a PostgreSQL setting",
    ),
    ("structured value given as text", {"mqtt": "8884"}, "makapix:mqtt", "valid dictionary"),
]


@pytest.mark.parametrize(
    ("change", "key", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_configuration_names_file_key_and_fix(change, key, words):
    with pytest.raises(ConfigurationError) as caught:
        parse(dev_with(**change))
    message = str(caught.value)
    assert message.startswith("Pulumi.dev.yaml: ")
    assert key in message
    assert words in message


def test_missing_required_keys_are_named():
    values = stack_values("dev")
    del values["domain"], values["email"]
    with pytest.raises(ConfigurationError) as caught:
        parse(values)
    assert "makapix:domain: required key is missing" in str(caught.value)
    assert "makapix:email: required key is missing" in str(caught.value)


def test_missing_environment_says_what_to_set():
    with pytest.raises(
        ConfigurationError, match="makapix:environment is missing; set it to 'production' or 'development'"
    ):
        parse({"domain": {"root": "x.club"}})


def test_example_in_message_is_itself_valid():
    with pytest.raises(ConfigurationError) as caught:
        parse(dev_with(mqtt={"public_port": 0}))
    assert "e.g. 8884" in str(caught.value)
    assert parse(dev_with(mqtt={"public_port": 8884})).mqtt.public_port == 8884


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=12,
)
concern_keys = st.sampled_from(
    [
        "environment",
        "name",
        "domain",
        "database",
        "redis",
        "mqtt",
        "vault",
        "oauth",
        "email",
        "services",
        "resources",
        "edge",
        "sampling",
        "remote_workers",
        "images",
        "monitoring",
        "isolation",
        "project",
        "zzz",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    overrides=st.dictionaries(concern_keys, json_values, max_size=4),
    base=st.sampled_from(["dev", "prod", None]),
)
def test_fuzz_only_clear_errors(overrides, base):
    values = merge_settings(stack_values(base), overrides) if base else overrides
    try:
        parsed = parse(values)
    except ConfigurationError as error:
        assert str(error).startswith("Pulumi.dev.yaml: ")
    else:
        assert parsed.environment in ("production", "development")


@settings(max_examples=200, deadline=None)
@given(
    section=st.sampled_from(["database", "mqtt", "redis", "vault", "domain", "edge", "sampling", "oauth"]),
    key=st.sampled_from(
        [
            "name",
            "port",
            "public_port",
            "host_port",
            "db_index",
            "host_path",
            "root",
            "fraction",
            "caddy",
            "mode",
        ]
    ),
    value=json_values,
)
def test_fuzz_nested_values(section, key, value):
    try:
        parse(dev_with(**{section: {key: value}}))
    except ConfigurationError as error:
        assert f"makapix:{section}" in str(error)


def test_remote_workers_in_a_development_stack_are_refused_for_that_reason_not_the_broker():
    """Issue 15: with a broker declared (the Makapix default), the refusal blamed the MQTT broker."""
    with pytest.raises(ConfigurationError) as refused:
        parse(
            dev_with(
                remote_workers=[
                    {
                        "name": "gpu1",
                        "docker_host": "ssh://deploy@10.8.0.5",
                        "known_hosts": GPU1_KNOWN_HOSTS,
                    }
                ]
            )
        )
    message = str(refused.value)
    assert "remote_workers are declared by a development stack" in message
    assert "remove them from this stack" in message
    assert "MQTT" not in message


def test_remote_workers_beside_an_mqtt_broker_are_refused_in_production():
    prod = stack_values("prod")
    worker = {"name": "gpu1", "docker_host": "ssh://deploy@10.8.0.5", "known_hosts": GPU1_KNOWN_HOSTS}
    with pytest.raises(ConfigurationError, match="remove remote_workers or set mqtt: null"):
        parse(
            {**prod, "remote_workers": [worker], "remote_access": {"address": "10.8.0.1"}}, "Pulumi.prod.yaml"
        )


# --- SSH host keys are pinned (issue 15: every deployment secret travels over those connections) ---

OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ({"ssh_host": "10.0.0.5"}, "host.ssh_host is '10.0.0.5' but host.ssh_known_hosts is not set"),
        (
            {"ssh_host": "10.0.0.5", "ssh_known_hosts": f"10.0.0.6 {OTHER_KEY}"},
            "host.ssh_known_hosts: the line is for '10.0.0.6', not for '10.0.0.5'",
        ),
        (
            {"ssh_host": "10.0.0.5", "ssh_port": 2222, "ssh_known_hosts": f"10.0.0.5 {OTHER_KEY}"},
            "the line is for '10.0.0.5', not for '[10.0.0.5]:2222'",
        ),
        (
            {"ssh_host": "10.0.0.5", "ssh_known_hosts": "10.0.0.5 ssh-ed25519 AAAAnotakey"},
            "host.ssh_known_hosts: the key of type ssh-ed25519 is not a valid base64 ssh-ed25519 key",
        ),
        (
            {"ssh_host": "10.0.0.5", "ssh_known_hosts": "ssh-ed25519 AAAAC3Nza"},
            "is not a known_hosts line ('<host> <key type> <base64 key>')",
        ),
    ],
    ids=["missing", "another-host", "another-port", "bad-key", "not-a-line"],
)
def test_host_commands_over_ssh_need_the_host_key_pinned(host, words):
    with pytest.raises(ConfigurationError) as caught:
        parse(dev_with(host=host))
    message = str(caught.value)
    assert words in message
    assert "ssh-keyscan" in message and "fingerprint" in message


def test_a_hashed_known_hosts_line_and_a_port_are_understood():
    import base64
    import hashlib
    import hmac

    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, b"[10.0.0.5]:2222", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    settings = parse(
        dev_with(host={"ssh_host": "10.0.0.5", "ssh_port": 2222, "ssh_known_hosts": f"{hashed} {OTHER_KEY}"})
    )
    assert settings.host.host_key.public_key == OTHER_KEY


@pytest.mark.parametrize(
    ("worker", "words"),
    [
        ({}, "remote worker 'gpu1': known_hosts is not set"),
        (
            {"known_hosts": f"10.8.0.9 {OTHER_KEY}"},
            "remote worker 'gpu1': known_hosts: the line is for '10.8.0.9'",
        ),
    ],
    ids=["missing", "another-host"],
)
def test_remote_workers_need_their_host_key_pinned(worker, words):
    prod = stack_values("prod")
    workers = [{"name": "gpu1", "docker_host": "ssh://deploy@10.8.0.5", **worker}]
    with pytest.raises(ConfigurationError) as caught:
        parse(
            {**prod, "mqtt": None, "remote_workers": workers, "remote_access": {"address": "10.8.0.1"}},
            "Pulumi.prod.yaml",
        )
    assert words in str(caught.value)
    assert "ssh-keyscan -t ed25519 10.8.0.5" in str(caught.value)


@pytest.mark.parametrize(
    "image",
    [
        "127.0.0.1:5050/makapix/api:1.0.0",  # a registry with a port (found on the engine, issue 12)
        "registry.example.com:5000/makapix/api@sha256:" + "a" * 64,
        "localhost:5000/api:1.4.2",
    ],
)
def test_an_image_from_a_registry_with_a_port_is_accepted(image):
    assert parse(dev_with(services={"api": {"image": image}})).services["api"].image == image


@pytest.mark.parametrize("image", ["127.0.0.1:5050/makapix/api", "localhost:5000/api:latest"])
def test_a_registry_port_is_not_a_tag(image):
    with pytest.raises(ConfigurationError):
        parse(dev_with(services={"api": {"image": image}}))
