"""Celery workers on other hosts (000 "Remote GPU/CPU Workers"): production only.

Each remote worker gets a Docker provider of its own, reaching that host's Docker engine over ssh
(``docker_host: ssh://user@host``; the ssh key comes from the deploying user's ssh agent or
``~/.ssh/config``, never from this program; the host key must be the one pinned in ``known_hosts``),
and one container on it.  The container runs the
local service it names (``service``, default ``worker``): the same image, command and application
variables, except that Redis and PostgreSQL are reached at ``remote_access.address`` (000: the
WireGuard address 10.8.0.1), where production publishes them.  So a remote worker is bound to
production's Redis DB and table prefix by construction; an ``environment`` override that points it
elsewhere is caught by the isolation guard (``components.isolation.bindings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.app import application_environment, worker_command
from components.config import EnvironmentConfig, RemoteWorker, ServiceSettings
from components.container import (
    LOG_OPTIONS,
    container_options,
    environment_list,
    labels,
    limit_args,
    replace_when_changed,
)
from components.database import database_url
from components.known_hosts import ssh_pinning_options


def remote_redis_url(settings: EnvironmentConfig) -> str:
    """The environment's Redis DB as a remote worker reaches it."""
    assert settings.remote_access is not None  # validated in config: remote workers need it
    access = settings.remote_access
    return f"redis://{access.address}:{access.redis_port}/{settings.redis.db_index}"


def remote_application_environment(
    settings: EnvironmentConfig, database_password: pulumi.Output[str], secrets: dict[str, pulumi.Output[str]]
) -> tuple[dict[str, str], dict[str, pulumi.Output[str]]]:
    """The application variables of a remote worker: PostgreSQL and Redis at ``remote_access.address``."""
    access = settings.remote_access
    assert access is not None  # validated in config: remote workers need remote_access
    database = settings.database
    return application_environment(
        settings,
        database_url(
            database.user, database_password, str(access.address), access.database_port, database.name
        ),
        remote_redis_url(settings),
        {},  # remote workers run without a broker (validated in config)
        secrets,
    )


def remote_container_name(settings: EnvironmentConfig, worker: RemoteWorker) -> str:
    return settings.container_name(f"{worker.service}-{worker.name}")


@dataclass(frozen=True)
class RemoteWorkersArgs:
    workers: list[RemoteWorker]
    # The local services (services.<name>) the workers run: image, command, limits, variables.
    services: dict[str, ServiceSettings]
    # Worker name -> container name (remote_container_name).
    container_names: dict[str, str]
    # Remote workers join production only.
    production: bool
    # Who the containers belong to (container.owner_labels).
    owner_labels: dict[str, str]
    # The application variables, reaching PostgreSQL and Redis where production publishes them
    # (remote_application_environment).
    plain_environment: dict[str, str]
    secret_environment: dict[str, pulumi.Output[str]]
    # The image each local service runs (by digest in production: ServiceImages); a remote worker runs the same.
    images: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    # Production's Redis and PostgreSQL containers: a worker starts after them.
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class RemoteWorkers(pulumi.ComponentResource):
    """A Docker provider per remote host and the worker container on it."""

    providers: dict[str, docker.Provider]
    containers: dict[str, docker.Container]

    def __init__(
        self, name: str, args: RemoteWorkersArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:RemoteWorkers", name, None, opts)
        if args.workers and not args.production:
            raise ValueError("remote workers join production only")  # config refuses this first
        self.providers = {}
        self.containers = {}
        if not args.workers:
            self.register_outputs({})
            return
        for worker in args.workers:
            service = args.services[worker.service]
            provider = docker.Provider(
                f"{name}-{worker.name}-docker",
                host=worker.docker_host,
                # Only the host key pinned in remote_workers[].known_hosts is accepted.
                ssh_opts=ssh_pinning_options(worker.host_key),
                opts=pulumi.ResourceOptions(parent=self),
            )
            remote_service = service.model_copy(
                update={"queues": worker.queues, "concurrency": worker.concurrency}
            )
            self.providers[worker.name] = provider
            self.containers[worker.name] = docker.Container(
                f"{name}-{worker.name}-container",
                name=args.container_names[worker.name],
                image=args.images.get(worker.service, service.image),
                command=worker_command(remote_service),
                envs=environment_list(
                    {**args.plain_environment, **service.environment, **worker.environment},
                    args.secret_environment,
                ),
                gpus=worker.gpus,
                labels=labels(args.owner_labels),
                init=True,
                restart="unless-stopped",
                log_driver="json-file",
                log_opts=LOG_OPTIONS,
                **(limit_args(worker.resources) if worker.resources else {}),
                opts=pulumi.ResourceOptions.merge(
                    container_options(self, replace_when_changed(init=True), args.depends_on),
                    pulumi.ResourceOptions(provider=provider),
                ),
            )
        self.register_outputs({"containers": {key: c.name for key, c in self.containers.items()}})
