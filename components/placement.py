"""Who runs which server, decided once per stack.

Every server the application needs (PostgreSQL, Redis, the MQTT broker, the Caddy edge) is, from
one stack's point of view, in one of three roles:

- ``own``: this environment's private server (dedicated mode): ``<project>-<env>-db`` on its
  internal network, its own volume and host ports;
- ``shared-owner``: one server for every environment, declared by this stack (production in shared
  mode; the stack with ``edge.caddy: own`` for the edge), named for no environment
  (``<project>-shared-db``) and meeting each environment on that environment's own network;
- ``shared-guest``: the other stack's shared server; this stack declares nothing for it and its
  containers reach it on this environment's network.

:func:`stack_placement` computes that once from the configuration. The components declare exactly
what their placement says, and the isolation fingerprint, the monitoring output and the host-port
list read the same placement, so they cannot drift from what the stack creates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from components.config import EnvironmentConfig, Mode
from components.config import Role as Role  # re-exported: the placement's vocabulary
from components.config import role as role
from components.container import owner_labels

ServerKind = Literal["db", "redis", "mqtt"]

# The broker's TLS listener inside its container, published on the host.
MQTT_TLS_PORT = 8883
# Each server's volume: <project>-<env>_<volume> (own) or <project>-shared_<volume> (shared owner).
_VOLUMES: dict[ServerKind, str] = {"db": "pg_data", "redis": "redis_data", "mqtt": "mqtt_data"}


@dataclass(frozen=True)
class HostPort:
    """One port a container publishes on the Docker host; ``ip`` None: every interface."""

    internal: int
    external: int
    ip: str | None = None


@dataclass(frozen=True)
class ServerPlacement:
    """Where one server runs and how this stack's containers reach it."""

    role: Role
    # The container's name (declared by this stack unless a guest).
    container: str
    # The name this environment's containers connect to: the alias on its own network, or the
    # shared container's name.
    host: str
    # The network alias the server carries on the networks it joins (none: reached by name).
    alias: str | None
    # The volume this stack declares for its data (None: a guest declares none).
    volume: str | None
    # Where the server meets app containers: this environment's network (own, guest) or every
    # served environment's (shared owner).
    networks: tuple[str, ...]
    # ``owner_labels`` of the container (``python -m ops audit`` reads them).
    labels: Mapping[str, str]
    # What it publishes on the host; a server with ports also joins the stack's published network.
    ports: tuple[HostPort, ...] = ()

    @property
    def declared(self) -> bool:
        """Whether this stack declares the server (its container and volume)."""
        return self.role != "shared-guest"

    @property
    def host_ports(self) -> list[int]:
        return [port.external for port in self.ports]


@dataclass(frozen=True)
class StackPlacement:
    """Every server, network, container and volume one stack declares on its own host."""

    db: ServerPlacement
    redis: ServerPlacement
    mqtt: ServerPlacement | None
    edge: ServerPlacement
    # The app containers' names by service (remote workers run on other hosts and are not listed).
    app_containers: Mapping[str, str]
    internal_network: str
    # The data network this environment's containers meet shared servers on, if any server is shared.
    data_network: str | None
    # The data networks this stack declares, by served environment (when it owns a shared server).
    declared_data_networks: Mapping[str, str]
    published_network: str | None
    # The edge network this environment's routed containers join.
    edge_network: str
    # The edge networks this stack declares, by served environment (when it owns the edge).
    declared_edge_networks: Mapping[str, str]

    @property
    def servers(self) -> dict[str, ServerPlacement]:
        found = {"db": self.db, "redis": self.redis, "edge": self.edge}
        if self.mqtt is not None:
            found["mqtt"] = self.mqtt
        return found

    @property
    def containers(self) -> list[str]:
        """The containers this stack declares on its host."""
        servers = [server.container for server in self.servers.values() if server.declared]
        return sorted([*self.app_containers.values(), *servers])

    @property
    def volumes(self) -> list[str]:
        """The volumes this stack declares."""
        return sorted(server.volume for server in self.servers.values() if server.volume is not None)

    @property
    def networks(self) -> list[str]:
        """The networks this stack declares."""
        declared = [
            self.internal_network,
            *self.declared_data_networks.values(),
            *self.declared_edge_networks.values(),
        ]
        if self.published_network is not None:
            declared.append(self.published_network)
        return sorted(declared)

    @property
    def app_networks(self) -> list[str]:
        """The networks this environment's app containers join (the isolation boundary)."""
        joined = [self.internal_network, self.edge_network]
        if self.data_network is not None:
            joined.append(self.data_network)
        return sorted(joined)

    @property
    def host_ports(self) -> list[int]:
        """Every port this stack publishes on the Docker host."""
        return sorted({port for server in self.servers.values() for port in server.host_ports})


def stack_placement(settings: EnvironmentConfig) -> StackPlacement:
    """The placement of every server and network of one stack."""
    project, environment = settings.project, settings.environment
    modes = [settings.database.mode, settings.redis.mode, *([settings.mqtt.mode] if settings.mqtt else [])]
    owns_shared = any(role(mode, environment) == "shared-owner" for mode in modes)
    data_network = settings.shared_network_name() if "shared" in modes else None
    declared_data = {served: settings.shared_network_name(served) for served in settings.served_environments}
    internal = settings.network_name("internal")

    def server(kind: ServerKind, mode: Mode, ports: list[HostPort], alias: str | None) -> ServerPlacement:
        placed = role(mode, environment)
        if placed == "own":
            networks: tuple[str, ...] = (internal,)
            container = settings.container_name(kind)
            volume: str | None = settings.volume_name(_VOLUMES[kind])
        else:
            assert data_network is not None
            networks = tuple(declared_data.values()) if placed == "shared-owner" else (data_network,)
            container = settings.shared_container_name(kind)
            volume = f"{project}-shared_{_VOLUMES[kind]}" if placed == "shared-owner" else None
        ports = ports if placed != "shared-guest" else []
        return ServerPlacement(
            role=placed,
            container=container,
            host=alias if placed == "own" and alias is not None else container,
            alias=alias,
            volume=volume,
            networks=networks,
            labels=owner_labels(project, environment, "data" if placed != "own" else None),
            ports=tuple(ports),
        )

    remote = settings.remote_access
    database_ports = []
    if settings.database.host_port is not None:
        database_ports.append(HostPort(5432, settings.database.host_port, "127.0.0.1"))
    if remote is not None:
        # Remote workers (production only): on the VPN address, never on every interface.
        database_ports.append(HostPort(5432, remote.database_port, str(remote.address)))
    redis_ports = [HostPort(6379, remote.redis_port, str(remote.address))] if remote is not None else []
    db = server("db", settings.database.mode, database_ports, alias="db")
    redis = server("redis", settings.redis.mode, redis_ports, alias="redis")
    mqtt = None
    if settings.mqtt is not None:
        # Devices connect from outside: published on every interface (004 §7: 8883 prod, 8884 dev).
        broker_ports = [HostPort(MQTT_TLS_PORT, settings.mqtt.public_port)]
        shared_broker = settings.mqtt.mode == "shared"
        mqtt = server("mqtt", settings.mqtt.mode, broker_ports, alias=None if shared_broker else "mqtt")
    edge_networks = {served: f"{project}-{served}-edge" for served in settings.edge.serves}
    edge = _edge_placement(settings, edge_networks)
    publishes = any(server.ports for server in (db, redis, mqtt) if server is not None)
    return StackPlacement(
        db=db,
        redis=redis,
        mqtt=mqtt,
        edge=edge,
        app_containers={service: settings.container_name(service) for service in settings.services},
        internal_network=internal,
        data_network=data_network,
        declared_data_networks=declared_data if owns_shared else {},
        published_network=settings.network_name("published") if publishes else None,
        edge_network=settings.network_name("edge"),
        declared_edge_networks=edge_networks if edge.declared else {},
    )


def _edge_placement(settings: EnvironmentConfig, edge_networks: Mapping[str, str]) -> ServerPlacement:
    """The Caddy edge: owned by the stack with ``edge.caddy: own``, which joins every served
    environment's edge network (``edge_networks``, by environment name)."""
    edge = settings.edge
    owner = edge.caddy == "own"
    return ServerPlacement(
        role="shared-owner" if owner else "shared-guest",
        container=f"{settings.project}-edge-caddy",
        host=f"{settings.project}-edge-caddy",
        alias=None,
        volume=f"{settings.project}-edge_caddy_data" if owner else None,
        networks=tuple(edge_networks.values()) if owner else (settings.network_name("edge"),),
        labels=owner_labels(settings.project, settings.environment, "edge"),
        ports=(HostPort(80, edge.http_port), HostPort(443, edge.https_port)) if owner else (),
    )
