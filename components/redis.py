"""Redis of one environment: Celery broker, results and cache (000: a DB index per environment)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig
from components.container import (
    LOG_OPTIONS,
    container_options,
    healthcheck,
    labels,
    limit_args,
    owner_labels,
    published_network,
    replace_when_changed,
)


@dataclass(frozen=True)
class RedisArgs:
    settings: EnvironmentConfig
    internal_network: pulumi.Input[str]
    # Shared mode, production: every environment's data network (NetworksArgs declares them).
    shared_networks: list[pulumi.Input[str]] = field(default_factory=list)
    # Where its published ports are forwarded from (EnvironmentNetworks.published_name).
    published_network: pulumi.Input[str] | None = None


class Redis(pulumi.ComponentResource):
    """A Redis container with append-only persistence on a protected volume.

    Dedicated mode: on the environment's internal network. Shared mode (000): one server on the
    data network of each environment (``<project>-<env>-data``) declared by production; each environment its own DB index.
    """

    container: docker.Container | None
    volume: docker.Volume | None
    url: str

    def __init__(self, name: str, args: RedisArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Redis", name, None, opts)
        settings = args.settings
        shared = settings.redis.mode == "shared"
        host = settings.shared_container_name("redis") if shared else "redis"
        self.url = f"redis://{host}:6379/{settings.redis.db_index}"
        self.container = None
        self.volume = None
        if shared and settings.environment != "production":
            self.register_outputs({"url": self.url})
            return
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{settings.project}-shared_redis_data" if shared else settings.volume_name("redis_data"),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        check = ["CMD", "redis-cli", "ping"]
        remote = settings.remote_access
        # Remote workers (production only) reach Redis on the VPN address, never on every interface.
        ports = (
            [docker.ContainerPortArgs(internal=6379, external=remote.redis_port, ip=str(remote.address))]
            if remote is not None
            else None
        )
        self.container = docker.Container(
            f"{name}-container",
            name=settings.shared_container_name("redis") if shared else settings.container_name("redis"),
            image=settings.images.redis,
            command=["redis-server", "--appendonly", "yes"],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/data")],
            networks_advanced=[
                *(
                    docker.ContainerNetworksAdvancedArgs(name=network, aliases=["redis"])
                    for network in (args.shared_networks if shared else [args.internal_network])
                ),
                *published_network(args.published_network if ports else None),
            ],
            ports=ports,
            healthcheck=healthcheck(check),
            labels=labels(owner_labels(settings.project, settings.environment, "data" if shared else None)),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            **limit_args(settings.resources["redis"]),
            opts=container_options(self, replace_when_changed(healthcheck=check)),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
