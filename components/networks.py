"""The networks one stack declares: the environment's internal network, the data networks of a shared
server's owner and the published network of servers with host ports (``components.placement``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.placement import StackPlacement


@dataclass(frozen=True)
class NetworksArgs:
    placement: StackPlacement
    # The ``<project>.environment`` label of the environment's own networks.
    project: str
    environment: str


class EnvironmentNetworks(pulumi.ComponentResource):
    """An internal network (no route out) for database, cache, broker, api and workers, and the
    networks the placement adds.

    The edge networks, where Caddy meets web and api, are made by the stack that owns Caddy
    (``components.edge``) so that Caddy can join every environment's edge network.
    """

    internal_name: pulumi.Output[str]
    edge_name: str

    def __init__(self, name: str, args: NetworksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Networks", name, None, opts)
        placement = args.placement
        environment_label = [docker.NetworkLabelArgs(label=f"{args.project}.environment", value=args.environment)]
        # Every declared network by name, so that a container joining it depends on it.
        self._declared: dict[str, pulumi.Output[str]] = {}
        self.internal_name = self._bridge(
            f"{name}-internal", placement.internal_network, internal=True, labels=environment_label
        )
        self.edge_name = placement.edge_network
        # A shared server's owner declares a data network per served environment; its containers
        # and each environment's meet there, so no development container shares one with production.
        for served, network in placement.declared_data_networks.items():
            self._bridge(f"{name}-data-{served}", network, internal=True)
        # Docker forwards no published port of a container attached only to internal networks
        # (moby/moby#36174): a server that publishes a host port also joins this plain bridge network,
        # which no container of another environment joins. Service-to-service traffic stays on the
        # internal (or data) networks: no aliases here.
        self.published_name: pulumi.Output[str] | None = None
        if placement.published_network is not None:
            self.published_name = self._bridge(
                f"{name}-published", placement.published_network, internal=False, labels=environment_label
            )
        self.register_outputs({"internal": self.internal_name, "edge": self.edge_name})

    def _bridge(
        self, resource: str, network: str, internal: bool, labels: list[docker.NetworkLabelArgs] | None = None
    ) -> pulumi.Output[str]:
        declared = docker.Network(
            resource,
            name=network,
            internal=internal,
            driver="bridge",
            labels=labels,
            # A fixed name cannot exist twice: delete the old network before creating its replacement.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self._declared[network] = declared.name
        return declared.name

    def attach(self, networks: tuple[str, ...] | list[str] | str | None) -> list[pulumi.Input[str]]:
        """Network names as inputs that depend on their declaration here, when this stack declares them."""
        if networks is None:
            return []
        names = [networks] if isinstance(networks, str) else list(networks)
        return [self._declared.get(network, network) for network in names]
