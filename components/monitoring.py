"""The ``monitoring`` stack output: containers and limits, thresholds and endpoints (004 §12).

Its schema is ``ops.monitoring.MonitoringOutput`` (documented in docs/operations.md); building it
through that model means a stack can never export what ``python -m ops alerts`` cannot read.
"""

from __future__ import annotations

from typing import Any

from components.config import EnvironmentConfig, Resources, memory_bytes
from components.placement import StackPlacement
from ops.monitoring import (
    ApiMonitoring,
    ContainerLimits,
    DatabaseMonitoring,
    MonitoringOutput,
    VaultMonitoring,
)

# PostgreSQL's own default when the stack does not tune max_connections.
POSTGRES_DEFAULT_MAX_CONNECTIONS = 100


def _limits(name: str, service: str, resources: Resources) -> ContainerLimits:
    return ContainerLimits(
        name=name,
        service=service,
        cpu_limit=resources.cpus,
        memory_limit_bytes=memory_bytes(resources.memory),
    )


def monitoring_output(
    settings: EnvironmentConfig, placement: StackPlacement, sampling: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plain JSON the stack exports as ``monitoring`` (``sampling``: the dev stack's run summary)."""
    containers = [
        _limits(placement.app_containers[service], service, config.resources)
        for service, config in settings.services.items()
    ]
    # The servers this stack runs: its own ones, then the shared ones it owns (the order of earlier exports).
    for role, kinds in (("own", ("redis", "db", "mqtt")), ("shared-owner", ("db", "redis", "mqtt"))):
        for kind in kinds:
            server = placement.servers.get(kind)
            if server is not None and server.role == role:
                containers.append(_limits(server.container, kind, settings.resources[kind]))  # type: ignore[index]
    database_container = placement.db.container
    production = settings.environment == "production"
    thresholds = settings.monitoring
    output = MonitoringOutput(
        project=settings.project,
        environment=settings.environment,
        containers=containers,
        database=DatabaseMonitoring(
            container=database_container,
            max_connections=int(
                settings.database.tuning.get("max_connections", POSTGRES_DEFAULT_MAX_CONNECTIONS)
            ),
            connections_alert_ratio=thresholds.database_connections_ratio,
        ),
        vault=VaultMonitoring(
            host_path=settings.vault.host_path,
            mountpoint=thresholds.vault_mountpoint,
            disk_alert_ratio=thresholds.vault_disk_ratio,
        ),
        api=ApiMonitoring(
            domain=settings.domain.web_domain,
            latency_p99_threshold_seconds=thresholds.api_latency_p99_seconds if production else None,
        ),
        container_limit_alert_ratio=thresholds.container_limit_ratio,
        # Each routed service's public URL (Makapix: web at /, api at /api).
        endpoints={
            service: settings.domain.base_url + ("" if config.route == "/" else config.route)
            for service, config in settings.services.items()
            if config.route is not None
        },
        sampling=sampling,
    )
    return output.model_dump(mode="json")
