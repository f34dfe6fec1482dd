"""Redis of one environment: Celery broker, results and cache (000: a DB index per environment)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import RedisSettings, Resources
from components.container import (
    LOG_OPTIONS,
    container_options,
    healthcheck,
    labels,
    limit_args,
    port_args,
    replace_when_changed,
    server_networks,
)
from components.placement import ServerPlacement


@dataclass(frozen=True)
class RedisArgs:
    placement: ServerPlacement
    redis: RedisSettings
    image: str
    resources: Resources
    # The placement's networks as inputs (``EnvironmentNetworks.attach``), and its published network.
    networks: list[pulumi.Input[str]]
    published_network: pulumi.Input[str] | None = None


class Redis(pulumi.ComponentResource):
    """A Redis container with append-only persistence on a protected volume.

    Own (dedicated mode): on the environment's internal network. Shared (000): one server on the data
    network of each environment (``<project>-<env>-data``) declared by its owner, production; each
    environment its own DB index.
    """

    container: docker.Container | None
    volume: docker.Volume | None
    url: str

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Redis", name, None, opts)
        placement = args.placement
        self.url = f"redis://{placement.host}:6379/{args.redis.db_index}"
        self.container = None
        self.volume = None
        if not placement.declared or placement.volume is None:
            self.register_outputs({"url": self.url})
            return
        self.volume = docker.Volume(
            f"{name}-data",
            name=placement.volume,
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        check = ["CMD", "redis-cli", "ping"]
        self.container = docker.Container(
            f"{name}-container",
            name=placement.container,
            image=args.image,
            command=["redis-server", "--appendonly", "yes"],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/data")],
            networks_advanced=server_networks(placement, args.networks, args.published_network),
            # Remote workers (production only) reach Redis on the VPN address, never on every interface.
            ports=port_args(placement) or None,
            healthcheck=healthcheck(check),
            labels=labels(placement.labels),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            **limit_args(args.resources),
            opts=container_options(self, replace_when_changed(healthcheck=check)),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
