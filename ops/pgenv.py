"""Connection settings for the PostgreSQL client programs, without putting secrets on argv.

``pg_dump``, ``pg_restore`` and ``psql`` read every connection parameter from ``PG*``
environment variables, so the password travels in ``PGPASSWORD`` of the child process
(readable only by the same user) and never on its command line, where ``ps`` shows it to all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from psycopg.conninfo import conninfo_to_dict

from cli_support.database_urls import mask_url, url_problem
from ops.errors import OpsError

# libpq connection parameter -> environment variable (PostgreSQL docs, "Environment Variables").
_LIBPQ_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


def connection_parameters(url: str, source: str) -> dict[str, str]:
    """The libpq parameters of ``url``; ``source`` names where it came from, for error messages."""
    problem = url_problem(url)
    if problem is not None:
        raise OpsError(f"{source}: the database URL is malformed: {problem}")
    parameters = conninfo_to_dict(url)
    if not parameters.get("dbname"):
        raise OpsError(f"{source}: names no database ({mask_url(url)}); add it as the URL path")
    return {key: str(value) for key, value in parameters.items() if value is not None and value != ""}


def libpq_environment(url: str, source: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a PostgreSQL client program connecting to ``url``.

    Starts from ``base`` (default: this process's environment) without any inherited ``PG*``
    variable, so that nothing but ``url`` decides where the program connects.
    """
    environment = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith("PG")
    }
    for key, value in connection_parameters(url, source).items():
        variable = _LIBPQ_ENVIRONMENT.get(key)
        if variable is None:
            raise OpsError(
                f"{source}: connection parameter {key!r} has no libpq environment variable; "
                "remove it from the URL"
            )
        environment[variable] = value
    return environment
