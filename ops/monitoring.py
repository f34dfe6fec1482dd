"""The monitoring stack output: what a stack tells its monitoring about itself.

Each stack exports one plain (not secret) output named ``monitoring`` holding a
:class:`MonitoringOutput` as JSON.  ``python -m ops alerts`` turns it into Prometheus
alerting rules.  The schema is versioned: fields may be added within a version, never
renamed or removed; a breaking change bumps :data:`SCHEMA_VERSION`.  Defaults are the
thresholds of 004 §12 ("Alerting Thresholds").
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

SCHEMA_VERSION: Literal[1] = 1
OUTPUT_NAME = "monitoring"

Environment = Literal["production", "development"]

# 004 §12 "Alerting Thresholds"; the stacks' configuration may override each of them.
DEFAULT_CONNECTIONS_ALERT_RATIO = 0.8
DEFAULT_DISK_ALERT_RATIO = 0.8
DEFAULT_LATENCY_P99_SECONDS = 0.5
DEFAULT_CONTAINER_LIMIT_ALERT_RATIO = 1.0


class _Strict(BaseModel):
    # Unknown keys are rejected so that a typo in the stack does not silently drop a threshold.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContainerLimits(_Strict):
    """One container and the resources it was allocated."""

    name: str = Field(min_length=1, description="Docker container name (cAdvisor label `name`).")
    service: str = Field(min_length=1, description="Application service it runs: api, web, worker, db...")
    cpu_limit: float = Field(gt=0, description="CPU limit in cores (docker --cpus).")
    memory_limit_bytes: int = Field(gt=0, description="Memory limit in bytes (docker --memory).")


class DatabaseMonitoring(_Strict):
    """The environment's PostgreSQL and its connection alert (postgres_exporter)."""

    container: str = Field(min_length=1, description="Name of the PostgreSQL container.")
    max_connections: int = Field(gt=0, description="PostgreSQL max_connections of this environment.")
    connections_alert_ratio: float = Field(
        default=DEFAULT_CONNECTIONS_ALERT_RATIO,
        gt=0,
        le=1,
        description="Alert when connections in use exceed this share of max_connections.",
    )


class VaultMonitoring(_Strict):
    """The environment's file vault and its disk alert (node_exporter)."""

    host_path: str = Field(min_length=1, description="Host directory of the file vault.")
    mountpoint: str = Field(
        default="/",
        min_length=1,
        description="Mount point of the filesystem holding host_path (node_exporter label `mountpoint`).",
    )
    disk_alert_ratio: float = Field(
        default=DEFAULT_DISK_ALERT_RATIO,
        gt=0,
        le=1,
        description="Alert when the vault's filesystem is fuller than this share.",
    )

    @model_validator(mode="after")
    def _mountpoint_contains_vault(self) -> Self:
        mount = self.mountpoint.rstrip("/") + "/"
        if not (self.host_path.rstrip("/") + "/").startswith(mount):
            raise ValueError(
                f"vault.mountpoint {self.mountpoint!r} does not contain vault.host_path {self.host_path!r}"
            )
        return self


class ApiMonitoring(_Strict):
    """The api's public host and its latency alert (Caddy metrics)."""

    domain: str = Field(min_length=1, description="Host name the api is served on (Caddy label `host`).")
    latency_p99_threshold_seconds: float | None = Field(
        default=None, gt=0, description="Production only: alert when p99 request latency exceeds it."
    )


class MonitoringOutput(_Strict):
    """Everything monitoring needs to know about one environment of the application."""

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Version of this schema.")
    project: str = Field(min_length=1, description="Project name, e.g. makapix.")
    environment: Environment = Field(description="Which environment the stack runs.")
    containers: list[ContainerLimits] = Field(min_length=1, description="Every container of the environment.")
    database: DatabaseMonitoring
    vault: VaultMonitoring
    api: ApiMonitoring
    container_limit_alert_ratio: float = Field(
        default=DEFAULT_CONTAINER_LIMIT_ALERT_RATIO,
        gt=0,
        description="Alert when a container uses more than this share of its limit.",
    )
    endpoints: dict[str, str] = Field(default_factory=dict, description="Name -> URL of public endpoints.")
    sampling: dict[str, JsonValue] | None = Field(
        default=None, description="Development: summary of the last production sample loaded, verbatim."
    )

    @model_validator(mode="after")
    def _environment_rules(self) -> Self:
        names = [c.name for c in self.containers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"containers: duplicate container names {duplicates}")
        threshold = self.api.latency_p99_threshold_seconds
        if self.environment == "production" and threshold is None:
            raise ValueError("api.latency_p99_threshold_seconds is required for production (004 §12: 0.5)")
        if self.environment == "development" and threshold is not None:
            raise ValueError("api.latency_p99_threshold_seconds is production only; set it to null for dev")
        if self.environment == "production" and self.sampling is not None:
            raise ValueError("sampling is development only; production is never loaded from a sample")
        return self


def monitoring_json_schema() -> dict[str, Any]:
    """The JSON Schema of the output, as committed in ``ops/monitoring.schema.json``."""
    return MonitoringOutput.model_json_schema()
