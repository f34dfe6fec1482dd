"""The isolation guard: everything two environments must not share.

The seeds' worst failures are mixed data and cross-environment leakage (000 "Mixed Data", 004 §7
"Risk").  Both checks below work on a *fingerprint*: a plain JSON description of what an
environment occupies on the host.  The prod stack exports its fingerprint (secrets only as
SHA-256 hashes); the dev stack reads it through a StackReference and refuses to deploy when
``find_collisions`` returns anything.  Tests and ``check_pair`` compare two configurations directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from components.config import EnvironmentConfig, Mode
from components.placement import StackPlacement, stack_placement


class _Facts(BaseModel):
    # A fingerprint exported by a newer program may carry keys this one does not know yet.
    model_config = ConfigDict(extra="ignore", frozen=True)


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


def _redis_db_index(url: str) -> int | None:
    """The DB index of a redis:// URL (Redis' default 0 without one); None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    path = parts.path.strip("/")
    return int(path) if path.isdigit() else 0


def bindings(settings: EnvironmentConfig, placement: StackPlacement) -> list[Binding]:
    """Which table prefixes and Redis DB indexes each app container and remote worker really gets.

    Normally the environment's own; a variable override (``services.<name>.environment``,
    ``remote_workers[].environment``, e.g. 000's hand-written ``TABLE_PREFIX=opt_``) can point one
    at the other environment's data, which ``find_collisions`` then reports.
    """
    passed = settings.application.passed
    prefix_variables = [name for name, source in passed.items() if source == "database.table_prefix"]
    redis_variables = [name for name, source in passed.items() if source == "redis.url"]

    def binding(container: str, overrides: dict[str, str]) -> Binding:
        prefixes = {overrides.get(name, settings.database.table_prefix) for name in prefix_variables}
        indexes = {settings.redis.db_index for name in redis_variables if name not in overrides}
        indexes |= {index for value in overrides.values() if (index := _redis_db_index(value)) is not None}
        return Binding(container=container, table_prefixes=sorted(prefixes), redis_db_indexes=sorted(indexes))

    found = [
        binding(placement.app_containers[name], service.environment)
        for name, service in settings.services.items()
    ]
    for worker in settings.remote_workers:
        overrides = {**settings.services[worker.service].environment, **worker.environment}
        found.append(binding(f"{worker.docker_host} {worker.name}", overrides))
    return found


class DatabaseFacts(_Facts):
    mode: Mode
    name: str
    table_prefix: str
    user: str


class RedisFacts(_Facts):
    mode: Mode
    db_index: int


class MqttFacts(_Facts):
    mode: Mode
    topic_prefix: str
    username: str


class OAuthFacts(_Facts):
    # A stack output drops null values: a peer's fingerprint may lack the client id.
    client_id: str | None = None
    redirect_uri: str


class Binding(_Facts):
    """The table prefixes and Redis DB indexes one app container or remote worker really gets."""

    container: str
    table_prefixes: list[str]
    redis_db_indexes: list[int]


class Fingerprint(_Facts):
    """What an environment occupies on the host: names, data locations, routes, credentials (hashed).

    ``containers``, ``volumes`` and ``networks`` are exactly what the stack declares on its own host
    (its placement); ``app_networks`` are the networks its app containers join.
    """

    project: str
    environment: str
    name: str
    containers: list[str]
    volumes: list[str]
    networks: list[str]
    # Fingerprints exported before app_networks and bindings existed have none.
    app_networks: list[str] = Field(default_factory=list)
    database: DatabaseFacts
    redis: RedisFacts
    mqtt: MqttFacts | None = None
    vault_path: str
    # Backups rotate by database name: another environment's dumps in the same directory would be
    # pruned, or restored, as this one's.
    backup_dir: str | None = None
    domains: list[str]
    oauth: OAuthFacts
    host_ports: list[int]
    remote_workers: list[str]
    bindings: list[Binding] = Field(default_factory=list)
    secret_hashes: dict[str, str] = Field(default_factory=dict)


def fingerprint(
    settings: EnvironmentConfig, placement: StackPlacement, secret_hashes: dict[str, str] | None = None
) -> Fingerprint:
    """The fingerprint of one stack, read off its placement and configuration."""
    return Fingerprint(
        project=settings.project,
        environment=settings.environment,
        name=settings.name,
        containers=placement.containers,
        volumes=placement.volumes,
        networks=placement.networks,
        app_networks=placement.app_networks,
        database=DatabaseFacts(
            mode=settings.database.mode,
            name=settings.database.name,
            table_prefix=settings.database.table_prefix,
            user=settings.database.user,
        ),
        redis=RedisFacts(mode=settings.redis.mode, db_index=settings.redis.db_index),
        mqtt=MqttFacts(
            mode=settings.mqtt.mode, topic_prefix=settings.mqtt.topic_prefix, username=settings.mqtt.username
        )
        if settings.mqtt is not None
        else None,
        vault_path=settings.vault.host_path,
        backup_dir=settings.release.backup_dir if settings.release.backup else None,
        domains=sorted(
            {settings.domain.root, settings.domain.web_domain, *filter(None, [settings.domain.vault])}
        ),
        oauth=OAuthFacts(
            client_id=settings.oauth.github_client_id, redirect_uri=settings.github_redirect_uri
        ),
        host_ports=placement.host_ports,
        remote_workers=sorted(worker.docker_host for worker in settings.remote_workers),
        bindings=bindings(settings, placement),
        secret_hashes=dict(sorted((secret_hashes or {}).items())),
    )


def _inside(path: str, other: str) -> bool:
    return path == other or path.startswith(other.rstrip("/") + "/")


# --- The collision rules: each takes both fingerprints and returns what they would share. ---------

Rule = Callable[[Fingerprint, Fingerprint], list[Collision]]


def same_declared_names(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """A container, volume or network both stacks declare: the second `up` would take the first's."""
    found = []
    for kind, names in (
        ("container name", (mine.containers, theirs.containers)),
        ("volume name", (mine.volumes, theirs.volumes)),
        ("network name", (mine.networks, theirs.networks)),
    ):
        found += [
            Collision(kind, f"both environments use {name!r}")
            for name in sorted(set(names[0]) & set(names[1]))
        ]
    return found


def shared_app_networks(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """A network both environments' app containers join: they could reach each other."""
    return [
        Collision("shared network", f"app containers of both environments join {name!r}")
        for name in sorted(set(mine.app_networks) & set(theirs.app_networks))
    ]


def _shared_database(mine: Fingerprint, theirs: Fingerprint) -> bool:
    return (
        mine.database.mode == theirs.database.mode == "shared" and mine.database.name == theirs.database.name
    )


def same_tables(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """One shared database, one table prefix: both environments write the same tables."""
    if not _shared_database(mine, theirs) or mine.database.table_prefix != theirs.database.table_prefix:
        return []
    return [
        Collision(
            "database",
            f"shared server, same database {mine.database.name!r} with the same table prefix "
            f"{mine.database.table_prefix!r}: give each environment its own database or prefix",
        )
    ]


def nested_table_prefixes(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """One prefix starts with the other ("" and "dev_", "dev_" and "dev_v2_"): every pattern for the
    shorter one (``\\dt dev_*``, ``pg_dump -t``, the sampler's prefix mapping) takes the other's tables too."""
    shorter, longer = sorted([mine.database.table_prefix, theirs.database.table_prefix], key=len)
    if not _shared_database(mine, theirs) or shorter == longer or not longer.startswith(shorter):
        return []
    return [
        Collision(
            "table prefix",
            f"{longer!r} starts with {shorter!r} in the shared database "
            f"{mine.database.name!r}: give each environment a prefix the other does not start with",
        )
    ]


def _shared_redis(mine: Fingerprint, theirs: Fingerprint) -> bool:
    return mine.redis.mode == theirs.redis.mode == "shared"


def same_redis_index(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    if not _shared_redis(mine, theirs) or mine.redis.db_index != theirs.redis.db_index:
        return []
    return [Collision("redis", f"shared Redis, same DB index {mine.redis.db_index}: queues would mix")]


def same_mqtt_account(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    if mine.mqtt is None or theirs.mqtt is None or not mine.mqtt.mode == theirs.mqtt.mode == "shared":
        return []
    found = []
    if mine.mqtt.topic_prefix == theirs.mqtt.topic_prefix:
        found.append(Collision("mqtt topic prefix", f"shared broker, same prefix {mine.mqtt.topic_prefix!r}"))
    if mine.mqtt.username == theirs.mqtt.username:
        found.append(Collision("mqtt user", f"shared broker, same user {mine.mqtt.username!r}"))
    return found


def overlapping_paths(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Vaults and backup directories on the host: nested paths are shared data."""
    found = []
    if _inside(mine.vault_path, theirs.vault_path) or _inside(theirs.vault_path, mine.vault_path):
        found.append(
            Collision("vault path", f"{mine.vault_path!r} and {theirs.vault_path!r} overlap on the host")
        )
    for backup_dir, kind, path in (
        (mine.backup_dir, "backup directory", theirs.backup_dir),
        (mine.backup_dir, "vault path", theirs.vault_path),
        (theirs.backup_dir, "vault path", mine.vault_path),
    ):
        if backup_dir and path and (_inside(backup_dir, path) or _inside(path, backup_dir)):
            found.append(
                Collision("backup directory", f"backups in {backup_dir!r} overlap the {kind} {path!r}")
            )
    return found


def same_routes(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Domains and OAuth: a request, a crawler or a sign-in could land in the other environment."""
    found = [
        Collision("domain", f"both environments answer for {domain!r}")
        for domain in sorted(set(mine.domains) & set(theirs.domains))
    ]
    if mine.oauth.client_id and mine.oauth.client_id == theirs.oauth.client_id:
        found.append(
            Collision("oauth client id", f"both environments use OAuth app {mine.oauth.client_id!r}")
        )
    if mine.oauth.redirect_uri == theirs.oauth.redirect_uri:
        found.append(Collision("oauth callback", f"both environments use {mine.oauth.redirect_uri!r}"))
    return found


def same_secrets(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    return [
        Collision("secret", f"both environments use the same {key}")
        for key in sorted(set(mine.secret_hashes) & set(theirs.secret_hashes))
        if mine.secret_hashes[key] == theirs.secret_hashes[key]
    ]


def same_host_resources(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Host ports and remote worker hosts."""
    found = [
        Collision("host port", f"both environments publish host port {port}")
        for port in sorted(set(mine.host_ports) & set(theirs.host_ports))
    ]
    found += [
        Collision("remote worker", f"both environments send workers to {host}")
        for host in sorted(set(mine.remote_workers) & set(theirs.remote_workers))
    ]
    return found


def bound_to_the_other(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """A container or remote worker whose variables point at the other environment's data."""
    found = []
    for one, other in ((mine, theirs), (theirs, mine)):
        for bound in one.bindings:
            if _shared_redis(mine, theirs) and other.redis.db_index in bound.redis_db_indexes:
                found.append(
                    Collision(
                        "bound to the other environment",
                        f"{one.name}'s {bound.container} uses Redis DB {other.redis.db_index}, which is {other.name}'s",
                    )
                )
            if _shared_database(mine, theirs) and other.database.table_prefix in bound.table_prefixes:
                found.append(
                    Collision(
                        "bound to the other environment",
                        f"{one.name}'s {bound.container} uses table prefix "
                        f"{other.database.table_prefix!r}, which is {other.name}'s",
                    )
                )
    return found


def wrong_environments(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Two stacks of one environment, or a development stack with remote workers."""
    found = [
        Collision(
            "remote worker",
            f"development ({one.name}) declares remote workers on {', '.join(one.remote_workers)}: "
            "remote workers join production only",
        )
        for one in (mine, theirs)
        if one.environment == "development" and one.remote_workers
    ]
    if mine.environment == theirs.environment:
        found.append(Collision("environment", f"both stacks are {mine.environment}"))
    return found


COLLISION_RULES: tuple[Rule, ...] = (
    same_declared_names,
    shared_app_networks,
    same_tables,
    nested_table_prefixes,
    same_redis_index,
    same_mqtt_account,
    overlapping_paths,
    same_routes,
    same_secrets,
    same_host_resources,
    bound_to_the_other,
    wrong_environments,
)


def find_collisions(mine: Fingerprint, theirs: Fingerprint) -> list[Collision]:
    """Every resource, data location, route or credential the two environments would share."""
    return sorted(collision for rule in COLLISION_RULES for collision in rule(mine, theirs))


def check_pair(first: EnvironmentConfig, second: EnvironmentConfig) -> list[Collision]:
    """Collisions between two configurations, without secrets (the stacks compare those)."""
    return find_collisions(
        fingerprint(first, stack_placement(first)), fingerprint(second, stack_placement(second))
    )


def collision_report(collisions: list[Collision], mine: str, theirs: str) -> str:
    lines = [f"stack {mine!r} collides with stack {theirs!r} in {len(collisions)} place(s):"]
    lines += [f"  - {collision}" for collision in collisions]
    lines.append(
        "Change this stack's configuration so that nothing above is shared, then run `pulumi up` again."
    )
    return "\n".join(lines)
