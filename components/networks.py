"""The environment's own networks."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig
from components.isolation import publishes_server_ports


@dataclass(frozen=True)
class NetworksArgs:
    settings: EnvironmentConfig


class EnvironmentNetworks(pulumi.ComponentResource):
    """An internal network (no route out) for database, cache, broker, api and workers.

    The edge network, where Caddy meets web and api, is made by the stack that owns Caddy
    (``components.edge``) so that Caddy can join every environment's edge network.
    """

    internal: docker.Network
    internal_name: pulumi.Output[str]
    edge_name: str

    def __init__(self, name: str, args: NetworksArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Networks", name, None, opts)
        settings = args.settings
        self.internal = docker.Network(
            f"{name}-internal",
            name=settings.network_name("internal"),
            internal=True,
            driver="bridge",
            labels=[docker.NetworkLabelArgs(label=f"{settings.project}.environment", value=settings.environment)],
            # A fixed name cannot exist twice: delete the old network before creating its replacement.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.internal_name = self.internal.name
        self.edge_name = settings.network_name("edge")
        # Shared servers (database, Redis or MQTT in shared mode) meet each environment on a data network of
        # its own; production declares them all (as it does the edge networks), development joins its one.
        self.shared_data_name: pulumi.Input[str] | None = None
        self.shared_data_networks: list[pulumi.Output[str]] = []
        if "shared" in (settings.database.mode, settings.redis.mode, settings.mqtt.mode if settings.mqtt else None):
            self.shared_data_name = settings.shared_network_name()
            if settings.environment == "production":
                for served in settings.served_environments:
                    network = docker.Network(
                        f"{name}-data-{served}",
                        name=settings.shared_network_name(served),
                        internal=True,
                        driver="bridge",
                        opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
                    )
                    self.shared_data_networks.append(network.name)
                    if served == settings.name:
                        self.shared_data_name = network.name
        # Docker forwards no published port of a container attached only to internal networks
        # (moby/moby#36174): a server that publishes a host port (database, broker, shared Redis)
        # also joins this plain bridge network, which no container of another environment joins.
        # Service-to-service traffic stays on the internal (or data) networks: no aliases here.
        self.published: docker.Network | None = None
        self.published_name: pulumi.Output[str] | None = None
        if publishes_server_ports(settings):
            self.published = docker.Network(
                f"{name}-published",
                name=settings.network_name("published"),
                internal=False,
                driver="bridge",
                labels=[docker.NetworkLabelArgs(label=f"{settings.project}.environment", value=settings.environment)],
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            self.published_name = self.published.name
        # What an app container joins besides its internal and edge network: its data network, if any.
        self.shared_data = [self.shared_data_name] if self.shared_data_name is not None else []
        self.register_outputs({"internal": self.internal_name, "edge": self.edge_name})
