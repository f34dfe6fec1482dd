"""Defaults in code, one profile per application; a stack file holds only what differs.

The Pulumi project's name (``name:`` in Pulumi.yaml, also the config namespace) selects the
profile: ``makapix`` gets ``makapix(...)``, ``clippyfront`` gets ``clippyfront(...)``.  Each profile
returns the complete defaults of one environment: everything that names the application lives here,
never in the model (components/config.py), so one application's values cannot leak into another's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components.config import Environment


def environment_defaults(profile: str, environment: Environment, name: str | None = None) -> dict[str, Any]:
    """The defaults of one environment of the application ``profile`` (a key of ``PROFILES``).

    ``name`` is the environment's short name (default ``prod`` or ``dev``).
    """
    return PROFILES[profile](environment, name or ("prod" if environment == "production" else "dev"))


def makapix(environment: Environment, name: str) -> dict[str, Any]:
    """Makapix (004): its own PostgreSQL, Redis and MQTT broker per environment; api, web and a worker."""
    production = environment == "production"
    limits = _limits(environment)
    image = "ghcr.io/makapix/{}:1.0.0"
    return {
        **_every_application("makapix", environment, name),
        "database": {
            "mode": "dedicated",
            "name": "makapix" if production else "makapix_dev",
            "user": "makapix",
            "host_port": 55432 if production else 55433,
            "tuning": {} if production else dict(_DEVELOPMENT_TUNING),
        },
        "redis": {"mode": "dedicated", "db_index": 1 if production else 0},
        "mqtt": {
            "mode": "dedicated",
            "public_port": 8883 if production else 8884,
            "topic_prefix": "makapix" if production else "makapix-dev",
            "username": "makapix-api" if production else "makapix-dev-api",
            # Shared mode (004 §7 B): production's broker also serves development's account.
            "guests": (
                {"dev": {"username": "makapix-dev-api", "topic_prefix": "makapix-dev"}} if production else {}
            ),
        },
        "services": {
            "api": {
                "image": image.format("api"),
                "port": 8000,
                "route": "/api",
                "healthcheck": [
                    "CMD-SHELL",
                    "wget -qO- http://127.0.0.1:8000/api/health >/dev/null || exit 1",
                ],
                "resources": limits["api"],
            },
            "web": {
                "image": image.format("web"),
                "port": 3000,
                "route": "/",
                "healthcheck": ["CMD-SHELL", "wget -qO- http://127.0.0.1:3000/ >/dev/null || exit 1"],
                "resources": limits["web"],
            },
            "worker": {
                "image": image.format("api"),
                "command": ["celery", "-A", "app.tasks.celery_app", "worker", "--loglevel=info"],
                "queues": ["celery", "cpu", "gpu"],
                "concurrency": 4 if production else 1,
                "resources": limits["worker"],
            },
        },
        "application": {"variables": dict(_MAKAPIX_VARIABLES)},
        "sampling": {
            "enabled": not production,
            "config_file": "sampling/makapix.yaml",
            "reader_role": "makapix_sampler",
        },
        # Production is backed up before each release; migrations: alembic in the new api container.
        "release": {
            "backup": production,
            "backup_dir": f"/srv/makapix/backups/{name}",
            "migrations_command": ["alembic", "upgrade", "head"],
            "migrations_service": "api",
        },
    }


def clippyfront(environment: Environment, name: str) -> dict[str, Any]:
    """ClippyFront (000): one database ``clippy_front`` with table prefixes, one Redis with a DB per environment."""
    production = environment == "production"
    limits = _limits(environment)
    image = "ghcr.io/clippyfront/clippyfront:1.0.0"
    return {
        **_every_application("clippyfront", environment, name),
        "database": {
            "mode": "shared",
            "name": "clippy_front",
            "table_prefix": "opt_" if production else "dev_",
            "user": "clippyfront",
            # The shared server is production's; development publishes nothing.
            "host_port": 55432 if production else None,
            "tuning": {},
        },
        "redis": {"mode": "shared", "db_index": 1 if production else 0},
        "mqtt": None,
        "email": None,
        # The instance directory (uploads, renders, logs): CLIPPY_INSTANCE_PATH.
        "vault": {"container_path": "/app/instance"},
        "services": {
            "web": {
                "image": image,
                "command": ["gunicorn", "--bind", "0.0.0.0:8000", "main:app"],
                "port": 8000,
                "route": "/",
                # The image is Python: no wget/curl assumed.
                "healthcheck": [
                    "CMD",
                    "python3",
                    "-c",
                    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4)",
                ],
                "resources": limits["api"],
            },
            "worker": {
                "image": image,
                "command": ["celery", "-A", "app.tasks.celery_app", "worker", "--loglevel=info"],
                "queues": ["celery", "cpu", "gpu"],
                "concurrency": 2 if production else 1,
                "resources": limits["worker"],
            },
        },
        "application": {
            "variables": dict(_CLIPPYFRONT_VARIABLES),
            "admin": {"username": "admin", "email": "admin@clippyfront.com"},
        },
        "sampling": {
            "enabled": not production,
            "config_file": "examples/clippyfront/sampling.yaml",
            "reader_role": "clippyfront_sampler",
        },
        # 000 "Database Migrations": Flask-Migrate, run in the new web container.
        "release": {
            "backup": production,
            "backup_dir": f"/srv/clippyfront/backups/{name}",
            "migrations_command": ["flask", "db", "upgrade"],
            "migrations_service": "web",
        },
    }


# The applications with defaults in code, by Pulumi project name.
PROFILES: dict[str, Callable[[Environment, str], dict[str, Any]]] = {
    "makapix": makapix,
    "clippyfront": clippyfront,
}


def _every_application(project: str, environment: Environment, name: str) -> dict[str, Any]:
    """What every application's environment gets: names, infrastructure limits, the edge and the pairing.

    Production owns the shared Caddy and runs what development verified (by digest); development
    attaches to that Caddy, keeps crawlers out and checks itself against production.
    """
    production = environment == "production"
    limits = _limits(environment)
    return {
        "project": project,
        "name": name,
        "resources": {service: limits[service] for service in ("db", "redis", "mqtt")},
        "edge": {"caddy": "own" if production else "attach", "block_crawlers": not production},
        "isolation": {"peer_stack": None if production else "prod"},
        "promotion": {"from_stack": "dev" if production else None},
        # Host commands over SSH run in a clone of this repository, named for the application.
        "host": {"checkout": f"/opt/{project}-infra"},
    }


def _limits(environment: Environment) -> dict[str, dict[str, Any]]:
    return _PRODUCTION_LIMITS if environment == "production" else _DEVELOPMENT_LIMITS


# 004 §11: development limits; production gets room to breathe on a shared host.
_DEVELOPMENT_LIMITS: dict[str, dict[str, Any]] = {
    "api": {"cpus": 1.0, "memory": "512M", "memory_reservation": "256M"},
    "web": {"cpus": 0.5, "memory": "256M"},
    "worker": {"cpus": 1.0, "memory": "1G"},
    "db": {"cpus": 1.0, "memory": "1G"},
    "redis": {"cpus": 0.5, "memory": "256M"},
    "mqtt": {"cpus": 0.25, "memory": "128M"},
}
_PRODUCTION_LIMITS: dict[str, dict[str, Any]] = {
    "api": {"cpus": 2.0, "memory": "2G", "memory_reservation": "512M"},
    "web": {"cpus": 1.0, "memory": "1G"},
    "worker": {"cpus": 2.0, "memory": "4G"},
    "db": {"cpus": 2.0, "memory": "4G", "memory_reservation": "1G"},
    "redis": {"cpus": 1.0, "memory": "512M"},
    "mqtt": {"cpus": 0.5, "memory": "256M"},
}
# 004 §11: lower resource use of the development database.
_DEVELOPMENT_TUNING = {"shared_buffers": "128MB", "work_mem": "4MB", "max_connections": "50"}

# 004 §9: the variables Makapix's api, web and workers read.
_MAKAPIX_VARIABLES = {
    "ENVIRONMENT": "environment",
    "ROOT_DOMAIN": "domain.root",
    "WEB_DOMAIN": "domain.web",
    "BASE_URL": "domain.base_url",
    "NEXT_PUBLIC_API_BASE_URL": "domain.base_url",
    "VAULT_DOMAIN": "domain.vault",
    "DB_DATABASE": "database.name",
    "TABLE_PREFIX": "database.table_prefix",
    "DATABASE_URL": "database.url",
    "REDIS_URL": "redis.url",
    "CELERY_BROKER_URL": "redis.url",
    "CELERY_RESULT_BACKEND": "redis.url",
    "VAULT_HOST_PATH": "vault.host_path",
    "VAULT_PATH": "vault.container_path",
    "MQTT_HOST": "mqtt.host",
    "MQTT_PORT": "mqtt.port",
    "MQTT_TLS_ENABLED": "mqtt.tls_enabled",
    "MQTT_PUBLIC_PORT": "mqtt.public_port",
    "MQTT_TOPIC_PREFIX": "mqtt.topic_prefix",
    "MQTT_USERNAME": "mqtt.username",
    "RESEND_FROM_EMAIL": "email.from_address",
    "RESEND_API_KEY": "secret.resend_api_key",
    "GITHUB_OAUTH_CLIENT_ID": "oauth.github_client_id",
    "GITHUB_OAUTH_CLIENT_SECRET": "secret.github_oauth_client_secret",
    "GITHUB_REDIRECT_URI": "oauth.redirect_uri",
    "JWT_SECRET_KEY": "secret.jwt_secret",
}

# 000: the variables ClippyFront's gunicorn app and Celery workers read (.env), plus its admin user.
_CLIPPYFRONT_VARIABLES = {
    "TABLE_PREFIX": "database.table_prefix",
    "DATABASE_URL": "database.url",
    "REDIS_URL": "redis.url",
    "CELERY_BROKER_URL": "redis.url",
    "CELERY_RESULT_BACKEND": "redis.url",
    "CLIPPY_INSTANCE_PATH": "vault.container_path",
    "ADMIN_USERNAME": "admin.username",
    "ADMIN_EMAIL": "admin.email",
    "ADMIN_PASSWORD": "secret.admin_password",
}
