"""What the stacks declare for the sampling: prod's read-only role, dev's sampling command and its triggers.

The command itself is executed for real in tests/sampling/test_stack_run.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from components.parsing import parse_environment
from components.sampling_run import shared_target_url
from tools.desired_state import RenderError, Secret

ROOT = Path(__file__).parents[2]
RUN = ("command:local:Command", "makapix-dev-sampling-command")
GRANT = ("command:local:Command", "makapix-prod-sampling-reader-grant")
SOURCE = "postgresql://makapix_sampler:Pw0fTheReader@127.0.0.1:55432/makapix"


def references(**outputs: Any) -> dict[str, dict[str, Any]]:
    prod = json.loads((ROOT / "stack_references" / "prod.json").read_text())
    return {"prod": {**prod, **outputs}}


def triggers(render_stack: Callable[..., Any], **overrides: Any) -> list[Any]:
    rendering = render_stack("dev", references=references(sampling_source_url=SOURCE), **overrides)
    declared: list[Any] = rendering.get(*RUN).plain_inputs()["triggers"]
    return declared


def test_prod_declares_no_sampling_run_and_refuses_one(render_stack: Callable[..., Any]) -> None:
    prod = render_stack("prod")
    commands = [resource.name for resource in prod.of_type("command:local:Command")]
    # Its host commands: the reader grant and the release's backup and migrations, no sampling run.
    assert sorted(commands) == [
        "makapix-prod-backup-pg-dump",
        "makapix-prod-migrations-run",
        "makapix-prod-sampling-reader-grant",
    ]
    assert not [r for r in prod.resources if "stack-run" in json.dumps(r.plain_inputs())]
    assert prod.of_type("makapix:environment:SamplingRun") == []
    assert "sampling_summary" not in prod.outputs
    with pytest.raises(RenderError, match=r"sampling\.enabled is true on a production stack"):
        render_stack("prod", sampling={"enabled": True})


def test_prod_grants_the_reader_after_its_database_and_exports_it_as_a_secret(
    render_stack: Callable[..., Any],
) -> None:
    prod = render_stack("prod")
    grant = prod.get(*GRANT)
    inputs = grant.plain_inputs()
    assert (
        inputs["create"] == ".venv/bin/python -m sampling grant-reader --role makapix_sampler --schema public"
    )
    assert "makapix-prod-db-container" in grant.options["depends_on"]
    assert isinstance(grant.inputs["environment"], Secret)
    password = "mock-secret-makapix-prod-sampling-reader-password"
    assert inputs["environment"]["SAMPLING_READER_PASSWORD"] == password
    assert inputs["environment"]["SAMPLING_OWNER_URL"].startswith("postgresql://makapix:")
    assert password in inputs["triggers"] and "makapix_sampler" in inputs["triggers"]
    assert isinstance(prod.outputs["sampling_source_url"], Secret)
    url = urlsplit(prod.outputs["sampling_source_url"].value)
    assert (url.username, url.password, url.hostname, url.port, url.path) == (
        "makapix_sampler",
        password,
        "127.0.0.1",
        55432,
        "/makapix",
    )
    assert prod.outputs["sampling_source_vault"] == "/mnt/vault-1"
    other = render_stack(
        "prod", sampling={"reader_role": "reader_two", "reader_schemas": ["public", "audit"]}
    )
    assert (
        other.get(*GRANT)
        .plain_inputs()["create"]
        .endswith("--role reader_two --schema public --schema audit")
    )


def test_dev_command_environment_is_secret_and_its_command_line_is_not(
    render_stack: Callable[..., Any],
) -> None:
    dev = render_stack("dev", references=references(sampling_source_url=SOURCE))
    command = dev.get(*RUN)
    assert isinstance(command.inputs["environment"], Secret)
    environment = command.plain_inputs()["environment"]
    assert environment["SAMPLING_SOURCE_URL"] == SOURCE
    assert environment["SAMPLING_ANONYMISATION_KEY"] == "mock-secret-makapix-dev-sampling-anonymisation-key"
    assert environment["SAMPLING_TARGET_URL"] == dev.outputs["database_host_url"].value
    create = command.inputs["create"]
    assert isinstance(create, str)
    assert "Pw0fTheReader" not in create and "mock-secret" not in create
    assert set(command.options["depends_on"]) >= {
        "makapix-dev-db-container",
        "makapix-dev-api-container",
        "makapix-dev-web-container",
        "makapix-dev-worker-container",
    }
    # The summary is a plain output (not yet reported under mocks) and part of the monitoring output.
    assert dev.outputs["sampling_summary"]["loaded"] is False
    assert dev.outputs["monitoring"]["sampling"] == dev.outputs["sampling_summary"]


def test_triggers_change_with_config_content_fraction_seed_refresh_and_source_only(
    render_stack: Callable[..., Any], tmp_path: Path
) -> None:
    config = tmp_path / "makapix.yaml"
    shutil.copy(ROOT / "sampling" / "makapix.yaml", config)
    copy_elsewhere = tmp_path / "copy.yaml"
    shutil.copy(config, copy_elsewhere)
    base = triggers(render_stack, sampling={"config_file": str(config)})

    # Unchanged settings, the same content under another name, or unrelated settings: no new run.
    assert triggers(render_stack, sampling={"config_file": str(config)}) == base
    assert triggers(render_stack, sampling={"config_file": str(copy_elsewhere)}) == base
    assert (
        triggers(render_stack, sampling={"config_file": str(config)}, services={"worker": {"concurrency": 3}})
        == base
    )

    changed = {
        "fraction": triggers(render_stack, sampling={"config_file": str(config), "fraction": 0.2}),
        "seed": triggers(render_stack, sampling={"config_file": str(config), "seed": 2}),
        "refresh": triggers(render_stack, sampling={"config_file": str(config), "refresh": "2026-11-22"}),
    }
    config.write_text(config.read_text() + "\n# one more comment\n")
    changed["content"] = triggers(render_stack, sampling={"config_file": str(config)})
    for what, new in changed.items():
        assert new != base, what
        assert sum(a != b for a, b in zip(new, base, strict=True)) == 1, what


def test_source_availability_is_a_plain_trigger(
    render_stack: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    readable = triggers(render_stack)
    without_output = render_stack("dev", references=references(sampling_source_url=None)).get(*RUN)
    monkeypatch.setenv("MAKAPIX_ABSENT_STACKS", "prod")
    absent = render_stack("dev", references={"unused": {}}).get(*RUN)
    assert readable[-1] == "source: readable"
    assert without_output.plain_inputs()["triggers"][-1] == (
        "source: stack 'prod' exports no sampling_source_url (deploy it with this program)"
    )
    assert (
        absent.inputs["triggers"][-1] == "source: the production stack 'prod' is not deployed on this backend"
    )
    assert readable[:-1] == absent.plain_inputs()["triggers"][:-1]


def test_no_sampling_when_disabled_and_a_clear_error_for_a_bad_config_file(
    render_stack: Callable[..., Any], tmp_path: Path
) -> None:
    disabled = render_stack("dev", sampling={"enabled": False})
    assert not [r for r in disabled.of_type("command:local:Command") if "sampling" in r.name]
    assert (
        "sampling_summary" not in disabled.outputs and disabled.outputs["monitoring"].get("sampling") is None
    )
    with pytest.raises(
        RenderError, match=r"Pulumi.dev.yaml: makapix:sampling.config_file 'nowhere.yaml' cannot be read"
    ):
        render_stack("dev", sampling={"config_file": "nowhere.yaml"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("roots: []\n")
    with pytest.raises(
        RenderError, match=r"makapix:sampling.config_file: .*bad.yaml: invalid sampling configuration"
    ):
        render_stack("dev", sampling={"config_file": str(bad)})


def test_shared_mode_targets_the_dev_database_on_productions_server(render_stack: Callable[..., Any]) -> None:
    # 000 / 004 §3 alternative: production's server holds both databases; the sampler reaches it where
    # production publishes it, as the shared owner role, with development's database name.
    outputs = references(sampling_source_url=SOURCE, shared_database_password="Sh4redOwner")
    dev = render_stack("dev", references=outputs, database={"mode": "shared", "name": "makapix_dev"})
    environment = dev.get(*RUN).plain_inputs()["environment"]
    assert (
        environment["SAMPLING_TARGET_URL"] == "postgresql://makapix:Sh4redOwner@127.0.0.1:55432/makapix_dev"
    )
    assert environment["SAMPLING_SOURCE_URL"] == SOURCE

    settings = parse_environment(
        {
            "environment": "development",
            "domain": {"root": "dev.example.org"},
            "vault": {"host_path": "/srv/vault-dev"},
            "email": {"from_address": "dev@example.org"},
            "database": {"mode": "shared", "name": "clippy_front", "table_prefix": "dev_", "user": "clippy"},
        },
        "Pulumi.dev.yaml",
        "makapix",
    )
    # Same database, other table prefix: the sampler's mapping (source_prefix/target_prefix) does the rest.
    target = shared_target_url(
        settings.database, "postgresql://reader:pw@127.0.0.1:55432/clippy_front", "ownerpw"
    )
    assert target == "postgresql://clippy:ownerpw@127.0.0.1:55432/clippy_front"
    assert shared_target_url(settings.database, "", "ownerpw") == ""
    assert shared_target_url(settings.database, "[secret]", "ownerpw") == ""


def test_a_dev_database_of_its_own_without_a_host_port_cannot_be_sampled_into(
    render_stack: Callable[..., Any],
) -> None:
    # The sampler reaches a database the stack runs itself on the host's loopback; only a guest of
    # production's shared server is reached where production is.
    with pytest.raises(
        RenderError, match=r"Pulumi.dev.yaml: sampling.enabled needs makapix:database.host_port"
    ):
        render_stack("dev", references=references(sampling_source_url=SOURCE), database={"host_port": None})
    outputs = references(sampling_source_url=SOURCE, shared_database_password="Sh4redOwner")
    guest = render_stack(
        "dev", references=outputs, database={"mode": "shared", "name": "makapix_dev", "host_port": None}
    )
    assert (
        guest.get(*RUN)
        .plain_inputs()["environment"]["SAMPLING_TARGET_URL"]
        .endswith("@127.0.0.1:55432/makapix_dev")
    )
