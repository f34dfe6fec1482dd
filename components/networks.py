"""The environment's own networks."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig


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
            labels=[docker.NetworkLabelArgs(label="makapix.environment", value=settings.environment)],
            # A fixed name cannot exist twice: delete the old network before creating its replacement.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.internal_name = self.internal.name
        self.edge_name = settings.network_name("edge")
        # Shared servers (database, Redis or MQTT in shared mode) live on a network production declares.
        self.shared_data_name: str | None = None
        self.shared_data: docker.Network | None = None
        if "shared" in (settings.database.mode, settings.redis.mode, settings.mqtt.mode):
            self.shared_data_name = settings.shared_network_name
            if settings.environment == "production":
                self.shared_data = docker.Network(
                    f"{name}-shared-data",
                    name=self.shared_data_name,
                    internal=True,
                    driver="bridge",
                    opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
                )
        self.register_outputs({"internal": self.internal_name, "edge": self.edge_name})
