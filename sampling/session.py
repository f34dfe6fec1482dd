"""Connections to the source and target, and the configuration resolved against both catalogs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import sql

from cli_support.database_urls import mask_text, mask_url, url_password
from cli_support.readiness import login_refused
from sampling.anonymise import KEY_SETTING
from sampling.catalog import Catalog, Table, read_catalog, sees_backend, server_identity
from sampling.config import SamplingConfig
from sampling.errors import SamplingError
from sampling.model import Resolved, resolve, target_name, target_schemas

Connection = psycopg.Connection[tuple[Any, ...]]

#: How often a source backend checks, during a statement, that the sampler is still connected.
CLIENT_CHECK_INTERVAL = "1s"

#: Session settings on both sides, so values turned into text (keys, text COPY) read back identically.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


@contextmanager
def connect(
    url: str, role: str, *, read_only: bool = False, snapshot: str | None = None
) -> Iterator[Connection]:
    """A connection in a transaction; errors name the server with its password hidden.

    ``snapshot``: the transaction reads that exported snapshot (``pg_export_snapshot``).
    """
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as error:
        message = mask_text(str(error).strip(), url_password(url))
        if login_refused(error):
            message += (
                f" (the user or password of the {role} URL is wrong: --{role} or "
                f"SAMPLING_{role.upper()}_URL; not retried)"
            )
        raise SamplingError(f"cannot connect to the {role} server {mask_url(url)}: {message}") from None
    try:
        if read_only:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
        if snapshot is not None:  # must come before any query of the transaction
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        for name, value in SESSION_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        yield conn
    except BaseException:
        cancel_running(conn)
        raise
    finally:
        conn.close()  # without COMMIT: the open transaction is rolled back


def cancel_running(conn: Connection) -> None:
    """Ask the server to stop the statement ``conn`` runs, if any (closing alone does not stop it)."""
    if not conn.closed and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
        # The server gone or unreachable: nothing left to stop from here.
        with suppress(psycopg.Error, OSError):
            conn.cancel_safe(timeout=5)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C, so statements are cancelled on the servers.

    psycopg cancels the running statement when a wait is interrupted; a process killed by the
    default SIGTERM action would leave its statements running on the source.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def database_errors(*urls: str | None) -> Iterator[None]:
    """Turn a database error into a SamplingError whose message carries no password."""
    try:
        yield
    except psycopg.Error as error:
        passwords = [url_password(u) for u in urls if u]
        message = mask_text(str(error).strip(), *passwords)
        if isinstance(error, psycopg.errors.QueryCanceled) and "statement timeout" in message:
            raise SamplingError(
                f"a statement ran past its statement_timeout ({message}); the source's limit is "
                "source_statement_timeout in the sampling configuration"
            ) from None
        raise SamplingError(f"database error: {message}") from None


def anonymisation_key(config: SamplingConfig, resolved: Resolved) -> str:
    """The key of keyed pseudonyms from the environment ('' when no loaded column needs one)."""
    keyed = [
        f"{p.logical}.{c}" for p in resolved.tables.values() if p.loads for c, r in p.rules.items() if r.keyed
    ]
    if not keyed:
        return ""
    key = os.environ.get(config.anonymisation.key_env, "")
    if not key:
        raise SamplingError(
            f"the environment variable {config.anonymisation.key_env} is not set; it must hold the secret key "
            f"of the keyed pseudonyms used by {', '.join(keyed[:5])}"
        )
    return key


def source_settings(config: SamplingConfig, server_version: int) -> dict[str, str]:
    """The guards of a source session (production): bounded statements that end with their client.

    * ``jit`` off: the selections are short-lived joins on hashed key sets; JIT compilation of a
      large plan can take minutes and gigabytes in LLVM, where the backend ignores cancellation.
    * ``statement_timeout``: no statement runs past the configured limit.
    * ``client_connection_check_interval`` (PostgreSQL 14+): a running statement notices within a
      second that the sampler is gone (killed, even by SIGKILL) and stops.
    * ``lock_timeout``: no wait for a lock is longer than the configured one (helper connections too).
    * ``work_mem``: memory for the hashed key sets of the semi-joins.
    """
    settings = {
        "jit": "off",
        "statement_timeout": config.source_statement_timeout,
        "lock_timeout": config.lock_timeout,
        "work_mem": config.source_work_mem,
    }
    if server_version >= 140000:
        settings["client_connection_check_interval"] = CLIENT_CHECK_INTERVAL
    return settings


def prepare_source(src: Connection, config: SamplingConfig, key: str) -> None:
    """Session settings of the source: its guards (``source_settings``) and the anonymisation key."""
    for name, value in source_settings(config, src.info.server_version).items():
        src.execute("SELECT set_config(%s, %s, false)", (name, value))
    # Bound parameter: the key is in no query text, so not in the COPY statements the server may log.
    src.execute("SELECT set_config(%s, %s, false)", (KEY_SETTING, key))


@contextmanager
def snapshot_helpers(
    src: Connection, url: str, count: int, config: SamplingConfig, key: str
) -> Iterator[list[Connection]]:
    """``count`` more source connections, guarded like ``src`` and reading its snapshot.

    PostgreSQL exports snapshots from primaries and (since version 10) from standbys alike.
    """
    if count <= 0:
        yield []
        return
    row = src.execute("SELECT pg_export_snapshot()").fetchone()
    assert row is not None
    with ExitStack() as stack:
        helpers = []
        for number in range(1, count + 1):
            try:
                helper = stack.enter_context(connect(url, "source", read_only=True, snapshot=str(row[0])))
            except SamplingError as error:
                raise SamplingError(
                    f"{error} (opening source connection {number + 1} of {count + 1}: lower "
                    f"source_connections in {config.source_file} to read with fewer)"
                ) from None
            prepare_source(helper, config, key)
            helpers.append(helper)
        yield helpers


def mirror_catalog(config: SamplingConfig, source: Catalog) -> Catalog:
    """The target catalog ``plan`` assumes when it has no target: the source's, renamed by the mapping."""
    tables = {}
    for table in source.tables.values():
        name = target_name(config, table.name)
        tables[name] = Table(name, table.columns, table.primary_key, table.partitioned, ())
    return Catalog(tables)


def resolve_databases(config: SamplingConfig, src: Connection, tgt: Connection | None) -> Resolved:
    """The configuration checked against the source catalog and the target's (or its mirror)."""
    source_catalog = read_catalog(src, config.schemas, config.mapping.source_prefix)
    if tgt is None:
        return resolve(config, source_catalog, mirror_catalog(config, source_catalog), same_database=False)
    source_id = server_identity(src)
    same_database = sees_backend(tgt, source_id) and server_identity(tgt)[2] == source_id[2]
    target_catalog = read_catalog(tgt, target_schemas(config), config.mapping.target_prefix)
    return resolve(config, source_catalog, target_catalog, same_database)
