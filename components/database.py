"""PostgreSQL of one environment: a dedicated container with its own protected volume (004 §3)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.config import DatabaseSettings, Resources
from components.container import (
    LOG_OPTIONS,
    container_options,
    environment_list,
    healthcheck,
    labels,
    limit_args,
    port_args,
    replace_when_changed,
    server_networks,
)
from components.placement import ServerPlacement

DATA_DIRECTORY = "/var/lib/postgresql/data"


def postgres_command(tuning: dict[str, str]) -> list[str]:
    """The server command line: ``postgres -c name=value ...`` in a stable order."""
    command = ["postgres"]
    for flag, value in sorted(tuning.items()):
        command += ["-c", f"{flag}={value}"]
    return command


def database_url(
    user: str, password: pulumi.Input[str], host: str, port: int, database: str
) -> pulumi.Output[str]:
    """A secret connection URL (the password is URL-safe: generated without specials, or given)."""
    return pulumi.Output.secret(
        pulumi.Output.concat("postgresql://", user, ":", password, f"@{host}:{port}/{database}")
    )


@dataclass(frozen=True)
class DatabaseArgs:
    placement: ServerPlacement
    database: DatabaseSettings
    image: str
    resources: Resources
    password: pulumi.Output[str]
    # The placement's networks as inputs (``EnvironmentNetworks.attach``), and its published network.
    networks: list[pulumi.Input[str]]
    published_network: pulumi.Input[str] | None = None


class Database(pulumi.ComponentResource):
    """A PostgreSQL container, published on the host's loopback only.

    Own (dedicated mode): the environment's own server on its internal network (004 §3).
    Shared: one server on the data network of each environment (``<project>-<env>-data``), declared by
    its owner (production); a guest declares no server and its containers join that network (000, 004 §3
    alternative). Each environment keeps its own database name or table prefix there.
    """

    container: docker.Container | None
    volume: docker.Volume | None
    password: pulumi.Output[str]
    host: str
    url: pulumi.Output[str]
    host_url: pulumi.Output[str] | None

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Database", name, None, opts)
        placement, database = args.placement, args.database
        self.password = args.password
        if not placement.declared:
            # One server, one owner role (000): the password is the one of the stack running the server.
            server = pulumi.StackReference(
                f"{name}-server", stack_name=database.server_stack, opts=pulumi.ResourceOptions(parent=self)
            )
            self.password = pulumi.Output.secret(server.require_output("shared_database_password"))
        self.host = placement.container
        self.url = database_url(database.user, self.password, placement.host, 5432, database.name)
        # Where the host reaches it: its loopback port, which only the stack that runs it publishes.
        loopback = next((port for port in placement.ports if port.ip == "127.0.0.1"), None)
        self.host_url = (
            database_url(database.user, self.password, "127.0.0.1", loopback.external, database.name)
            if loopback is not None
            else None
        )
        self.container = None
        self.volume = None
        if not placement.declared or placement.volume is None:
            self.register_outputs({"host": self.host})
            return
        # Data outlives the container: a replace or a `pulumi destroy` never deletes it (README: deleting on purpose).
        self.volume = docker.Volume(
            f"{name}-data",
            name=placement.volume,
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        check = ["CMD-SHELL", f"pg_isready -U {database.user} -d {database.name}"]
        self.container = docker.Container(
            f"{name}-container",
            name=placement.container,
            image=args.image,
            command=postgres_command(database.tuning),
            envs=environment_list(
                {
                    "POSTGRES_DB": database.name,
                    "POSTGRES_USER": database.user,
                    "PGDATA": f"{DATA_DIRECTORY}/pgdata",
                },
                {"POSTGRES_PASSWORD": self.password},
            ),
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIRECTORY)],
            networks_advanced=server_networks(placement, args.networks, args.published_network),
            ports=port_args(placement),
            healthcheck=healthcheck(check, start_period="30s"),
            labels=labels(placement.labels),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            # Let PostgreSQL finish a checkpoint on stop instead of being killed after 10 s.
            destroy_grace_seconds=60,
            **limit_args(args.resources),
            opts=container_options(self, replace_when_changed(healthcheck=check)),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
