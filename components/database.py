"""PostgreSQL of one environment: a dedicated container with its own protected volume (004 §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig
from components.container import (
    LOG_OPTIONS,
    container_options,
    environment_list,
    healthcheck,
    labels,
    limit_args,
    owner_labels,
    published_network,
    replace_when_changed,
)

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
    settings: EnvironmentConfig
    password: pulumi.Output[str]
    internal_network: pulumi.Input[str]
    # Shared mode, production: every environment's data network (NetworksArgs declares them).
    shared_networks: list[pulumi.Input[str]] = field(default_factory=list)
    # Where its published ports are forwarded from (EnvironmentNetworks.published_name).
    published_network: pulumi.Input[str] | None = None


class Database(pulumi.ComponentResource):
    """A PostgreSQL container, published on the host's loopback only.

    Dedicated mode: the environment's own server on its internal network (004 §3).
    Shared mode: one server on the data network of each environment (``<project>-<env>-data``), declared by the production
    stack; the development stack declares no server and its containers join that network (000,
    004 §3 alternative). Each environment keeps its own database name or table prefix there.
    """

    container: docker.Container | None
    volume: docker.Volume | None
    password: pulumi.Output[str]
    host: str
    url: pulumi.Output[str]
    host_url: pulumi.Output[str] | None

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Database", name, None, opts)
        settings = args.settings
        database = settings.database
        shared = database.mode == "shared"
        self.password = args.password
        if shared and settings.environment != "production":
            # One server, one owner role (000): the password is the one of the stack running the server.
            server = pulumi.StackReference(
                f"{name}-server", stack_name=database.server_stack, opts=pulumi.ResourceOptions(parent=self)
            )
            self.password = pulumi.Output.secret(server.require_output("shared_database_password"))
        self.host = settings.shared_container_name("db") if shared else settings.container_name("db")
        self.url = database_url(
            database.user, self.password, self.host if shared else "db", 5432, database.name
        )
        # Only the stack that runs a server publishes it; a guest of the shared server has no host port.
        publishes = not shared or settings.environment == "production"
        self.host_url = (
            database_url(database.user, self.password, "127.0.0.1", database.host_port, database.name)
            if database.host_port is not None and publishes
            else None
        )
        self.container = None
        self.volume = None
        if shared and settings.environment != "production":
            self.register_outputs({"host": self.host})
            return
        # Data outlives the container: a replace or a `pulumi destroy` never deletes it (README: deleting on purpose).
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{settings.project}-shared_pg_data" if shared else settings.volume_name("pg_data"),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        check = ["CMD-SHELL", f"pg_isready -U {database.user} -d {database.name}"]
        ports = []
        if database.host_port is not None:
            ports.append(docker.ContainerPortArgs(internal=5432, external=database.host_port, ip="127.0.0.1"))
        if settings.remote_access is not None:
            # Remote workers (production only): on the VPN address, never on every interface.
            remote = settings.remote_access
            ports.append(
                docker.ContainerPortArgs(internal=5432, external=remote.database_port, ip=str(remote.address))
            )
        self.container = docker.Container(
            f"{name}-container",
            name=self.host,
            image=settings.images.postgres,
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
            networks_advanced=[
                *(
                    docker.ContainerNetworksAdvancedArgs(name=network, aliases=["db"])
                    for network in (args.shared_networks if shared else [args.internal_network])
                ),
                *published_network(args.published_network if ports else None),
            ],
            ports=ports,
            healthcheck=healthcheck(check, start_period="30s"),
            labels=labels(owner_labels(settings.project, settings.environment, "data" if shared else None)),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            # Let PostgreSQL finish a checkpoint on stop instead of being killed after 10 s.
            destroy_grace_seconds=60,
            **limit_args(settings.resources["db"]),
            opts=container_options(self, replace_when_changed(healthcheck=check)),
        )
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
