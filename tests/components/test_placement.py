"""The placement decides once who runs which server; the fingerprint is what the stack creates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.placement import role, stack_placement

ROOT = Path(__file__).resolve().parents[2]
CLIPPYFRONT = ROOT / "examples" / "clippyfront"
STACKS = [
    pytest.param(ROOT, "prod", id="makapix-prod"),
    pytest.param(ROOT, "dev", id="makapix-dev"),
    pytest.param(CLIPPYFRONT, "prod", id="clippyfront-prod"),
    pytest.param(CLIPPYFRONT, "dev", id="clippyfront-dev"),
]
# Makapix with 004 §7 B: production declares the shared broker.
SHARED_BROKER = {"mqtt": {"mode": "shared"}}


def declared_on_own_host(rendering: Any, type_: str) -> list[str]:
    """Names of the resources of one type that go to the stack's own Docker engine (not a remote
    worker's provider)."""
    return sorted(
        resource.plain_inputs()["name"]
        for resource in rendering.of_type(type_)
        if "provider" not in resource.options
    )


def test_a_shared_broker_is_in_its_owners_fingerprint(render_stack: Any) -> None:
    prod = render_stack("prod", **SHARED_BROKER)
    assert "makapix-shared-mqtt" in prod.outputs["isolation_fingerprint"]["containers"]


@pytest.mark.parametrize(
    ("project_dir", "stack", "overrides"),
    [
        *(pytest.param(*stack.values, {}, id=stack.id) for stack in STACKS),
        pytest.param(ROOT, "prod", SHARED_BROKER, id="makapix-prod-shared-broker"),
    ],
)
def test_the_fingerprint_lists_exactly_what_the_stack_declares_on_its_host(
    project_dir: Path, stack: str, overrides: dict[str, Any], render_stack: Any
) -> None:
    rendering = render_stack(stack, project_dir=project_dir, **overrides)
    fingerprint = rendering.outputs["isolation_fingerprint"]
    assert fingerprint["containers"] == declared_on_own_host(rendering, "docker:index/container:Container")
    assert fingerprint["volumes"] == declared_on_own_host(rendering, "docker:index/volume:Volume")
    assert fingerprint["networks"] == declared_on_own_host(rendering, "docker:index/network:Network")


@pytest.mark.parametrize(("project_dir", "stack"), STACKS)
def test_app_containers_join_exactly_the_networks_the_fingerprint_names(
    project_dir: Path, stack: str, render_stack: Any
) -> None:
    """``app_networks`` is the isolation boundary the guard compares: it must be what the containers join."""
    rendering = render_stack(stack, project_dir=project_dir)
    fingerprint = rendering.outputs["isolation_fingerprint"]
    app_containers = {binding["container"] for binding in fingerprint["bindings"]}
    checked = 0
    for resource in rendering.of_type("docker:index/container:Container"):
        inputs = resource.plain_inputs()
        if inputs["name"] in app_containers and "provider" not in resource.options:
            joined = {network["name"] for network in inputs["networksAdvanced"]}
            assert joined <= set(fingerprint["app_networks"]), inputs["name"]
            checked += 1
    assert checked >= 2


def test_one_rule_decides_the_role() -> None:
    assert role("dedicated", "production") == role("dedicated", "development") == "own"
    assert role("shared", "production") == "shared-owner"
    assert role("shared", "development") == "shared-guest"


def test_a_guest_declares_nothing_and_reaches_the_shared_servers_on_its_own_data_network() -> None:
    import yaml

    from components.parsing import parse_environment

    config = yaml.safe_load((CLIPPYFRONT / "Pulumi.dev.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in config.items()}
    placement = stack_placement(parse_environment(values, "Pulumi.dev.yaml", "clippyfront"))
    for server in (placement.db, placement.redis):
        assert (server.role, server.volume, server.ports) == ("shared-guest", None, ())
        assert server.networks == ("clippyfront-dev-data",)
        assert server.host == server.container  # reached by the shared container's name
    assert placement.mqtt is None and placement.declared_data_networks == {}
    assert placement.published_network is None and placement.host_ports == []
    assert placement.containers == ["clippyfront-dev-web", "clippyfront-dev-worker"]
