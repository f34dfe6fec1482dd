"""The application's containers: api, web front end and Celery workers, one environment each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig, ServiceSettings, VaultSettings
from components.container import (
    LOG_OPTIONS,
    container_options,
    environment_list,
    healthcheck,
    labels,
    limit_args,
    replace_when_changed,
)


def worker_command(service: ServiceSettings) -> list[str]:
    """The worker's command with its queues and concurrency appended (000 "Celery Workers")."""
    command = list(service.command or [])
    if service.queues:
        command += ["-Q", ",".join(service.queues)]
    if service.concurrency is not None:
        command += [f"--concurrency={service.concurrency}"]
    return command


@dataclass(frozen=True)
class AppServiceArgs:
    # The service's name (its network alias) and its settings (services.<name>).
    service: str
    config: ServiceSettings
    container_name: str
    vault: VaultSettings
    # Who the container belongs to (container.owner_labels).
    owner_labels: dict[str, str]
    plain_environment: dict[str, str]
    secret_environment: dict[str, pulumi.Output[str]]
    networks: list[pulumi.Input[str]]
    caddy_labels: dict[str, str] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The image the container runs (a digest, from ServiceImages); None: the configured image.
    image: pulumi.Input[str] | None = None


class AppService(pulumi.ComponentResource):
    """One application container with the environment's settings, limits and health check."""

    container: docker.Container
    networks: list[pulumi.Input[str]]

    def __init__(self, name: str, args: AppServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:AppService", name, None, opts)
        service = args.config
        vault = args.vault
        check = service.healthcheck
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=args.image if args.image is not None else service.image,
            command=worker_command(service) if service.command or service.queues else None,
            envs=environment_list({**args.plain_environment, **service.environment}, args.secret_environment),
            mounts=[
                docker.ContainerMountArgs(type="bind", source=vault.host_path, target=vault.container_path)
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=network, aliases=[args.service])
                for network in args.networks
            ],
            labels=labels({**args.owner_labels, **args.caddy_labels}),
            healthcheck=healthcheck(check) if check else None,
            # Workers reap their forked children; init makes that safe.
            init=True,
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            **limit_args(service.resources),
            opts=container_options(self, replace_when_changed(healthcheck=check, init=True), args.depends_on),
        )
        self.networks = list(args.networks)
        self.register_outputs({"container": self.container.name})


def application_sources(
    settings: EnvironmentConfig,
    database_url: pulumi.Output[str],
    redis_url: str,
    mqtt_sources: Mapping[str, str],
    secrets: dict[str, pulumi.Output[str]],
) -> tuple[dict[str, str], dict[str, pulumi.Output[str]]]:
    """Every value the program can pass to the application (``APPLICATION_SOURCES``), plain and secret.

    The servers' addresses come from their components: ``Database.url``, ``Redis.url`` and
    ``MqttBroker.client_sources`` (empty without a broker).

    An optional setting that is not configured has no entry: its variables are not passed.
    """
    domain = settings.domain
    plain = {
        "environment": settings.environment,
        "domain.root": domain.root,
        "domain.web": domain.web_domain,
        "domain.base_url": domain.base_url,
        "database.name": settings.database.name,
        "database.table_prefix": settings.database.table_prefix,
        "redis.url": redis_url,
        "vault.host_path": settings.vault.host_path,
        "vault.container_path": settings.vault.container_path,
        "oauth.redirect_uri": settings.github_redirect_uri,
    }
    if domain.vault:
        plain["domain.vault"] = domain.vault
    if settings.oauth.github_client_id:
        plain["oauth.github_client_id"] = settings.oauth.github_client_id
    plain |= mqtt_sources
    if settings.email is not None:
        plain["email.from_address"] = settings.email.from_address
    if settings.application.admin is not None:
        plain["admin.username"] = settings.application.admin.username
        plain["admin.email"] = settings.application.admin.email
    secret = {"database.url": database_url, **{f"secret.{key}": value for key, value in secrets.items()}}
    return plain, secret


def application_environment(
    settings: EnvironmentConfig,
    database_url: pulumi.Output[str],
    redis_url: str,
    mqtt_sources: Mapping[str, str],
    secrets: dict[str, pulumi.Output[str]],
) -> tuple[dict[str, str], dict[str, pulumi.Output[str]]]:
    """The variables every app container gets (``application.variables``), split into plain and secret."""
    plain_sources, secret_sources = application_sources(settings, database_url, redis_url, mqtt_sources, secrets)
    plain: dict[str, str] = {}
    secret: dict[str, pulumi.Output[str]] = {}
    for variable, source in settings.application.passed.items():
        if source in secret_sources:
            secret[variable] = secret_sources[source]
        elif source in plain_sources:
            plain[variable] = plain_sources[source]
    return plain, secret


def service_exports(
    service: str,
    config: ServiceSettings,
    container_name: str,
    networks: list[pulumi.Input[str]],
    plain_environment: dict[str, str],
) -> dict[str, pulumi.Input[object]]:
    """What the stack tells about one app container: name, networks, limits, internal endpoint, settings."""
    return {
        "container": container_name,
        "networks": networks,
        "limits": config.resources.model_dump(exclude_none=True),
        "internal_endpoint": f"http://{service}:{config.port}" if config.port else None,
        "environment": {**plain_environment, **config.environment},
    }
