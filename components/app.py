"""The application's containers: api, web front end and Celery workers, one environment each."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.config import EnvironmentConfig, ServiceSettings
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
    settings: EnvironmentConfig
    service: str
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
        settings = args.settings
        service = settings.services[args.service]
        vault = settings.vault
        check = service.healthcheck
        self.container = docker.Container(
            f"{name}-container",
            name=settings.container_name(args.service),
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
            labels=labels({"makapix.environment": settings.environment, **args.caddy_labels}),
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


def application_environment(
    settings: EnvironmentConfig,
    database_url: pulumi.Output[str],
    redis_url: str,
    secrets: dict[str, pulumi.Output[str]],
) -> tuple[dict[str, str], dict[str, pulumi.Output[str]]]:
    """The settings every app container gets (004 §9, 000 .env), split into plain and secret."""
    domain = settings.domain
    plain = {
        "ENVIRONMENT": settings.environment,
        "ROOT_DOMAIN": domain.root,
        "WEB_DOMAIN": domain.web_domain,
        "BASE_URL": domain.base_url,
        "NEXT_PUBLIC_API_BASE_URL": domain.base_url,
        "DB_DATABASE": settings.database.name,
        "TABLE_PREFIX": settings.database.table_prefix,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "VAULT_HOST_PATH": settings.vault.host_path,
        "VAULT_PATH": settings.vault.container_path,
        "MQTT_HOST": "mqtt",
        "MQTT_PORT": "8883",
        "MQTT_PUBLIC_PORT": str(settings.mqtt.public_port),
        "MQTT_TOPIC_PREFIX": settings.mqtt.topic_prefix,
        "MQTT_USERNAME": settings.mqtt.username,
        "RESEND_FROM_EMAIL": settings.email.from_address,
        "GITHUB_REDIRECT_URI": settings.github_redirect_uri,
    }
    if settings.domain.vault:
        plain["VAULT_DOMAIN"] = settings.domain.vault
    if settings.oauth.github_client_id:
        plain["GITHUB_OAUTH_CLIENT_ID"] = settings.oauth.github_client_id
    secret = {"DATABASE_URL": database_url, "JWT_SECRET_KEY": secrets["jwt_secret"]}
    for key, variable in (
        ("github_oauth_client_secret", "GITHUB_OAUTH_CLIENT_SECRET"),
        ("resend_api_key", "RESEND_API_KEY"),
    ):
        if key in secrets:
            secret[variable] = secrets[key]
    return plain, secret


def service_exports(
    settings: EnvironmentConfig,
    service: str,
    networks: list[pulumi.Input[str]],
    plain_environment: dict[str, str],
) -> dict[str, pulumi.Input[object]]:
    """What the stack tells about one app container: name, networks, limits, internal endpoint, settings."""
    config = settings.services[service]
    return {
        "container": settings.container_name(service),
        "networks": networks,
        "limits": config.resources.model_dump(exclude_none=True),
        "internal_endpoint": f"http://{service}:{config.port}" if config.port else None,
        "environment": {**plain_environment, **config.environment},
    }
