"""One environment of the application: read the validated configuration, declare it, export it."""

import pulumi

from components.app import AppService, AppServiceArgs, application_environment, service_exports
from components.container import owner_labels
from components.database import Database, DatabaseArgs
from components.edge import Edge, EdgeArgs, caddy_labels
from components.images import DIGESTS_OUTPUT, PREVIOUS_DIGESTS_OUTPUT, ServiceImages, ServiceImagesArgs
from components.isolation import fingerprint
from components.isolation_check import IsolationCheck, IsolationCheckArgs
from components.monitoring import monitoring_output
from components.mqtt import MqttBrokerArgs, mqtt_broker
from components.networks import EnvironmentNetworks, NetworksArgs
from components.placement import stack_placement
from components.redis import Redis, RedisArgs
from components.release import Migrations, MigrationsArgs, PreDeployBackup, PreDeployBackupArgs
from components.remote_workers import (
    RemoteWorkers,
    RemoteWorkersArgs,
    remote_application_environment,
    remote_container_name,
)
from components.sampling_reader import SamplingReader, SamplingReaderArgs
from components.sampling_run import SamplingRun, SamplingRunArgs
from components.secrets import EnvironmentSecrets, EnvironmentSecretsArgs
from components.stack_config import load_stack_config

stack = load_stack_config()
settings = stack.settings
name = settings.prefix
# Who runs which server (own, shared owner or guest): decided once, read by every component below.
placement = stack_placement(settings)

# First: a production image without a digest is refused before any other resource is declared.
images = ServiceImages(
    f"{name}-images",
    ServiceImagesArgs(
        configured={service: config.image for service, config in settings.services.items()},
        production=settings.environment == "production",
        promotion=settings.promotion,
        stack_file=stack.stack_file,
        namespace=pulumi.get_project(),
    ),
)

secrets = EnvironmentSecrets(name, EnvironmentSecretsArgs(given=stack.secrets))
networks = EnvironmentNetworks(
    name, NetworksArgs(placement=placement, project=settings.project, environment=settings.environment)
)
edge = (
    Edge(
        f"{settings.project}-edge",
        EdgeArgs(placement=placement.edge, networks=placement.declared_edge_networks, edge=settings.edge),
    )
    if placement.edge.declared
    else None
)
labels = caddy_labels(settings.services, settings.domain.web_domain, settings.edge, placement.edge_network)
# On a fresh machine a guest's edge network, which its peer (the edge's owner) makes, does not
# exist yet: Docker refuses to start a container on a missing network. The next `up` joins it.
edge_owner_absent = not placement.edge.declared and stack.peer_absent
edge_networks = [] if edge_owner_absent else [networks.edge_name]
database = Database(
    f"{name}-db",
    DatabaseArgs(
        placement=placement.db,
        database=settings.database,
        image=settings.images.postgres,
        resources=settings.resources["db"],
        password=secrets.values["database_password"],
        networks=networks.attach(placement.db.networks),
        published_network=networks.published_name,
    ),
)
redis = Redis(
    f"{name}-redis",
    RedisArgs(
        placement=placement.redis,
        redis=settings.redis,
        image=settings.images.redis,
        resources=settings.resources["redis"],
        networks=networks.attach(placement.redis.networks),
        published_network=networks.published_name,
    ),
)
mqtt = (
    mqtt_broker(
        f"{name}-mqtt",
        MqttBrokerArgs(
            placement=placement.mqtt,
            mqtt=settings.mqtt,
            image=settings.images.mosquitto,
            resources=settings.resources["mqtt"],
            project=settings.project,
            environment_name=settings.name,
            public_host=settings.mqtt_public_host,
            networks=networks.attach(placement.mqtt.networks),
            published_network=networks.published_name,
        ),
    )
    if settings.mqtt is not None and placement.mqtt is not None
    else None
)

release = settings.release
ssh_private_key = stack.deploy_secrets.get("host_ssh_private_key")
backup = (
    PreDeployBackup(
        f"{name}-backup",
        PreDeployBackupArgs(
            host=settings.host,
            release=release,
            postgres_image=settings.images.postgres,
            database_url=database.host_url,
            image=images.images[release.service],
            depends_on=[*filter(None, [database.container])],
            ssh_private_key=ssh_private_key,
        ),
    )
    if release.backup and database.host_url is not None
    else None
)

plain_environment, secret_environment = application_environment(
    settings, database.url, redis.url, mqtt.client_sources if mqtt else {}, secrets.values
)
services = {
    service: AppService(
        f"{name}-{service}",
        AppServiceArgs(
            service=service,
            config=config,
            container_name=placement.app_containers[service],
            vault=settings.vault,
            owner_labels=owner_labels(settings.project, settings.environment),
            plain_environment=plain_environment,
            secret_environment={**secret_environment, **(mqtt.secret_environment(service) if mqtt else {})},
            networks=[networks.internal_name, *edge_networks, *networks.attach(placement.data_network)],
            caddy_labels=labels.get(service, {}),
            depends_on=[
                *filter(None, [database.container, redis.container, mqtt and mqtt.container, edge]),
                *([backup.command] if backup else []),
            ],
            image=images.images[service],
        ),
    )
    for service, config in settings.services.items()
}
migrations = (
    Migrations(
        f"{name}-migrations",
        MigrationsArgs(
            host=settings.host,
            release=release,
            container=services[release.service].container,
            container_name=placement.app_containers[release.service],
            image=images.images[release.service],
            ssh_private_key=ssh_private_key,
        ),
    )
    if release.migrations_command is not None
    else None
)

if settings.remote_workers:
    remote_plain, remote_secret = remote_application_environment(settings, database.password, secrets.values)
    RemoteWorkers(
        f"{name}-remote",
        RemoteWorkersArgs(
            workers=settings.remote_workers,
            services=settings.services,
            container_names={
                worker.name: remote_container_name(settings, worker) for worker in settings.remote_workers
            },
            production=settings.environment == "production",
            owner_labels=owner_labels(settings.project, settings.environment),
            plain_environment=remote_plain,
            secret_environment=remote_secret,
            images=images.images,
            # Like the local app containers: the new image starts only after the pre-deploy backup.
            depends_on=[*filter(None, [database.container, redis.container, backup and backup.command])],
        ),
    )

# Production: the sampler's read-only role. Development: the sampling run. Never both
# (sampling.enabled is dev-only).
sampling_reader = (
    SamplingReader(
        f"{name}-sampling-reader",
        SamplingReaderArgs(
            sampling=settings.sampling,
            database=settings.database,
            host=settings.host,
            vault=settings.vault,
            owner_url=database.host_url,
            depends_on=[*filter(None, [database.container])],
            ssh_private_key=ssh_private_key,
        ),
    )
    if settings.environment == "production" and database.host_url is not None
    else None
)
sampling_run = (
    SamplingRun(
        f"{name}-sampling",
        SamplingRunArgs(
            sampling=settings.sampling,
            database=settings.database,
            host=settings.host,
            vault=settings.vault,
            stack_file=stack.stack_file,
            database_role=placement.db.role,
            target_url=database.host_url,
            database_password=database.password,
            source_stack_exists=stack.stack_exists(settings.sampling.source_stack),
            # The sample goes into the migrated schema, after the new app containers are up.
            depends_on=[
                *filter(None, [database.container, migrations and migrations.command]),
                *(app.container for app in services.values()),
            ],
            ssh_private_key=ssh_private_key,
        ),
    )
    if settings.sampling.enabled
    else None
)

isolation_fingerprint = secrets.hashes().apply(
    lambda hashes: fingerprint(settings, placement, hashes).model_dump(mode="json")
)
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
pulumi.export(
    "monitoring",
    sampling_run.summary.apply(lambda summary: monitoring_output(settings, placement, summary))
    if sampling_run
    else monitoring_output(settings, placement),
)
pulumi.export("isolation_fingerprint", isolation_fingerprint)
pulumi.export("database_url", database.url)
if placement.db.role == "shared-owner":
    pulumi.export("shared_database_password", database.password)
if mqtt is not None:
    pulumi.export("mqtt", mqtt.facts)
    if mqtt.guest_passwords:
        pulumi.export("shared_mqtt_passwords", pulumi.Output.secret(mqtt.guest_passwords))
if settings.application.admin is not None:
    # Secret: `pulumi stack output admin_password --show-secrets` shows the environment's own.
    pulumi.export("admin_password", secrets.values["admin_password"])
if database.host_url is not None:
    pulumi.export("database_host_url", database.host_url)
if sampling_reader is not None:
    pulumi.export("sampling_source_url", sampling_reader.source_url)
    pulumi.export("sampling_source_vault", sampling_reader.source_vault)
if sampling_run is not None:
    pulumi.export("sampling_summary", sampling_run.summary)
pulumi.export(DIGESTS_OUTPUT, images.digests)
if images.previous_digests is not None:
    pulumi.export(PREVIOUS_DIGESTS_OUTPUT, images.previous_digests)
pulumi.export(
    "services",
    {
        service: service_exports(
            service, settings.services[service], placement.app_containers[service], app.networks, plain_environment
        )
        for service, app in services.items()
    },
)
