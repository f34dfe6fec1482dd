"""One environment of the application: read the validated configuration, declare it, export it."""

import pulumi

from components.app import AppService, AppServiceArgs, application_environment, service_exports
from components.database import Database, DatabaseArgs
from components.edge import Edge, EdgeArgs, caddy_labels
from components.images import DIGESTS_OUTPUT, PREVIOUS_DIGESTS_OUTPUT, ServiceImages, ServiceImagesArgs
from components.isolation import fingerprint
from components.isolation_check import IsolationCheck, IsolationCheckArgs
from components.monitoring import monitoring_output
from components.networks import EnvironmentNetworks, NetworksArgs
from components.redis import Redis, RedisArgs
from components.release import Migrations, MigrationsArgs, PreDeployBackup, PreDeployBackupArgs
from components.secrets import EnvironmentSecrets, EnvironmentSecretsArgs
from components.stack_config import load_stack_config

stack = load_stack_config()
settings = stack.settings
name = settings.prefix

# First: a production image without a digest is refused before any other resource is declared.
images = ServiceImages(
    f"{name}-images",
    ServiceImagesArgs(settings=settings, stack_file=stack.stack_file, namespace=pulumi.get_project()),
)

secrets = EnvironmentSecrets(name, EnvironmentSecretsArgs(given=stack.secrets))
networks = EnvironmentNetworks(name, NetworksArgs(settings=settings))
edge = Edge(f"{settings.project}-edge", EdgeArgs(settings=settings)) if settings.edge.caddy == "own" else None
labels = caddy_labels(settings)
database = Database(
    f"{name}-db",
    DatabaseArgs(
        settings=settings,
        password=secrets.values["database_password"],
        internal_network=networks.internal_name,
    ),
)
redis = Redis(f"{name}-redis", RedisArgs(settings=settings, internal_network=networks.internal_name))

release = settings.release
ssh_private_key = stack.secrets.get("host_ssh_private_key")
backup = (
    PreDeployBackup(
        f"{name}-backup",
        PreDeployBackupArgs(
            settings=settings,
            database_url=database.host_url,
            image=images.images[release.migrations_service],
            depends_on=[*filter(None, [database.container])],
            ssh_private_key=ssh_private_key,
        ),
    )
    if release.backup and database.host_url is not None
    else None
)

plain_environment, secret_environment = application_environment(
    settings, database.url, redis.url, secrets.values
)
services = {
    service: AppService(
        f"{name}-{service}",
        AppServiceArgs(
            settings=settings,
            service=service,
            plain_environment=plain_environment,
            secret_environment=secret_environment,
            networks=[networks.internal_name, networks.edge_name, *filter(None, [networks.shared_data_name])],
            caddy_labels={"api": labels.api, "web": labels.web}.get(service, {}),
            depends_on=[
                *filter(None, [database.container, redis.container, edge]),
                *([backup.command] if backup else []),
            ],
            image=images.images[service],
        ),
    )
    for service in settings.services
}
migrations = (
    Migrations(
        f"{name}-migrations",
        MigrationsArgs(
            settings=settings,
            container=services[release.migrations_service].container,
            image=images.images[release.migrations_service],
            ssh_private_key=ssh_private_key,
        ),
    )
    if release.migrations_command is not None
    else None
)

isolation_fingerprint = secrets.hashes().apply(lambda hashes: fingerprint(settings, hashes))
if settings.isolation.peer_stack:
    IsolationCheck(
        f"{name}-isolation",
        IsolationCheckArgs(
            stack_name=pulumi.get_stack(),
            peer_stack=settings.isolation.peer_stack,
            mine=isolation_fingerprint,
        ),
    )

pulumi.export("environment", settings.environment)
pulumi.export("monitoring", monitoring_output(settings))
pulumi.export("isolation_fingerprint", isolation_fingerprint)
pulumi.export("database_url", database.url)
if settings.database.mode == "shared" and settings.environment == "production":
    pulumi.export("shared_database_password", database.password)
if database.host_url is not None:
    pulumi.export("database_host_url", database.host_url)
pulumi.export(DIGESTS_OUTPUT, images.digests)
if images.previous_digests is not None:
    pulumi.export(PREVIOUS_DIGESTS_OUTPUT, images.previous_digests)
pulumi.export(
    "services",
    {
        service: service_exports(settings, service, app.networks, plain_environment)
        for service, app in services.items()
    },
)
