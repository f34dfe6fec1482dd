"""Atomicity under SIGKILL, a SELECT-only role on a read-only source, and table-prefix mapping in one database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from sampling import run, verify
from sampling.config import parse_config

Rows = Callable[[str, str], list[tuple[Any, ...]]]
StartRun = Callable[[dict[str, Any], str, str], subprocess.Popen[bytes]]
Execute = Callable[[str, str], None]


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def test_sigkill_midway_leaves_the_target_unchanged(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    start_sampler_run: StartRun,
    rows: Rows,
    execute: Execute,
) -> None:
    source, target = makapix
    # Slow the users COPY down (the source is ours here): by then the target tables are truncated.
    makapix_config["roots"][0]["where"] = "id IN (1, 2) AND pg_sleep(5) IS NOT NULL"
    process = start_sampler_run(makapix_config, source, target)
    deadline = time.monotonic() + 30
    truncated = False
    while time.monotonic() < deadline and not truncated:  # wait until the load transaction holds its locks
        time.sleep(0.2)
        truncated = bool(
            rows(
                target,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'users' AND l.mode = 'AccessExclusiveLock'",
            )[0][0]
        )
    assert truncated, "the run never reached the load"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the server notices the dead client and rolls back
    execute(
        target,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert rows(target, "SELECT id, email FROM users") == [(99, "stale@dev")]
    assert rows(target, "SELECT id FROM teams") == [(99,)]


def test_select_only_role_on_a_read_only_source(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    execute: Execute,
    rows: Rows,
    postgres_server_url: str,
) -> None:
    source, target = makapix
    dbname = urlsplit(source).path.lstrip("/")
    role = f"reader_{dbname}"
    execute(
        source,
        f"""
        CREATE ROLE {role} LOGIN PASSWORD 'reader-pw';
        GRANT USAGE ON SCHEMA public, audit TO {role};
        GRANT SELECT ON ALL TABLES IN SCHEMA public, audit TO {role};
        ALTER DATABASE {dbname} SET default_transaction_read_only = on;
    """,
    )
    try:
        reader = _with_user(source, role, "reader-pw")
        with psycopg.connect(reader) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TEMP TABLE probe (x int)")  # really read-only
        summary = run(parse_config(makapix_config), reader, target)
        assert summary.tables["public.users"].rows == 5
        assert rows(target, "SELECT id FROM posts ORDER BY 1") == [(100,), (101,), (102,), (103,)]
        assert verify(parse_config(makapix_config), reader, target).ok
    finally:
        execute(postgres_server_url, f"ALTER DATABASE {dbname} RESET default_transaction_read_only")
        execute(source, f"DROP OWNED BY {role}; DROP ROLE {role}")


def test_prefix_mapping_in_one_database_with_shared_enum(
    make_database: Callable[[], str],
    execute: Execute,
    rows: Rows,
    write_config: Callable[[dict[str, Any]], Path],
) -> None:
    """ClippyFront (seed 000): opt_* is production, dev_* development, in one database; enums are shared."""
    url = make_database()
    tables = """
        CREATE TABLE {p}users (id serial PRIMARY KEY, email text NOT NULL, role user_role NOT NULL);
        CREATE TABLE {p}projects (id serial PRIMARY KEY, owner_id int NOT NULL REFERENCES {p}users,
                                  status project_status NOT NULL, name text);
        CREATE TABLE {p}clips (id serial PRIMARY KEY, project_id int NOT NULL REFERENCES {p}projects, url text);
    """
    execute(
        url,
        "CREATE TYPE user_role AS ENUM ('user', 'admin'); "
        "CREATE TYPE project_status AS ENUM ('draft', 'ready');"
        + tables.format(p="opt_")
        + tables.format(p="dev_")
        + """
        INSERT INTO opt_users (email, role) SELECT 'u' || g || '@prod.example', 'user' FROM generate_series(1, 40) g;
        INSERT INTO opt_projects (owner_id, status, name) SELECT 1 + g % 40, 'ready', 'p' FROM generate_series(1, 80) g;
        INSERT INTO opt_clips (project_id, url) SELECT 1 + g % 80, 'https://x/' || g FROM generate_series(1, 160) g;
        INSERT INTO dev_users (email, role) VALUES ('old@dev', 'admin');
    """,
    )
    config = {
        "seed": 1,
        "roots": [{"table": "users", "fraction": 0.5}],
        "mapping": {"source_prefix": "opt_", "target_prefix": "dev_"},
        "anonymisation": {"email_domain": "clippy.dev"},
        "tables": {"users": {"columns": {"email": {"rule": "email"}}}},
    }
    summary = run(parse_config(config), url, url)
    users = rows(url, "SELECT id, email, role::text FROM dev_users ORDER BY id")
    assert 8 <= len(users) <= 32 and all(email == f"user{i}@clippy.dev" for i, email, _ in users)
    assert set(summary.tables) == {"public.dev_users", "public.dev_projects", "public.dev_clips"}
    assert rows(
        url,
        "SELECT count(*) FROM dev_projects p LEFT JOIN dev_users u ON u.id = p.owner_id WHERE u.id IS NULL",
    ) == [(0,)]
    assert rows(url, "SELECT count(*) FROM opt_users WHERE email LIKE '%@prod.example'") == [
        (40,)
    ]  # source intact
    expected = rows(
        url,
        "SELECT count(*) FROM opt_clips c JOIN opt_projects p ON p.id = c.project_id "
        "WHERE p.owner_id IN (SELECT id FROM dev_users)",
    )
    assert rows(url, "SELECT count(*) FROM dev_clips") == expected

    # Without the mapping the target tables would be the source tables: refused, nothing written.
    same = {
        **config,
        "mapping": {},
        "roots": [{"table": "opt_users", "fraction": 0.5}],
        "tables": {"opt_users": {"columns": {"email": {"rule": "email"}}}},
    }
    env = {**os.environ, "SAMPLING_SOURCE_URL": url, "SAMPLING_TARGET_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "sampling", "run", "--config", str(write_config(same))],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert result.returncode == 1
    assert "target table public.opt_users is the source table itself" in result.stderr
    assert rows(url, "SELECT count(*) FROM opt_users") == [(40,)]
