"""The isolation guard: everything two environments must not share.

The seeds' worst failures are mixed data and cross-environment leakage (000 "Mixed Data", 004 §7
"Risk").  Both checks below work on a *fingerprint*: a plain JSON description of what an
environment occupies on the host.  The prod stack exports its fingerprint (secrets only as
SHA-256 hashes); the dev stack reads it through a StackReference and refuses to deploy when
``find_collisions`` returns anything.  Tests and ``check_pair`` compare two configurations directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from components.config import EnvironmentConfig

Fingerprint = dict[str, Any]


@dataclass(frozen=True, order=True)
class Collision:
    """One thing two environments would share."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def secret_hash(value: str) -> str:
    """What a fingerprint keeps of a secret: enough to compare, nothing to reuse."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def infrastructure_services(settings: EnvironmentConfig) -> list[str]:
    """Containers the environment runs besides its app services."""
    services = ["redis"] if settings.redis.mode == "dedicated" else []
    if settings.database.mode == "dedicated":
        services.append("db")
    if settings.mqtt is not None and settings.mqtt.mode == "dedicated":
        services.append("mqtt")
    return services


def host_ports(settings: EnvironmentConfig) -> list[int]:
    """Ports this environment publishes on the Docker host."""
    # In shared mode only production runs (and publishes) the broker.
    mqtt = settings.mqtt
    publishes_mqtt = mqtt is not None and (mqtt.mode == "dedicated" or settings.environment == "production")
    ports = [mqtt.public_port] if mqtt is not None and publishes_mqtt else []
    database = settings.database
    if database.host_port is not None and (database.mode == "dedicated" or settings.environment == "production"):
        ports.append(database.host_port)
    if settings.edge.caddy == "own":
        ports += [settings.edge.http_port, settings.edge.https_port]
    if settings.remote_access is not None:
        ports += [settings.remote_access.redis_port, settings.remote_access.database_port]
    return sorted(set(ports))


def publishes_server_ports(settings: EnvironmentConfig) -> bool:
    """Whether this stack runs a database, broker or Redis that publishes a port on the host."""
    edge_ports = {settings.edge.http_port, settings.edge.https_port} if settings.edge.caddy == "own" else set()
    return bool(set(host_ports(settings)) - edge_ports)


def _redis_db_index(url: str) -> int | None:
    """The DB index of a redis:// URL (Redis' default 0 without one); None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    path = parts.path.strip("/")
    return int(path) if path.isdigit() else 0


def bindings(settings: EnvironmentConfig) -> list[dict[str, Any]]:
    """Which table prefixes and Redis DB indexes each app container and remote worker really gets.

    Normally the environment's own; a variable override (``services.<name>.environment``,
    ``remote_workers[].environment``, e.g. 000's hand-written ``TABLE_PREFIX=opt_``) can point one
    at the other environment's data, which ``find_collisions`` then reports.
    """
    passed = settings.application.passed
    prefix_variables = [name for name, source in passed.items() if source == "database.table_prefix"]
    redis_variables = [name for name, source in passed.items() if source == "redis.url"]

    def binding(container: str, overrides: dict[str, str]) -> dict[str, Any]:
        prefixes = {overrides.get(name, settings.database.table_prefix) for name in prefix_variables}
        indexes = {settings.redis.db_index for name in redis_variables if name not in overrides}
        indexes |= {index for value in overrides.values() if (index := _redis_db_index(value)) is not None}
        return {"container": container, "table_prefixes": sorted(prefixes), "redis_db_indexes": sorted(indexes)}

    found = [
        binding(settings.container_name(name), service.environment) for name, service in settings.services.items()
    ]
    for worker in settings.remote_workers:
        overrides = {**settings.services[worker.service].environment, **worker.environment}
        found.append(binding(f"{worker.docker_host} {worker.name}", overrides))
    return found


def fingerprint(settings: EnvironmentConfig, secret_hashes: dict[str, str] | None = None) -> Fingerprint:
    """What an environment occupies: names, data locations, routes, credentials (hashed)."""
    containers = [
        settings.container_name(name) for name in [*settings.services, *infrastructure_services(settings)]
    ]
    volumes = [settings.volume_name(volume) for volume in ("redis_data", "pg_data", "mqtt_data")]
    return {
        "project": settings.project,
        "environment": settings.environment,
        "name": settings.name,
        "containers": sorted(containers),
        "volumes": sorted(volumes),
        "networks": sorted(
            settings.network_name(role)
            for role in ("internal", "edge", *(["published"] if publishes_server_ports(settings) else []))
        ),
        "database": {
            "mode": settings.database.mode,
            "name": settings.database.name,
            "table_prefix": settings.database.table_prefix,
            "user": settings.database.user,
        },
        "redis": {"mode": settings.redis.mode, "db_index": settings.redis.db_index},
        "mqtt": {
            "mode": settings.mqtt.mode,
            "topic_prefix": settings.mqtt.topic_prefix,
            "username": settings.mqtt.username,
        }
        if settings.mqtt is not None
        else None,
        "vault_path": settings.vault.host_path,
        # Backups rotate by database name: another environment's dumps in the same directory would be
        # pruned, or restored, as this one's.
        "backup_dir": settings.release.backup_dir if settings.release.backup else None,
        "domains": sorted(
            {settings.domain.root, settings.domain.web_domain, *filter(None, [settings.domain.vault])}
        ),
        "oauth": {"client_id": settings.oauth.github_client_id, "redirect_uri": settings.github_redirect_uri},
        "host_ports": host_ports(settings),
        "remote_workers": sorted(worker.docker_host for worker in settings.remote_workers),
        "bindings": bindings(settings),
        "secret_hashes": dict(sorted((secret_hashes or {}).items())),
    }


def _inside(path: str, other: str) -> bool:
    return path == other or path.startswith(other.rstrip("/") + "/")


def find_collisions(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Every resource, data location, route or credential the two environments would share."""
    found: list[Collision] = []

    def same_names(key: str, kind: str) -> None:
        for name in sorted(set(mine[key]) & set(theirs[key])):
            found.append(Collision(kind, f"both environments use {name!r}"))

    same_names("containers", "container name")
    same_names("volumes", "volume name")
    same_names("networks", "network name")

    shared_database = mine["database"]["mode"] == "shared" and theirs["database"]["mode"] == "shared"
    same_tables = (mine["database"]["name"], mine["database"]["table_prefix"]) == (
        theirs["database"]["name"],
        theirs["database"]["table_prefix"],
    )
    if shared_database and same_tables:
        prefix = mine["database"]["table_prefix"]
        found.append(
            Collision(
                "database",
                f"shared server, same database {mine['database']['name']!r} with the same table prefix "
                f"{prefix!r}: give each environment its own database or prefix",
            )
        )
    same_database = shared_database and mine["database"]["name"] == theirs["database"]["name"]
    prefixes = sorted([mine["database"]["table_prefix"], theirs["database"]["table_prefix"]], key=len)
    if same_database and prefixes[0] != prefixes[1] and prefixes[1].startswith(prefixes[0]):
        # "" and "dev_", or "dev_" and "dev_v2_": every pattern for the shorter one (\dt dev_*,
        # pg_dump -t, the sampler's prefix mapping) takes the other environment's tables too.
        found.append(
            Collision(
                "table prefix",
                f"{prefixes[1]!r} starts with {prefixes[0]!r} in the shared database "
                f"{mine['database']['name']!r}: give each environment a prefix the other does not start with",
            )
        )
    shared_redis = mine["redis"]["mode"] == "shared" and theirs["redis"]["mode"] == "shared"
    if shared_redis and mine["redis"]["db_index"] == theirs["redis"]["db_index"]:
        found.append(
            Collision("redis", f"shared Redis, same DB index {mine['redis']['db_index']}: queues would mix")
        )
    # A stack output drops null values: a fingerprint read from the peer may lack "mqtt" or a client id.
    if mine.get("mqtt") and theirs.get("mqtt") and mine["mqtt"]["mode"] == theirs["mqtt"]["mode"] == "shared":
        if mine["mqtt"]["topic_prefix"] == theirs["mqtt"]["topic_prefix"]:
            found.append(
                Collision("mqtt topic prefix", f"shared broker, same prefix {mine['mqtt']['topic_prefix']!r}")
            )
        if mine["mqtt"]["username"] == theirs["mqtt"]["username"]:
            found.append(Collision("mqtt user", f"shared broker, same user {mine['mqtt']['username']!r}"))
    if _inside(mine["vault_path"], theirs["vault_path"]) or _inside(theirs["vault_path"], mine["vault_path"]):
        found.append(
            Collision(
                "vault path", f"{mine['vault_path']!r} and {theirs['vault_path']!r} overlap on the host"
            )
        )
    mine_backups, their_backups = mine.get("backup_dir"), theirs.get("backup_dir")
    overlapping = [
        (mine_backups, "backup directory", their_backups),
        (mine_backups, "vault path", theirs["vault_path"]),
        (their_backups, "vault path", mine["vault_path"]),
    ]
    for backup_dir, kind, path in overlapping:
        if backup_dir and path and (_inside(backup_dir, path) or _inside(path, backup_dir)):
            found.append(Collision("backup directory", f"backups in {backup_dir!r} overlap the {kind} {path!r}"))
    for domain in sorted(set(mine["domains"]) & set(theirs["domains"])):
        found.append(Collision("domain", f"both environments answer for {domain!r}"))
    if mine["oauth"].get("client_id") and mine["oauth"].get("client_id") == theirs["oauth"].get("client_id"):
        found.append(
            Collision("oauth client id", f"both environments use OAuth app {mine['oauth']['client_id']!r}")
        )
    if mine["oauth"]["redirect_uri"] == theirs["oauth"]["redirect_uri"]:
        found.append(Collision("oauth callback", f"both environments use {mine['oauth']['redirect_uri']!r}"))
    for key in sorted(set(mine["secret_hashes"]) & set(theirs["secret_hashes"])):
        if mine["secret_hashes"][key] == theirs["secret_hashes"][key]:
            found.append(Collision("secret", f"both environments use the same {key}"))
    for port in sorted(set(mine["host_ports"]) & set(theirs["host_ports"])):
        found.append(Collision("host port", f"both environments publish host port {port}"))
    for host in sorted(set(mine["remote_workers"]) & set(theirs["remote_workers"])):
        found.append(Collision("remote worker", f"both environments send workers to {host}"))
    for one, other in ((mine, theirs), (theirs, mine)):
        # Fingerprints exported before bindings existed have none.
        for bound in one.get("bindings", []):
            if shared_redis and other["redis"]["db_index"] in bound["redis_db_indexes"]:
                found.append(
                    Collision(
                        "bound to the other environment",
                        f"{one['name']}'s {bound['container']} uses Redis DB {other['redis']['db_index']}, "
                        f"which is {other['name']}'s",
                    )
                )
            if same_database and other["database"]["table_prefix"] in bound["table_prefixes"]:
                found.append(
                    Collision(
                        "bound to the other environment",
                        f"{one['name']}'s {bound['container']} uses table prefix "
                        f"{other['database']['table_prefix']!r}, which is {other['name']}'s",
                    )
                )
        if one["environment"] == "development" and one["remote_workers"]:
            found.append(
                Collision(
                    "remote worker",
                    f"development ({one['name']}) declares remote workers on {', '.join(one['remote_workers'])}: "
                    "remote workers join production only",
                )
            )
    if mine["environment"] == theirs["environment"]:
        found.append(Collision("environment", f"both stacks are {mine['environment']}"))
    return sorted(found)


def check_pair(first: EnvironmentConfig, second: EnvironmentConfig) -> list[Collision]:
    """Collisions between two configurations, without secrets (the stacks compare those)."""
    return find_collisions(fingerprint(first), fingerprint(second))


def collision_report(collisions: list[Collision], mine: str, theirs: str) -> str:
    lines = [f"stack {mine!r} collides with stack {theirs!r} in {len(collisions)} place(s):"]
    lines += [f"  - {collision}" for collision in collisions]
    lines.append(
        "Change this stack's configuration so that nothing above is shared, then run `pulumi up` again."
    )
    return "\n".join(lines)
