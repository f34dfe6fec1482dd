"""Published host ports on the real engine: the database and the broker answer from the host.

Docker forwards no published port of a container attached only to ``internal`` networks
(moby/moby#36174); mocks cannot see this. Only the infrastructure containers are applied here
(networks, volumes, db, mqtt of prod and dev), so this runs in about a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.engine.harness import CONTAINER, NETWORK, VOLUME, StackHarness
from tests.engine.probes import mqtt_connect, postgres_login
from tests.engine.stacks import MAKAPIX
from tools.desired_state import RenderedResource, Rendering

pytestmark = pytest.mark.engine

INFRASTRUCTURE = ("-db", "-mqtt")


def infrastructure(resource: RenderedResource) -> bool:
    if resource.type in (NETWORK, VOLUME):
        return "edge" not in resource.name
    return resource.type == CONTAINER and resource.plain_inputs()["name"].endswith(INFRASTRUCTURE)


def client_certificate(rendering: Rendering, stack: str) -> tuple[str, str, str]:
    """CA, certificate and key the program gives the api container (MQTT_CA_CERT, ...)."""
    envs = rendering.get(CONTAINER, f"makapix-{stack}-api-container").plain_inputs()["envs"]
    variables = dict(item.split("=", 1) for item in envs)
    return variables["MQTT_CA_CERT"], variables["MQTT_CLIENT_CERT"], variables["MQTT_CLIENT_KEY"]


@pytest.fixture(scope="module")
def infrastructure_of_both(harness: StackHarness) -> Iterator[dict[str, Rendering]]:
    # Only infrastructure is applied: production keeps its default application images (promoted from
    # the committed dev outputs), which it never pulls here; a tag would be refused in production.
    infrastructure_only = {"release": MAKAPIX.overrides()["release"]}
    rendered = {
        stack: harness.render(
            stack,
            MAKAPIX.project_dir,
            extra_config=MAKAPIX.overrides() if stack == "dev" else infrastructure_only,
            resolve_images=False,
        )
        for stack in ("prod", "dev")
    }
    try:
        for rendering in rendered.values():
            harness.apply(rendering, MAKAPIX.project_dir, only=infrastructure)
        yield rendered
    finally:
        for rendering in rendered.values():
            harness.destroy(rendering, keep_protected=False, only=infrastructure)


def database_url(rendering: Rendering) -> str:
    url: str = rendering.plain_outputs()["database_host_url"]
    return url


def retry(check: Any, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while True:
        result: str = check()
        if result.startswith(("ok", "accepted")) or time.monotonic() > deadline:
            return result
        time.sleep(1)


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_the_database_answers_on_its_loopback_port(infrastructure_of_both: dict[str, Rendering], stack: str) -> None:
    rendering = infrastructure_of_both[stack]
    assert retry(lambda: postgres_login(database_url(rendering))).startswith("ok makapix@")


def test_each_broker_answers_its_clients_on_its_public_port_and_refuses_the_other(
    infrastructure_of_both: dict[str, Rendering],
) -> None:
    certificates = {stack: client_certificate(rendering, stack) for stack, rendering in infrastructure_of_both.items()}
    ports = {"prod": 8883, "dev": 8884}
    for stack, port in ports.items():
        ca, cert, key = certificates[stack]
        answer = retry(lambda port=port, ca=ca, cert=cert, key=key: mqtt_connect("127.0.0.1", port, ca, cert, key))
        assert answer == "accepted", stack
    prod_ca = certificates["prod"][0]
    _, dev_cert, dev_key = certificates["dev"]
    assert mqtt_connect("127.0.0.1", ports["prod"], prod_ca, dev_cert, dev_key).startswith("refused")
