"""Backup and restore for real against the embedded PostgreSQL 18 (fixtures make_database, postgres_bin_dir)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from cli_support.database_urls import mask_url
from ops.backup import (
    backup_database,
    backup_name,
    list_backups,
    pg_dump_command,
    pg_restore_script_command,
    psql_command,
    restore_database,
)
from ops.errors import OpsError
from ops.pgenv import libpq_environment

SYSTEM_SCHEMAS = "nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"

SCHEMA_AND_DATA = """
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    bio text,
    avatar bytea,
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE posts (
    id bigserial PRIMARY KEY,
    owner_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title text NOT NULL,
    score numeric(10, 2)
);
CREATE INDEX posts_owner ON posts(owner_id);
CREATE VIEW post_counts AS SELECT owner_id, count(*) AS posts FROM posts GROUP BY owner_id;
CREATE SCHEMA audit;
CREATE TABLE audit.events (id serial PRIMARY KEY, happened text);
INSERT INTO users (email, bio, avatar, settings)
    SELECT 'user' || n || '@example.org',
           CASE WHEN n % 7 = 0 THEN NULL ELSE E'tab\\there, newline\\nthere, ünïcode ' || n END,
           decode(md5(n::text), 'hex'),
           jsonb_build_object('n', n, 'dark', n % 2 = 0)
    FROM generate_series(1, 3000) AS n;
INSERT INTO posts (owner_id, title, score)
    SELECT 1 + n % 3000, 'post ' || n, n / 7.0 FROM generate_series(1, 6000) AS n;
INSERT INTO audit.events (happened) VALUES ('created');
"""


def snapshot(url: str) -> dict[str, Any]:
    """Schema (schemas, columns, constraints, indexes, views, sequences) and every row of every table."""
    with psycopg.connect(url) as conn:
        schemas = conn.execute(
            f"SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace WHERE {SYSTEM_SCHEMAS} "
            "ORDER BY 1"
        ).fetchall()
        columns = conn.execute(
            "SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1, 2, ordinal_position"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            f"JOIN pg_namespace n ON n.oid = c.connamespace WHERE {SYSTEM_SCHEMAS} ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT schemaname, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        views = conn.execute(
            "SELECT table_schema, table_name, view_definition FROM information_schema.views "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        sequences = {}
        for schema, name in conn.execute(
            "SELECT sequence_schema, sequence_name FROM information_schema.sequences ORDER BY 1, 2"
        ).fetchall():
            query = sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))
            sequences[f"{schema}.{name}"] = conn.execute(query).fetchone()
        rows = {}
        for schema, table in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall():
            fetched = conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, table))
            ).fetchall()
            rows[f"{schema}.{table}"] = sorted(fetched, key=repr)
    return {
        "schemas": schemas,
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "views": views,
        "sequences": sequences,
        "rows": rows,
    }


def change_everything(url: str) -> None:
    """What a bad deploy might do: update, delete, add a table, alter a column, add a schema."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE users SET bio = 'overwritten' WHERE id % 3 = 0")
        conn.execute("DELETE FROM users WHERE id > 2500")
        conn.execute("INSERT INTO posts (owner_id, title) VALUES (1, 'new after backup')")
        conn.execute("CREATE TABLE migration_added (id int PRIMARY KEY)")
        conn.execute("ALTER TABLE posts ADD COLUMN draft boolean DEFAULT false")
        conn.execute("CREATE SCHEMA added_later")
        conn.execute("DROP VIEW post_counts")


@pytest.fixture
def database(make_database: Callable[[], str]) -> str:
    url = make_database()
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA_AND_DATA)
    return url


def test_backup_change_restore_gives_back_identical_schema_and_data(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(database)
    result = backup_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert result.backup.path.read_bytes()[:5] == b"PGDMP"
    assert result.backup.path.stat().st_mode & 0o077 == 0, "a dump of production must not be world-readable"

    change_everything(database)
    changed = snapshot(database)
    assert changed != before
    assert changed["rows"].keys() != before["rows"].keys()

    restored = restore_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert restored.backup == result.backup.path
    assert snapshot(database) == before


def test_restore_without_backup_option_takes_the_newest_and_backup_names_one(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    older_state = snapshot(database)
    day = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    older = backup_database(database, tmp_path, pg_bin=postgres_bin_dir, now=day)
    with psycopg.connect(database) as conn:
        conn.execute("DELETE FROM posts WHERE id > 10")
    newer_state = snapshot(database)
    backup_database(database, tmp_path, pg_bin=postgres_bin_dir, now=day + timedelta(hours=1))
    change_everything(database)

    restore_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert snapshot(database) == newer_state
    restore_database(database, tmp_path, pg_bin=postgres_bin_dir, backup=older.backup.path)
    assert snapshot(database) == older_state


def test_retention_keeps_the_n_newest_and_touches_nothing_else(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    database_name = urlsplit(database).path.lstrip("/")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ours = [tmp_path / backup_name(database_name, start + timedelta(days=day)) for day in range(6)]
    others = [
        tmp_path / backup_name("makapix_dev", start),  # another database's backup
        tmp_path / "notes.txt",
        tmp_path / f"{database_name}-latest.pgdump",  # not the timestamp pattern
        tmp_path / f"{ours[0].name}.bak",
        tmp_path / f".{ours[0].name}.partial",
    ]
    for path in ours + others:
        path.write_bytes(b"PGDMP placeholder")
    (tmp_path / "subdir").mkdir()

    result = backup_database(database, tmp_path, keep=3, pg_bin=postgres_bin_dir)

    kept = [backup.path for backup in list_backups(tmp_path, database_name)]
    assert kept == [result.backup.path, ours[5], ours[4]]
    assert sorted(result.deleted) == sorted(ours[:4])
    for path in others:
        assert path.exists(), f"{path.name} is not ours and must stay"
    assert (tmp_path / "subdir").is_dir()


def test_keep_must_be_positive(database: str, postgres_bin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="--keep must be at least 1"):
        backup_database(database, tmp_path, keep=0, pg_bin=postgres_bin_dir)
    assert list(tmp_path.iterdir()) == []


def test_not_a_custom_format_dump_is_refused_and_nothing_changes(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(database)
    plain = tmp_path / "plain.sql"
    plain.write_text("DROP TABLE users CASCADE;\n", encoding="utf-8")
    with pytest.raises(OpsError, match="not a pg_dump custom-format archive"):
        restore_database(database, tmp_path, backup=plain, pg_bin=postgres_bin_dir)
    with pytest.raises(OpsError, match="no such backup file"):
        restore_database(database, tmp_path, backup=tmp_path / "missing.pgdump", pg_bin=postgres_bin_dir)
    with pytest.raises(OpsError, match="no backup of database"):
        restore_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert snapshot(database) == before


@pytest.mark.parametrize("keep_fraction", [0.9, 0.5])
def test_truncated_dump_fails_inside_the_transaction_and_leaves_the_database_as_it_was(
    database: str, postgres_bin_dir: Path, tmp_path: Path, keep_fraction: float
) -> None:
    result = backup_database(database, tmp_path, pg_bin=postgres_bin_dir)
    data = result.backup.path.read_bytes()
    result.backup.path.write_bytes(data[: int(len(data) * keep_fraction)])
    change_everything(database)
    changed = snapshot(database)

    # The table of contents is intact, so the archive passes the pre-check and the failure
    # happens mid-restore, after the prelude dropped every schema: only the rollback saves the data.
    with pytest.raises(OpsError, match="rolled back, the database is unchanged"):
        restore_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert snapshot(database) == changed


def test_statement_failing_mid_script_rolls_everything_back(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    # A classic restore failure: a CHECK calls a function that names a table without its schema.
    # pg_restore runs with an empty search_path, so loading posts fails after users was
    # recreated and filled: psql stops there (ON_ERROR_STOP) and nothing may be committed.
    with psycopg.connect(database) as conn:
        conn.execute(
            "CREATE FUNCTION public.known_owner(bigint) RETURNS boolean LANGUAGE sql "
            "AS 'SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)'"
        )
        conn.execute("ALTER TABLE posts ADD CONSTRAINT owner_known CHECK (public.known_owner(owner_id))")
    backup_database(database, tmp_path, pg_bin=postgres_bin_dir)
    change_everything(database)
    changed = snapshot(database)

    with pytest.raises(
        OpsError, match=r'(?s)rolled back, the database is unchanged: ERROR:  relation "users" does not exist'
    ):
        restore_database(database, tmp_path, pg_bin=postgres_bin_dir)
    assert snapshot(database) == changed


def test_pg_restore_failing_after_a_complete_script_commits_nothing(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    # pg_restore may report an error (a read error at the end of the archive, say) after all the
    # statements it wrote were valid; COMMIT is only sent when it exited 0.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("pg_dump", "psql"):
        (bin_dir / program).symlink_to(postgres_bin_dir / program)
    failing = bin_dir / "pg_restore"
    failing.write_text(
        f'#!/bin/sh\n"{postgres_bin_dir / "pg_restore"}" "$@" || exit\n'
        'case "$*" in *--list*) exit 0;; esac\necho "pg_restore: simulated read error" >&2\nexit 1\n',
        encoding="utf-8",
    )
    failing.chmod(0o755)
    backups = tmp_path / "backups"
    backup_database(database, backups, pg_bin=bin_dir)
    change_everything(database)
    changed = snapshot(database)

    with pytest.raises(
        OpsError, match="rolled back, the database is unchanged: pg_restore: simulated read error"
    ):
        restore_database(database, backups, pg_bin=bin_dir)
    assert snapshot(database) == changed


# --- secrets ----------------------------------------------------------------------------


def _with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def password_url(database: str) -> Iterator[tuple[str, str]]:
    """The test database reached as a role that has a password (the embedded server trusts its socket)."""
    password = "S3cret-never-in-argv"
    role = f"owner_{urlsplit(database).path.lstrip('/')}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    yield _with_password(database, role, password), password
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _recording_bin_dir(real: Path, directory: Path, log: Path) -> Path:
    """pg_dump/pg_restore/psql wrappers that log their argv and whether PGPASSWORD was set."""
    directory.mkdir()
    for program in ("pg_dump", "pg_restore", "psql"):
        wrapper = directory / program
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf "%s argv:" "{program}" >> "{log}"\n'
            f'for arg in "$@"; do printf " [%s]" "$arg" >> "{log}"; done\n'
            f'printf " PGPASSWORD=%s\\n" "${{PGPASSWORD:-<unset>}}" >> "{log}.env"\n'
            f'echo >> "{log}"\n'
            f'exec "{real / program}" "$@"\n',
            encoding="utf-8",
        )
        wrapper.chmod(0o755)
    return directory


def test_password_travels_in_the_environment_never_in_argv_or_output(
    password_url: tuple[str, str], postgres_bin_dir: Path, tmp_path: Path
) -> None:
    url, password = password_url
    log = tmp_path / "argv.log"
    bin_dir = _recording_bin_dir(postgres_bin_dir, tmp_path / "bin", log)
    backups = tmp_path / "backups"
    env = {**os.environ, "OPS_DATABASE_URL": url, "OPS_PG_BIN": str(bin_dir)}

    runs = [
        subprocess.run(
            [sys.executable, "-m", "ops", *command, "--dir", str(backups), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        for command in (["backup"], ["restore"])
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert password not in run.stdout + run.stderr
    summary = json.loads(runs[0].stdout)
    assert Path(summary["backup"]).is_file()

    recorded = log.read_text(encoding="utf-8")
    assert "pg_dump argv:" in recorded and "psql argv:" in recorded and "pg_restore argv:" in recorded
    assert password not in recorded
    # pg_dump and psql connect, and got the password through the environment; pg_restore connects nowhere.
    environments = (tmp_path / "argv.log.env").read_text(encoding="utf-8").splitlines()
    assert environments.count(f" PGPASSWORD={password}") == 2


def test_built_commands_hold_no_connection_parameters(password_url: tuple[str, str], tmp_path: Path) -> None:
    url, password = password_url
    commands = [
        pg_dump_command(Path("/usr/bin/pg_dump"), tmp_path / "x"),
        pg_restore_script_command(Path("/usr/bin/pg_restore"), tmp_path / "x"),
        psql_command(Path("/usr/bin/psql")),
    ]
    for command in commands:
        assert not any(password in argument for argument in command)
        assert not any(argument.startswith(("-d", "--dbname", "-h", "--host", "-U")) for argument in command)
    environment = libpq_environment(url, "OPS_DATABASE_URL", base={"PGPASSWORD": "inherited", "PATH": "/bin"})
    assert environment["PGPASSWORD"] == password
    assert environment["PATH"] == "/bin"


def test_failed_backup_leaves_no_file_and_masks_the_password(
    password_url: tuple[str, str], postgres_bin_dir: Path, tmp_path: Path
) -> None:
    url, password = password_url
    missing = urlunsplit(urlsplit(url)._replace(path="/no_such_database"))
    with pytest.raises(OpsError) as raised:
        backup_database(missing, tmp_path, pg_bin=postgres_bin_dir)
    message = str(raised.value)
    assert "pg_dump" in message and "no_such_database" in message and "no backup was written" in message
    assert password not in message and "***" in message
    assert list(tmp_path.iterdir()) == [], "no partial file may be left behind"


def test_cli_refuses_without_database_url(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "OPS_DATABASE_URL"}
    run = subprocess.run(
        [sys.executable, "-m", "ops", "backup", "--dir", str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "OPS_DATABASE_URL is not set" in run.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://owner:pa%40ss@db:5432/makapix", "postgresql://owner:***@db:5432/makapix"),
        (
            "postgresql://owner@db/makapix?password=x&sslmode=require",
            "postgresql://owner@db/makapix?password=***&sslmode=require",
        ),
        ("host=db password='a b' dbname=makapix", "host=db password=*** dbname=makapix"),
        ("postgresql://db/makapix", "postgresql://db/makapix"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_backup_directory_that_cannot_be_created_is_named_with_what_to_do(
    database: str, postgres_bin_dir: Path, tmp_path: Path
) -> None:
    """Issue 15: the error was a bare "[Errno 20] Not a directory: ..."."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(OpsError) as raised:
        backup_database(database, blocker / "backups", pg_bin=postgres_bin_dir)
    message = str(raised.value)
    assert f"--dir {blocker / 'backups'}: cannot create the backup directory (Not a directory)" in message
    assert "pass another --dir (release.backup_dir in the stack file); no backup was written" in message
    with pytest.raises(OpsError, match=r"--dir .*a-file: exists and is not a directory"):
        backup_database(database, blocker, pg_bin=postgres_bin_dir)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "postgres//owner:Hunter2pw@db/makapix",
            "it is not a PostgreSQL URL; write it as postgresql://USER:",
        ),
        ("postgresql://owner:Hunter2pw@db:54x2/makapix", "its port '54x2' is not a number from 1 to 65535"),
        ("postgresql://owner:Hunter2pw@db:70000/makapix", "its port '70000' is not a number from 1 to 65535"),
    ],
    ids=["not-a-url", "port-not-a-number", "port-out-of-range"],
)
def test_a_malformed_url_is_refused_in_our_words_without_the_password(
    tmp_path: Path, url: str, problem: str
) -> None:
    """Issue 15: libpq's wording ("missing \"=\" after ...") named neither the variable nor the fix."""
    run = subprocess.run(
        [sys.executable, "-m", "ops", "backup", "--dir", str(tmp_path / "b"), "--wait", "5"],
        env={**os.environ, "OPS_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"OPS_DATABASE_URL: the database URL is malformed: {problem}" in run.stderr
    assert "Hunter2pw" not in run.stderr + run.stdout
    assert "connection info string" not in run.stderr and "ai_socktype" not in run.stderr
    assert not (tmp_path / "b").exists()


# --- an interrupted backup leaves nothing running and nothing behind (issue 15) ------------------

# A pg_dump stand-in: writes part of a dump to --file, records its pid, then hangs (a dump of a big database).
SLOW_PG_DUMP = """#!{python}
import os, sys, time
target = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--file="))
with open(target, "wb") as dump:
    dump.write(b"PGDMP" + b"x" * 4096)
with open(os.environ["STAND_IN_PID_FILE"], "w") as pid_file:
    pid_file.write(str(os.getpid()))
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_until(condition: Callable[[], bool], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _partials(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".pgdump.partial"))


@pytest.fixture
def slow_pg_bin(tmp_path: Path) -> Path:
    directory = tmp_path / "slow-bin"
    directory.mkdir()
    program = directory / "pg_dump"
    program.write_text(SLOW_PG_DUMP.format(python=sys.executable))
    program.chmod(0o755)
    return directory


def _start_backup(database: str, backups: Path, pg_bin: Path, pid_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "backup", "--dir", str(backups), "--pg-bin", str(pg_bin), "--keep", "1"],
        env={**os.environ, "OPS_DATABASE_URL": database, "STAND_IN_PID_FILE": str(pid_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_an_interrupted_backup_stops_pg_dump_and_the_next_removes_what_is_left(
    database: str, postgres_bin_dir: Path, slow_pg_bin: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    backups, pid_file = tmp_path / "backups", tmp_path / "pg_dump.pid"
    backup = _start_backup(database, backups, slow_pg_bin, pid_file)
    try:
        assert _wait_until(lambda: pid_file.exists() and pid_file.read_text() != ""), backup.stderr
        pg_dump = int(pid_file.read_text())
        assert _partials(backups), "the stand-in writes its partial dump first"
        backup.send_signal(stop)
        backup.wait(timeout=15)
        assert _wait_until(lambda: not _alive(pg_dump)), "pg_dump kept running after the backup died"
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    if stop == signal.SIGTERM:
        assert backup.returncode == 1
        assert "stopped by signal SIGTERM; no backup was written" in (backup.stderr.read() if backup.stderr else "")
        assert _partials(backups) == [], "SIGTERM: the partial file is removed at once"
    else:
        assert len(_partials(backups)) == 1, "SIGKILL leaves the partial file (nothing can run)"
    # The next backup (a real one) removes the stale partial; retention never counted it.
    result = backup_database(database, backups, keep=1, pg_bin=postgres_bin_dir)
    assert _partials(backups) == []
    assert sorted(p.name for p in backups.iterdir() if not p.name.startswith(".")) == [result.backup.path.name]


def test_a_second_backup_into_the_same_directory_waits_for_none_and_removes_nothing_of_the_first(
    database: str, postgres_bin_dir: Path, slow_pg_bin: Path, tmp_path: Path
) -> None:
    backups, pid_file = tmp_path / "backups", tmp_path / "pg_dump.pid"
    backup = _start_backup(database, backups, slow_pg_bin, pid_file)
    try:
        assert _wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        running = _partials(backups)
        with pytest.raises(OpsError, match=r"another backup is running there .*wait for it"):
            backup_database(database, backups, keep=1, pg_bin=postgres_bin_dir)
        assert _partials(backups) == running, "the running backup's partial file is not a stale one"
    finally:
        backup.send_signal(signal.SIGTERM)
        backup.wait(timeout=15)
