"""Fixtures for the ops tests: realistic stack outputs of both environments."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MIB = 1024 * 1024
GIB = 1024 * MIB


def _container(name: str, service: str, cpu: float, memory: int) -> dict[str, Any]:
    return {"name": name, "service": service, "cpu_limit": cpu, "memory_limit_bytes": memory}


@pytest.fixture
def production_monitoring() -> dict[str, Any]:
    """The `monitoring` output of a production stack, as `pulumi stack output --json` prints it."""
    return {
        "schema_version": 1,
        "project": "makapix",
        "environment": "production",
        "containers": [
            _container("makapix-prod-api", "api", 2.0, 1 * GIB),
            _container("makapix-prod-web", "web", 1.0, 512 * MIB),
            _container("makapix-prod-worker", "worker", 2.0, 2 * GIB),
            _container("makapix-prod-db", "db", 2.0, 2 * GIB),
            _container("makapix-prod-cache", "cache", 0.5, 256 * MIB),
            _container("makapix-prod-mqtt", "mqtt", 0.25, 64 * MIB),
        ],
        "database": {"container": "makapix-prod-db", "max_connections": 100, "connections_alert_ratio": 0.8},
        "vault": {"host_path": "/srv/makapix/prod/vault", "mountpoint": "/srv", "disk_alert_ratio": 0.8},
        "api": {"domain": "makapix.club", "latency_p99_threshold_seconds": 0.5},
        "container_limit_alert_ratio": 0.9,
        "endpoints": {
            "web": "https://makapix.club",
            "api": "https://makapix.club/api",
            "mqtt": "mqtts://makapix.club:8883",
        },
        "sampling": None,
    }


@pytest.fixture
def development_monitoring() -> dict[str, Any]:
    """The `monitoring` output of a development stack (limits of 004 §11, max_connections 50)."""
    return {
        "schema_version": 1,
        "project": "makapix",
        "environment": "development",
        "containers": [
            _container("makapix-dev-api", "api", 1.0, 512 * MIB),
            _container("makapix-dev-web", "web", 0.5, 256 * MIB),
            _container("makapix-dev-worker", "worker", 1.0, 512 * MIB),
            _container("makapix-dev-db", "db", 1.0, 1 * GIB),
        ],
        "database": {"container": "makapix-dev-db", "max_connections": 50, "connections_alert_ratio": 0.8},
        "vault": {"host_path": "/srv/makapix/dev/vault", "mountpoint": "/", "disk_alert_ratio": 0.8},
        "api": {"domain": "development.makapix.club", "latency_p99_threshold_seconds": None},
        "container_limit_alert_ratio": 1.0,
        "endpoints": {"web": "https://development.makapix.club"},
        "sampling": {
            "finished_at": "2026-11-21T03:00:00+00:00",
            "user_fraction": 0.1,
            "users": 120,
            "rows_by_table": {"users": 120, "posts": 2210},
        },
    }


@pytest.fixture
def write_outputs(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Writes a stack outputs file holding `monitoring` and a secret output, as Pulumi prints it."""

    def write(monitoring: dict[str, Any]) -> Path:
        path = tmp_path / f"{monitoring['environment']}-outputs.json"
        outputs = {
            "monitoring": monitoring,
            "databasePassword": "[secret]",
            "apiImageDigest": "sha256:" + "ab" * 32,
        }
        path.write_text(json.dumps(outputs, indent=2), encoding="utf-8")
        return path

    return write
