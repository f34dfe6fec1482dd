"""What every container of the program has in common: limits, logs, restarts, safe replacement."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_docker as docker

from components.config import Resources, memory_bytes

if TYPE_CHECKING:
    from components.placement import ServerPlacement

# Bounded json-file logs: a chatty development container must not fill the production disk.
LOG_OPTIONS = {"max-size": "10m", "max-file": "5"}


def limit_args(resources: Resources) -> dict[str, Any]:
    """Docker's cpus/memory arguments (the provider takes memory in MiB)."""
    args: dict[str, Any] = {
        "cpus": f"{resources.cpus:g}",
        "memory": memory_bytes(resources.memory) // (1 << 20),
    }
    if resources.memory_reservation:
        args["memory_reservation"] = memory_bytes(resources.memory_reservation) // (1 << 20)
    return args


def healthcheck(test: Sequence[str], start_period: str = "20s") -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=list(test), interval="10s", timeout="5s", retries=5, start_period=start_period
    )


def replace_when_changed(**settings: Any) -> str:
    """A replacement trigger for settings pulumi-docker 5.2 updates in place but never applies.

    A change of a container's healthcheck, init or tmpfs shows as an update that never reaches
    Docker; hashing them into ``replacement_trigger`` makes such a change a replace instead.
    """
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def container_options(
    parent: pulumi.Resource, trigger: pulumi.Input[str], depends_on: Sequence[pulumi.Resource] = ()
) -> pulumi.ResourceOptions:
    # Fixed container names: the old container must go before its replacement can take the name.
    return pulumi.ResourceOptions(
        parent=parent,
        delete_before_replace=True,
        replacement_trigger=trigger,
        depends_on=list(depends_on),
    )


def environment_list(
    plain: Mapping[str, str], secret: Mapping[str, pulumi.Input[str]]
) -> list[pulumi.Input[str]]:
    """KEY=value strings, plain ones readable in previews, secret ones each wrapped as a secret."""
    entries: list[pulumi.Input[str]] = [f"{key}={value}" for key, value in sorted(plain.items())]
    for key, value in sorted(secret.items()):
        entries.append(pulumi.Output.secret(pulumi.Output.concat(key, "=", value)))
    return entries


def labels(values: Mapping[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=key, value=value) for key, value in sorted(values.items())]


def owner_labels(project: str, environment: str, shared: str | None = None) -> dict[str, str]:
    """Who a container belongs to, for ``python -m ops audit`` (docs/operations.md, "Isolation audit").

    Every container of one environment carries ``<project>.environment: <environment>``.  A container
    that serves every environment carries ``<project>.shared: <kind>`` instead: ``edge`` for the shared
    Caddy (allowed on the edge networks), ``data`` for a shared-mode server (allowed on the data networks).
    """
    if shared is not None:
        return {f"{project}.shared": shared}
    return {f"{project}.environment": environment}


def server_networks(
    placement: ServerPlacement, networks: Sequence[pulumi.Input[str]], published: pulumi.Input[str] | None
) -> list[docker.ContainerNetworksAdvancedArgs]:
    """A server's networks: where it meets app containers (with its alias, if any), then the plain
    bridge network its published ports are forwarded from (moby/moby#36174), if it publishes any."""
    aliases = [placement.alias] if placement.alias is not None else []
    joined = [docker.ContainerNetworksAdvancedArgs(name=network, aliases=aliases) for network in networks]
    if placement.ports and published is not None:
        joined.append(docker.ContainerNetworksAdvancedArgs(name=published))
    return joined


def port_args(placement: ServerPlacement) -> list[docker.ContainerPortArgs]:
    """The placement's host ports as Docker port bindings."""
    return [
        docker.ContainerPortArgs(internal=port.internal, external=port.external, ip=port.ip)
        for port in placement.ports
    ]
