"""Connections to the source and target, and the configuration resolved against both catalogs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from sampling.anonymise import KEY_SETTING
from sampling.catalog import Catalog, Table, read_catalog, sees_backend, server_identity
from sampling.config import SamplingConfig
from sampling.errors import SamplingError, mask_text, mask_url, url_password
from sampling.model import Resolved, resolve, target_name, target_schemas
from sampling.readiness import login_refused

Connection = psycopg.Connection[tuple[Any, ...]]

#: Session settings on both sides, so values turned into text (keys, text COPY) read back identically.
SESSION_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}


@contextmanager
def connect(url: str, role: str, *, read_only: bool = False) -> Iterator[Connection]:
    """A connection in a transaction; errors name the server with its password hidden."""
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
        for name, value in SESSION_SETTINGS.items():
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        yield conn
    finally:
        conn.close()  # without COMMIT: the open transaction is rolled back


@contextmanager
def database_errors(*urls: str | None) -> Iterator[None]:
    """Turn a database error into a SamplingError whose message carries no password."""
    try:
        yield
    except psycopg.Error as error:
        passwords = [url_password(u) for u in urls if u]
        raise SamplingError(f"database error: {mask_text(str(error).strip(), *passwords)}") from None


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


def prepare_source(src: Connection, config: SamplingConfig, key: str) -> None:
    """Session settings of the source: memory for hashed key sets, and the anonymisation key."""
    src.execute("SELECT set_config('work_mem', %s, false)", (config.source_work_mem,))
    # Bound parameter: the key is in no query text, so not in the COPY statements the server may log.
    src.execute("SELECT set_config(%s, %s, false)", (KEY_SETTING, key))


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
