"""The model of one environment (one Pulumi stack): its settings, their validation and derived names.

Every setting lives under the project's config namespace (``<project>:<concern>``, e.g.
``makapix:database``); structured settings are objects in the stack file.  The model holds no application's values: a default here
is neutral (a port, a limit, a policy); what names an application — its project, database user,
paths, images — comes from its profile (components/profiles.py), and a stack file overrides that
(components/parsing.py: ``parse_environment``).

Secrets are never part of this model: they are ``secure:`` stack values read as Pulumi secrets
(``SECRET_KEYS``) or generated per stack by the components (pulumi-random).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    field_validator,
    model_validator,
)

from components.known_hosts import HostKey, how_to_get, parse_known_hosts_line
from ops.monitoring import (
    DEFAULT_CONNECTIONS_ALERT_RATIO,
    DEFAULT_CONTAINER_LIMIT_ALERT_RATIO,
    DEFAULT_DISK_ALERT_RATIO,
    DEFAULT_LATENCY_P99_SECONDS,
)

Environment = Literal["production", "development"]
# A server of this stack's own, or one server for both environments (run by production).
Mode = Literal["dedicated", "shared"]
# Who runs a server, from one stack's point of view (components/placement.py).
Role = Literal["own", "shared-owner", "shared-guest"]


def role(mode: Mode, environment: Environment) -> Role:
    """The one rule: in shared mode production runs the server and development is its guest."""
    if mode != "shared":
        return "own"
    return "shared-owner" if environment == "production" else "shared-guest"


# Secret config keys (``pulumi config set --secret <project>:<key>``); each optional unless noted.
SECRET_KEYS = {
    "jwt_secret": "JWT signing key; generated per stack when not given",
    "database_password": "password of the application's PostgreSQL role; generated when not given",
    "github_oauth_client_secret": "the GitHub OAuth app's client secret (required once OAuth is used)",
    "resend_api_key": "API key of the email service",
    "admin_password": "password of the application's admin user; generated when not given",
    "host_ssh_private_key": "SSH key for host commands when host.ssh_host is set (sampling run, backups)",
}
# Secrets of the deployment, not of the application: never passed to containers nor fingerprinted
# (both stacks may well deploy to the same host with the same key).
DEPLOY_SECRET_KEYS = frozenset({"host_ssh_private_key"})

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_MEMORY = re.compile(r"^(\d+)([KMG])$")
# [registry[:port]/]path[:tag][@sha256:digest]; a registry's port is not a tag.
_IMAGE = re.compile(
    r"^(?:[a-z0-9.-]+:\d{1,5}/)?[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_POSTGRES_MAJOR = re.compile(
    r"^(?:[a-z0-9._-]+/)*postgres:(\d+)(?:[.-][A-Za-z0-9_.-]*)?(?:@sha256:[0-9a-f]{64})?$"
)
_SSH_HOST = re.compile(r"^ssh://([a-z0-9._-]+@)?[A-Za-z0-9.-]+(:\d{1,5})?$")


def _domain(value: str) -> str:
    if not _DOMAIN.match(value):
        raise ValueError(f"{value!r} is not a DNS name; a valid value looks like 'development.makapix.club'")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{value!r} is not a plain lower-case SQL identifier; a valid value looks like 'makapix_dev'"
        )
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value) or (":" not in value.split("/")[-1] and "@" not in value):
        raise ValueError(
            f"{value!r} is not a pinned image reference; give a tag or a digest, "
            "e.g. 'postgres:17.2' or 'ghcr.io/makapix/api@sha256:<64 hex digits>'"
        )
    if value.split("@")[0].endswith(":latest"):
        raise ValueError(f"{value!r} uses the moving tag 'latest'; pin a version or a digest")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/") or "/../" in value + "/" or "\0" in value:
        raise ValueError(f"{value!r} is not an absolute path on the host; e.g. '/mnt/vault-dev'")
    return value.rstrip("/") or "/"


def _memory(value: str) -> str:
    match = _MEMORY.match(value)
    if not match or int(match.group(1)) == 0:
        raise ValueError(
            f"{value!r} is not a memory size; give a positive whole number with K, M or G, e.g. '512M'"
        )
    return value


def _service_image(value: str) -> str:
    """A service's image: pinned like any image, or (production only) a bare repository to promote from."""
    if _IMAGE.match(value) and ":" not in value.split("/")[-1] and "@" not in value:
        return value  # parse_environment refuses it outside a production stack that promotes
    return _image(value)


def is_bare_repository(image: str) -> bool:
    return ":" not in image.split("/")[-1] and "@" not in image


DomainName = Annotated[str, AfterValidator(_domain)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Image = Annotated[str, AfterValidator(_image)]
ServiceImage = Annotated[str, AfterValidator(_service_image)]
HostPath = Annotated[str, AfterValidator(_absolute_path)]
Memory = Annotated[str, AfterValidator(_memory)]
Port = Annotated[int, Field(ge=1, le=65535)]


def postgres_major(image: str) -> int | None:
    """The major version in a ``postgres:<major>[.minor][-variant]`` image reference, if it has one."""
    match = _POSTGRES_MAJOR.match(image)
    return int(match.group(1)) if match else None


def memory_bytes(size: str) -> int:
    """Bytes of a memory size such as '512M' (binary units, as Docker reads them)."""
    match = _MEMORY.match(size)
    assert match, size
    return int(match.group(1)) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Resources(Settings):
    """Docker resource limits of one container (004 §11)."""

    cpus: float = Field(gt=0, le=256, examples=[1.0])
    memory: Memory = Field(examples=["512M"])
    memory_reservation: Memory | None = Field(default=None, examples=["256M"])

    @model_validator(mode="after")
    def _reservation_within_limit(self) -> Resources:
        if self.memory_reservation and memory_bytes(self.memory_reservation) > memory_bytes(self.memory):
            raise ValueError(
                f"memory_reservation {self.memory_reservation} is above the memory limit {self.memory}"
            )
        return self


class DomainSettings(Settings):
    """Public names of the environment (004 §9 ROOT_DOMAIN, WEB_DOMAIN, BASE_URL, VAULT_DOMAIN)."""

    root: DomainName = Field(examples=["makapix.club"])
    web: DomainName | None = Field(default=None, examples=["development.makapix.club"])
    vault: DomainName | None = Field(default=None, examples=["vault-dev.makapix.club"])

    @property
    def web_domain(self) -> str:
        return self.web or self.root

    @property
    def base_url(self) -> str:
        return f"https://{self.web_domain}"


class DatabaseSettings(Settings):
    """PostgreSQL of the environment (004 §3, §11; 000)."""

    # dedicated: a server container per environment (004 §3). shared: one server for both
    # environments, owned by the production stack, a database (or table prefix) each (004 §3 alt., 000).
    mode: Mode = "dedicated"
    name: Identifier = Field(examples=["makapix_dev"])
    table_prefix: str = Field(default="", pattern=r"^([a-z][a-z0-9_]*_)?$", examples=["dev_"])
    user: Identifier = Field(examples=["makapix"])
    # Shared mode: the stack that runs the shared server; its `shared_database_password` output is used.
    server_stack: str = Field(default="prod", examples=["organization/clippyfront/prod"])
    # Published on the host's loopback only, for the sampler and backups (never on 0.0.0.0).
    host_port: Port | None = Field(default=None, examples=[55433])
    tuning: dict[str, str] = Field(default_factory=dict, examples=[{"shared_buffers": "128MB"}])

    @field_validator("tuning")
    @classmethod
    def _tuning_names(cls, value: dict[str, str]) -> dict[str, str]:
        for flag, setting in value.items():
            if not re.match(r"^[a-z_][a-z0-9_.]*$", flag) or not setting or "\n" in setting:
                raise ValueError(f"{flag}={setting!r} is not a PostgreSQL setting; e.g. work_mem: 4MB")
        return value


class RedisSettings(Settings):
    """Redis: broker, results and cache (000: a DB index per environment on a shared server)."""

    mode: Mode = "dedicated"
    db_index: int = Field(default=0, ge=0, le=15, examples=[0])


class MqttGuest(Settings):
    """Another environment's account on the shared broker this (production) stack runs."""

    username: str = Field(pattern=r"^[A-Za-z0-9_-]+$", examples=["makapix-dev-api"])
    topic_prefix: str = Field(pattern=r"^[A-Za-z0-9_-]+$", examples=["makapix-dev"])


class MqttSettings(Settings):
    """MQTT broker (004 §7): a broker per environment, or one shared broker with topic prefixes."""

    mode: Mode = "dedicated"
    public_port: Port = Field(examples=[8884])
    topic_prefix: str = Field(pattern=r"^[A-Za-z0-9_-]+$", examples=["makapix-dev"])
    username: str = Field(pattern=r"^[A-Za-z0-9_-]+$", examples=["makapix-dev-api"])
    # DNS name devices connect to; in the broker's server certificate. Default: domain.root.
    public_host: DomainName | None = Field(default=None, examples=["mqtt-dev.makapix.club"])
    # Lifetimes of the environment's CA and of the certificates it signs (pulumi-tls). A certificate
    # within `renew_days` of its end is replaced on the next `pulumi up` (docs/mqtt.md: rotation).
    ca_validity_days: int = Field(default=3650, ge=30, le=36500, examples=[3650])
    certificate_validity_days: int = Field(default=397, ge=2, le=3650, examples=[397])
    renew_days: int = Field(default=30, ge=1, examples=[30])
    # Shared mode, development: the stack running the shared broker (its `shared_mqtt_passwords` output).
    broker_stack: str = Field(default="prod", examples=["organization/makapix/prod"])
    # Shared mode, production: the other environments' accounts, by environment name.
    guests: dict[str, MqttGuest] = Field(
        default_factory=dict,
        examples=[{"dev": {"username": "makapix-dev-api", "topic_prefix": "makapix-dev"}}],
    )

    @model_validator(mode="after")
    def _distinct_accounts(self) -> MqttSettings:
        if self.certificate_validity_days > self.ca_validity_days:
            raise ValueError(
                f"certificate_validity_days {self.certificate_validity_days} outlives the CA "
                f"(ca_validity_days {self.ca_validity_days}); a certificate cannot outlive its CA"
            )
        if self.renew_days >= self.certificate_validity_days:
            raise ValueError(
                f"renew_days {self.renew_days} is not below certificate_validity_days "
                f"{self.certificate_validity_days}: every run would replace the certificates"
            )
        for name, guest in self.guests.items():
            for attribute in ("username", "topic_prefix"):
                if getattr(guest, attribute) == getattr(self, attribute):
                    raise ValueError(
                        f"guests.{name}.{attribute} {getattr(guest, attribute)!r} is this environment's own "
                        f"{attribute}; each environment on the shared broker needs its own"
                    )
        for attribute in ("username", "topic_prefix"):
            values = [getattr(guest, attribute) for guest in self.guests.values()]
            if len(set(values)) != len(values):
                raise ValueError(f"guests share a {attribute} ({values}); each needs its own")
        return self


class VaultSettings(Settings):
    """The file vault on the host (004 §5, §9 VAULT_HOST_PATH)."""

    host_path: HostPath = Field(examples=["/mnt/vault-dev"])
    container_path: HostPath = "/vault"


class OAuthSettings(Settings):
    """The environment's own GitHub OAuth app (004 §8); its secret is ``<project>:github_oauth_client_secret``."""

    github_client_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]{4,64}$", examples=["Ov23xxDEV"]
    )
    # Derived from the web domain when not given; a given one must match it.
    redirect_uri: str | None = Field(
        default=None, examples=["https://development.makapix.club/api/auth/github/callback"]
    )


class EmailSettings(Settings):
    """Outgoing email (004 §9 RESEND_FROM_EMAIL)."""

    from_address: str = Field(pattern=_EMAIL.pattern, examples=["noreply@dev-notification.makapix.club"])


class ServiceSettings(Settings):
    """One application container: the api, the web front end or a Celery worker."""

    # Production may name only the repository (no tag, no digest): it runs the digest promoted from it.
    image: ServiceImage = Field(examples=["ghcr.io/makapix/api:1.4.2"])
    command: list[str] | None = Field(default=None, examples=[["gunicorn", "app:app"]])
    # Port the service listens on inside its container; None for workers.
    port: Port | None = Field(default=None, examples=[8000])
    # Path prefix Caddy routes to the service ("/" = everything else); None = not routed.
    route: str | None = Field(default=None, pattern=r"^/([a-z0-9_-]+)?$", examples=["/api"])
    healthcheck: list[str] | None = Field(default=None, examples=[["CMD", "true"]])
    resources: Resources
    # Celery workers only: queues and concurrency (000 "Celery Workers").
    queues: list[str] = Field(default_factory=list, examples=[["celery", "cpu", "gpu"]])
    concurrency: int | None = Field(default=None, ge=1, le=512, examples=[2])
    environment: dict[str, str] = Field(default_factory=dict, examples=[{"LOG_LEVEL": "info"}])

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name; e.g. LOG_LEVEL")
        return value


class RemoteWorker(Settings):
    """A Celery worker on another host, reached by a Docker provider over ssh (000 remote GPU workers)."""

    name: str = Field(pattern=_NAME.pattern, examples=["gpu1"])
    docker_host: str = Field(pattern=_SSH_HOST.pattern, examples=["ssh://deploy@10.8.0.5"])
    # The worker host's SSH host key, one known_hosts line (ssh-keyscan prints it): required.
    known_hosts: str | None = Field(
        default=None,
        examples=[
            "10.8.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"
        ],
    )
    queues: list[str] = Field(default_factory=lambda: ["gpu"], examples=[["gpu"]])
    concurrency: int = Field(default=1, ge=1, le=512)
    gpus: str | None = Field(default=None, examples=["all"])
    # The local service it runs remotely: image, command and environment come from it.
    service: str = Field(default="worker", examples=["worker"])
    resources: Resources | None = None
    # Extra or overriding variables; one that points at the other environment is an isolation error.
    environment: dict[str, str] = Field(default_factory=dict, examples=[{"LOG_LEVEL": "info"}])

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return ServiceSettings._env_names(value)

    @model_validator(mode="after")
    def _host_key_pinned(self) -> RemoteWorker:
        self.host_key  # noqa: B018 - raises ValueError naming the key and the fix
        return self

    @property
    def ssh_address(self) -> tuple[str, int]:
        """(host, port) of ``docker_host``."""
        address = self.docker_host.removeprefix("ssh://").rpartition("@")[2]
        host, _, port = address.partition(":")
        return host, int(port or 22)

    @property
    def host_key(self) -> HostKey:
        host, port = self.ssh_address
        if self.known_hosts is None:
            raise ValueError(
                f"remote worker {self.name!r}: known_hosts is not set: the worker's secrets travel over SSH to "
                f"{self.docker_host}, so its host key must be pinned; {how_to_get(host, port)} as known_hosts"
            )
        try:
            return parse_known_hosts_line(self.known_hosts, host, port)
        except ValueError as error:
            raise ValueError(f"remote worker {self.name!r}: known_hosts: {error}") from None


class RemoteAccessSettings(Settings):
    """Where remote workers reach production's Redis and PostgreSQL (000: WireGuard, 10.8.0.1).

    Both are published on this address only (never 0.0.0.0); it should be a VPN address that only
    the worker hosts can reach.
    """

    address: IPvAnyAddress = Field(examples=["10.8.0.1"])
    redis_port: Port = Field(default=6379, examples=[6379])
    database_port: Port = Field(default=5432, examples=[5432])


class EdgeSettings(Settings):
    """The shared Caddy (caddy-docker-proxy) that routes both environments by domain (004 §2, §6)."""

    # own: this stack runs the Caddy container and the edge network of every environment it serves;
    # attach: this stack's web/api join the edge network made by the owner.
    caddy: Literal["own", "attach"]
    serves: list[str] = Field(default_factory=lambda: ["prod", "dev"], examples=[["prod", "dev"]])
    strip_api_prefix: bool = False
    block_crawlers: bool
    http_port: Port = 80
    https_port: Port = 443
    # Built with Caddy 2.10: `metrics { per_host }` needs Caddy 2.9+ (caddy_labels.CADDY_GLOBAL_LABELS).
    image: Image = "lucaslorentz/caddy-docker-proxy:2.10.0-alpine"


class HostSettings(Settings):
    """Where host-side commands run (the sampling run, backups, migrations): the Docker host.

    Without ``ssh_host`` the machine running ``pulumi up`` is the Docker host and the commands run
    there in the project directory; with it they run over SSH in ``checkout``, a clone of this
    repository with its virtualenv on the Docker host (key: secret ``host_ssh_private_key``).
    """

    ssh_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$", examples=["10.0.0.5"])
    ssh_user: str = Field(default="deploy", pattern=r"^[a-z_][a-z0-9_-]*$", examples=["deploy"])
    ssh_port: Port = 22
    # The Docker host's SSH host key, one known_hosts line (ssh-keyscan prints it): required with ssh_host.
    ssh_known_hosts: str | None = Field(
        default=None,
        examples=[
            "10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"
        ],
    )
    # The profile derives it from the project: /opt/<project>-infra.
    checkout: HostPath = Field(examples=["/opt/makapix-infra"])
    # The interpreter that has this project installed, relative to the project directory or checkout.
    python: str = Field(
        default=".venv/bin/python", pattern=r"^[A-Za-z0-9._/-]+$", examples=[".venv/bin/python"]
    )

    @model_validator(mode="after")
    def _host_key_pinned(self) -> HostSettings:
        if self.ssh_host is not None:
            self.host_key  # noqa: B018 - raises ValueError naming the key and the fix
        return self

    @property
    def host_key(self) -> HostKey:
        """The pinned key of ``ssh_host`` (only with ``ssh_host`` set)."""
        assert self.ssh_host is not None
        if self.ssh_known_hosts is None:
            raise ValueError(
                f"host.ssh_host is {self.ssh_host!r} but host.ssh_known_hosts is not set: every deployment "
                f"secret travels over that SSH connection, so its host key must be pinned; "
                f"{how_to_get(self.ssh_host, self.ssh_port)} as host.ssh_known_hosts"
            )
        try:
            return parse_known_hosts_line(self.ssh_known_hosts, self.ssh_host, self.ssh_port)
        except ValueError as error:
            raise ValueError(f"host.ssh_known_hosts: {error}") from None


class PromotionSettings(Settings):
    """Where production's image digests come from (issue 7 "flip the switch").

    Production runs images by digest only: each service's digest is promoted from the stack
    named here (its ``image_digests`` output: what development runs), unless the stack file pins
    that service to a digest itself (``services.<name>.image: repo@sha256:...``); a pin wins.
    """

    # None: no promotion, every production service image must be a digest in the stack file.
    from_stack: str | None = Field(default=None, examples=["dev"])


class ReleaseSettings(Settings):
    """What a deploy does around new application images: back up first, then migrate."""

    # pg_dump -Fc of the database before new app containers start, when the api image or migrations change.
    backup: bool = False
    backup_dir: HostPath = Field(examples=["/srv/makapix/backups/prod"])
    keep: int = Field(default=7, ge=1, le=1000, examples=[7])
    # Directory of pg_dump on the Docker host; default /usr/lib/postgresql/<images.postgres major>/bin.
    pg_bin: HostPath | None = Field(default=None, examples=["/usr/lib/postgresql/17/bin"])
    # Seconds the backup waits for a freshly started database to accept connections.
    wait_seconds: int = Field(default=120, ge=0, le=3600, examples=[120])
    # Run with `docker exec` in the new container of `migrations_service`; None: no migrations.
    migrations_command: list[str] | None = Field(default=None, examples=[["alembic", "upgrade", "head"]])
    # The service whose image holds the migrations: its image changing makes a release. Needed with
    # backup or a migrations command.
    migrations_service: str | None = Field(default=None, pattern=_NAME.pattern, examples=["api"])

    @property
    def service(self) -> str:
        """``migrations_service``, which the environment's validation requires once it is used."""
        if self.migrations_service is None:
            raise ValueError("release.migrations_service is not set")
        return self.migrations_service

    @field_validator("migrations_command")
    @classmethod
    def _not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(value)):
            raise ValueError("give the command as a non-empty list of words, or null for no migrations")
        return value


class IsolationSettings(Settings):
    """How the dev stack checks itself against the prod stack before deploying."""

    # Stack whose exported isolation fingerprint this stack must not collide with (None: no check).
    peer_stack: str | None = Field(default=None, examples=["organization/makapix/prod"])


class SamplingSettings(Settings):
    """The development database is filled from production by the sampler (004 §4-5)."""

    enabled: bool = False
    # The sampling configuration (tables, relations, anonymisation) of the application.
    config_file: str = Field(examples=["sampling/makapix.yaml"])
    fraction: float = Field(default=0.1, gt=0, le=1, examples=[0.1])
    seed: int = Field(default=1, ge=0, examples=[1])
    # Change this value to force a new sampling run on the next `pulumi up`.
    refresh: str = Field(default="", examples=["2026-11-22"])
    source_stack: str = Field(default="prod", examples=["organization/makapix/prod"])
    # Production: the SELECT-only role the sampler logs in as, and the schemas it may read.
    reader_role: Identifier = Field(examples=["makapix_sampler"])
    reader_schemas: list[Identifier] = Field(default_factory=lambda: ["public"], examples=[["public"]])


class MonitoringSettings(Settings):
    """Alerting thresholds exported for monitoring (004 §12)."""

    # The defaults are the monitoring output's own (ops/monitoring.py), so the two cannot differ.
    api_latency_p99_seconds: float = Field(default=DEFAULT_LATENCY_P99_SECONDS, gt=0, examples=[0.5])
    database_connections_ratio: float = Field(default=DEFAULT_CONNECTIONS_ALERT_RATIO, gt=0, le=1, examples=[0.8])
    vault_disk_ratio: float = Field(default=DEFAULT_DISK_ALERT_RATIO, gt=0, le=1, examples=[0.8])
    container_limit_ratio: float = Field(default=DEFAULT_CONTAINER_LIMIT_ALERT_RATIO, gt=0, le=1, examples=[1.0])
    # Mount point of the filesystem holding the vault (node_exporter's `mountpoint` label).
    vault_mountpoint: HostPath = Field(default="/", examples=["/mnt"])


class Images(Settings):
    """Images of the infrastructure containers (the app images are per service)."""

    postgres: Image = "postgres:17.2-alpine"
    redis: Image = "redis:7.4-alpine"
    mosquitto: Image = "eclipse-mosquitto:2.0.20"


# What the program can hand to the application (``application.variables`` maps an environment
# variable to one of these).  ``secret.*`` and ``database.url`` reach containers only as secrets.
APPLICATION_SOURCES = {
    "environment": "production or development",
    "domain.root": "domain.root",
    "domain.web": "the web domain (domain.web, default domain.root)",
    "domain.base_url": "https://<web domain>",
    "domain.vault": "domain.vault (not passed when unset)",
    "database.name": "database.name",
    "database.table_prefix": "database.table_prefix",
    "database.url": "postgresql://user:password@host:port/name (secret)",
    "redis.url": "redis://host:6379/<db_index> (broker, results and cache)",
    "vault.host_path": "vault.host_path",
    "vault.container_path": "vault.container_path (where the vault is mounted)",
    "mqtt.host": "the broker's host name inside the environment",
    "mqtt.port": "the broker's port inside the environment",
    "mqtt.tls_enabled": "true (dedicated broker, mTLS) or false (shared broker, password on its data network)",
    "mqtt.public_port": "mqtt.public_port",
    "mqtt.topic_prefix": "mqtt.topic_prefix",
    "mqtt.username": "mqtt.username",
    "email.from_address": "email.from_address",
    "oauth.github_client_id": "oauth.github_client_id (not passed when unset)",
    "oauth.redirect_uri": "the OAuth callback derived from the web domain",
    "admin.username": "application.admin.username",
    "admin.email": "application.admin.email",
    **{
        f"secret.{key}": f"{meaning} (secret; not passed when unset)"
        for key, meaning in SECRET_KEYS.items()
        if key not in DEPLOY_SECRET_KEYS
    },
}


class AdminSettings(Settings):
    """The application's admin user (000 "Admin Credentials"); its password is the secret ``admin_password``."""

    username: str = Field(default="admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$", examples=["admin"])
    email: str = Field(pattern=_EMAIL.pattern, examples=["admin@clippyfront.com"])


class ApplicationSettings(Settings):
    """What the application reads: each environment variable and the program setting it carries."""

    # VARIABLE: source (a key of APPLICATION_SOURCES); null removes a variable the defaults pass.
    variables: dict[str, str | None] = Field(examples=[{"TABLE_PREFIX": "database.table_prefix"}])
    admin: AdminSettings | None = None

    @field_validator("variables")
    @classmethod
    def _known_sources(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for name, source in value.items():
            if not re.match(r"^[A-Z_][A-Z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name; e.g. TABLE_PREFIX")
            if source is not None and source not in APPLICATION_SOURCES:
                raise ValueError(
                    f"{name}: {source!r} is not a setting the program can pass; "
                    f"one of: {', '.join(sorted(APPLICATION_SOURCES))}"
                )
        return value

    @property
    def passed(self) -> dict[str, str]:
        """The variables the application gets (null ones removed)."""
        return {name: source for name, source in self.variables.items() if source is not None}


class EnvironmentConfig(Settings):
    """Everything that makes one environment of the application; one stack, one of these."""

    # The application (its profile sets it); every container, volume and network name starts with it.
    project: str = Field(pattern=_NAME.pattern, examples=["makapix"])
    environment: Environment = Field(examples=["development"])
    # Short name carried by every container, volume and network: <project>-<name>-db.
    name: str = Field(pattern=_NAME.pattern, examples=["dev"])
    domain: DomainSettings
    database: DatabaseSettings
    redis: RedisSettings
    # null: the application uses no MQTT broker (ClippyFront), none is declared.
    mqtt: MqttSettings | None
    vault: VaultSettings
    oauth: OAuthSettings = OAuthSettings()
    # null: the application sends no email.
    email: EmailSettings | None
    application: ApplicationSettings
    images: Images = Images()
    services: dict[str, ServiceSettings]
    # Resource limits of the infrastructure containers (db, redis, mqtt).
    resources: dict[Literal["db", "redis", "mqtt"], Resources]
    remote_workers: list[RemoteWorker] = Field(default_factory=list)
    remote_access: RemoteAccessSettings | None = None
    edge: EdgeSettings
    host: HostSettings
    isolation: IsolationSettings = IsolationSettings()
    promotion: PromotionSettings = PromotionSettings()
    release: ReleaseSettings
    sampling: SamplingSettings
    monitoring: MonitoringSettings = MonitoringSettings()

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceSettings]) -> dict[str, ServiceSettings]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a service name; e.g. 'api' or 'worker'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EnvironmentConfig:
        if self.oauth.redirect_uri is not None and self.oauth.redirect_uri != self.github_redirect_uri:
            raise ValueError(
                f"oauth.redirect_uri {self.oauth.redirect_uri!r} does not match this environment's domain; "
                f"it must be {self.github_redirect_uri!r} (or leave it out to derive it)"
            )
        if self.remote_workers and self.environment != "production":
            raise ValueError(
                "remote_workers are declared by a development stack; remote workers join production only "
                "(000 'Remote GPU/CPU Workers'): remove them from this stack"
            )
        if self.remote_workers and self.mqtt is not None:
            raise ValueError(
                "remote_workers are declared but so is an MQTT broker: the broker is reachable only inside "
                "this host's networks and its client certificates are not given to other hosts; "
                "remove remote_workers or set mqtt: null"
            )
        if self.remote_workers and self.remote_access is None:
            raise ValueError(
                "remote_workers need remote_access.address: the address where they reach Redis and "
                "PostgreSQL, e.g. the host's WireGuard address '10.8.0.1'"
            )
        if self.remote_access is not None and self.environment != "production":
            raise ValueError(
                "remote_access is set on a development stack; only production serves remote workers"
            )
        for worker in self.remote_workers:
            if worker.service not in self.services:
                raise ValueError(
                    f"remote worker {worker.name!r} runs service {worker.service!r}, which this stack does "
                    f"not have; one of: {', '.join(self.services)}"
                )
        names = [worker.name for worker in self.remote_workers]
        for duplicate in sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"remote worker name {duplicate!r} is used twice; each needs its own name")
        if self.sampling.enabled and self.environment == "production":
            raise ValueError(
                "sampling.enabled is true on a production stack; only development is sampled into"
            )
        sections = {"mqtt": self.mqtt, "email": self.email, "admin": self.application.admin}
        for variable, source in self.application.passed.items():
            section = source.split(".")[0]
            if section in sections and sections[section] is None:
                key = "application.admin" if section == "admin" else section
                raise ValueError(
                    f"application.variables.{variable} passes {source!r} but {key} is not configured; "
                    f"configure {key} or set the variable to null"
                )
        if self.database.table_prefix and self.database.mode != "shared":
            raise ValueError("database.table_prefix is set but database.mode is not 'shared'")
        uses_service = self.release.migrations_command is not None or self.release.backup
        if uses_service and self.release.migrations_service is None:
            raise ValueError(
                "release.migrations_service is not set but release.backup or release.migrations_command is: "
                f"name the service whose image holds the migrations, one of: {', '.join(sorted(self.services))}"
            )
        if uses_service and self.release.migrations_service not in self.services:
            raise ValueError(
                f"release.migrations_service {self.release.migrations_service!r} is not one of services "
                f"({', '.join(sorted(self.services))}); name the service whose image holds the migrations "
                "(its image changing triggers backup and migrations)"
            )
        if (
            self.release.backup
            and self.release.pg_bin is None
            and postgres_major(self.images.postgres) is None
        ):
            raise ValueError(
                f"release.pg_bin is not set and the PostgreSQL major version cannot be read from images.postgres "
                f"{self.images.postgres!r}; set release.pg_bin to the directory of a pg_dump at least as new as "
                "the server, e.g. '/usr/lib/postgresql/17/bin'"
            )
        if self.release.backup and role(self.database.mode, self.environment) == "shared-guest":
            raise ValueError(
                "release.backup is true but this stack's database lives on production's shared server; "
                "the production stack backs that server up: set release.backup: false"
            )
        if self.release.backup and self.database.host_port is None:
            raise ValueError(
                "release.backup is true but database.host_port is null: the backup connects to the "
                "database's host port; set database.host_port (e.g. 55432) or release.backup: false"
            )
        routed = [name for name, service in self.services.items() if service.route is not None]
        for name in routed:
            if self.services[name].port is None:
                raise ValueError(f"services.{name} has a route but no port")
        for route in sorted({self.services[name].route or "" for name in routed}):
            sharing = [name for name in routed if self.services[name].route == route]
            if len(sharing) > 1:
                raise ValueError(
                    f"services {', '.join(sharing)} all have route {route!r}; Caddy routes a path to one service"
                )
        return self

    # Derived names: every container, volume and network carries project and environment.
    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.name}"

    def container_name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def volume_name(self, volume: str) -> str:
        return f"{self.prefix}_{volume}"

    def network_name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    # Shared mode: one server for both environments, declared by production, named for neither.
    def shared_container_name(self, service: str) -> str:
        return f"{self.project}-shared-{service}"

    def shared_network_name(self, environment_name: str | None = None) -> str:
        """Where the shared servers meet ONE environment's containers: a network per environment,
        so that no development container shares a network with a production container."""
        return f"{self.project}-{environment_name or self.name}-data"

    @property
    def served_environments(self) -> list[str]:
        """Environments whose edge and (shared mode) data networks the owning stack declares."""
        return list(self.edge.serves)

    @property
    def mqtt_public_host(self) -> str:
        return (self.mqtt and self.mqtt.public_host) or self.domain.root

    @property
    def github_redirect_uri(self) -> str:
        return f"{self.domain.base_url}/api/auth/github/callback"
