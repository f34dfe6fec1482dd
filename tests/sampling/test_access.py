"""``sampling.access``: the sampler's SELECT-only production role, on a real PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from sampling.access import grant_reader
from sampling.errors import SamplingError

ROOT = Path(__file__).parents[2]

SCHEMA = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);
CREATE SCHEMA audit;
CREATE TABLE audit.events (id serial PRIMARY KEY, what text);
INSERT INTO users (email) VALUES ('ada@example.com');
INSERT INTO audit.events (what) VALUES ('login');
"""


def as_role(url: str, role: str) -> str:
    """``url`` with another user (the test server trusts local connections: no password needed)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` verifier is ``password``'s (RFC 5802)."""
    method, iterations_salt, keys = verifier.split("$")
    assert method == "SCRAM-SHA-256"
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


@pytest.fixture
def production(make_database: Callable[[], str], postgres_server_url: str) -> Iterator[tuple[str, str]]:
    """(owner URL of a database with tables, a fresh role name); the role is dropped afterwards."""
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    role = f"sampler_{uuid.uuid4().hex[:8]}"
    yield url, role
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            # Privileges, default privileges and the CONNECT grant go first; the role is cluster-wide.
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def stored_verifier(url: str, role: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert row is not None
    return str(row[0])


def test_reader_selects_everything_and_writes_nothing(production: tuple[str, str]) -> None:
    owner, role = production
    summary = grant_reader(owner, role, "first-password", ["public", "audit"])
    assert summary.created and summary.schemas == ("public", "audit")

    with psycopg.connect(as_role(owner, role), autocommit=True) as reader:
        assert reader.execute("SELECT email FROM users").fetchall() == [("ada@example.com",)]
        assert reader.execute("SELECT what FROM audit.events").fetchall() == [("login",)]
        assert reader.execute("SELECT last_value FROM users_id_seq").fetchone() == (1,)
        assert reader.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        # The setting is defence in depth; the privileges must hold even when the session turns it off.
        reader.execute("SET default_transaction_read_only = off")
        for statement in (
            "INSERT INTO users (id, email) VALUES (99, 'x@example.com')",
            "UPDATE users SET email = 'x'",
            "DELETE FROM users",
            "TRUNCATE users",
            "DELETE FROM audit.events",
            "CREATE TABLE public.mine (id int)",
            "CREATE TABLE audit.mine (id int)",
            "SELECT nextval('users_id_seq')",
            "CREATE SCHEMA mine",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(statement)
    with psycopg.connect(owner) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_reader_sees_tables_created_later(production: tuple[str, str]) -> None:
    owner, role = production
    grant_reader(owner, role, "pw", ["public"])
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE later (id serial PRIMARY KEY, note text); INSERT INTO later (note) VALUES ('new')"
        )
    with psycopg.connect(as_role(owner, role), autocommit=True) as reader:
        assert reader.execute("SELECT note FROM later").fetchall() == [("new",)]
        reader.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("INSERT INTO later (id, note) VALUES (99, 'no')")


def test_rerunning_sets_the_new_password_and_removes_granted_writes(production: tuple[str, str]) -> None:
    owner, role = production
    grant_reader(owner, role, "first-password", ["public"])
    first = stored_verifier(owner, role)
    assert scram_matches(first, "first-password") and not scram_matches(first, "second-password")
    with psycopg.connect(owner, autocommit=True) as conn:  # someone granted more by hand
        conn.execute(sql.SQL("GRANT INSERT ON users TO {}").format(sql.Identifier(role)))

    summary = grant_reader(owner, role, "second-password", ["public"])

    assert not summary.created
    second = stored_verifier(owner, role)
    assert scram_matches(second, "second-password") and not scram_matches(second, "first-password")
    with psycopg.connect(as_role(owner, role), autocommit=True) as reader:
        reader.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("INSERT INTO users (id, email) VALUES (99, 'x')")


def test_refuses_the_owner_a_role_owning_tables_and_a_missing_schema(production: tuple[str, str]) -> None:
    owner, role = production
    with psycopg.connect(owner) as conn:
        current = conn.execute("SELECT current_user").fetchone()
    assert current is not None
    with pytest.raises(SamplingError, match="is the role this command connects as"):
        grant_reader(owner, current[0], "pw", ["public"])
    with pytest.raises(SamplingError, match="schema\\(s\\) nowhere do not exist"):
        grant_reader(owner, role, "pw", ["public", "nowhere"])
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO {}").format(sql.Identifier(role))
        )
    with pytest.raises(SamplingError, match="owns 1 table"):
        grant_reader(owner, role, "pw", ["public"])
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("DROP TABLE owned")
        conn.execute(sql.SQL("GRANT pg_write_all_data TO {}").format(sql.Identifier(role)))
    with pytest.raises(SamplingError, match="member of pg_write_all_data"):
        grant_reader(owner, role, "pw", ["public"])


def test_command_line_reads_url_and_password_from_the_environment(production: tuple[str, str]) -> None:
    owner, role = production
    password = "cli-password-not-printed"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sampling",
            "grant-reader",
            "--role",
            role,
            "--schema",
            "public",
            "--wait",
            "5",
        ],
        env={**os.environ, "SAMPLING_OWNER_URL": owner, "SAMPLING_READER_PASSWORD": password},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"role {role} created" in done.stderr and password not in done.stderr + done.stdout
    assert scram_matches(stored_verifier(owner, role), password)

    missing = subprocess.run(
        [sys.executable, "-m", "sampling", "grant-reader", "--role", role],
        env={key: value for key, value in os.environ.items() if not key.startswith("SAMPLING_")},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert missing.returncode == 2 and "SAMPLING_OWNER_URL" in missing.stderr


def test_a_malformed_owner_url_is_a_usage_error_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sampling", "grant-reader", "--wait", "30"],
        env={
            **os.environ,
            "SAMPLING_OWNER_URL": "postgresql://owner:0wnerPw@db:port/makapix",
            "SAMPLING_READER_PASSWORD": "reader-pw",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert result.returncode == 2
    assert (
        "error: SAMPLING_OWNER_URL: the production database URL is malformed: its port 'port'"
        in result.stderr
    )
    assert "0wnerPw" not in result.stderr


# What a careless database hands to PUBLIC, i.e. to every role, the reader too (issue 15: an INSERT was
# committed through such a grant). Each line opens one kind of write.
PUBLIC_WRITE_GRANTS = """
GRANT INSERT, UPDATE, DELETE, TRUNCATE ON users TO PUBLIC;
GRANT USAGE, UPDATE ON SEQUENCE users_id_seq TO PUBLIC;
CREATE SCHEMA open_to_all;
GRANT CREATE, USAGE ON SCHEMA open_to_all TO PUBLIC;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE FUNCTION add_event(what text) RETURNS void LANGUAGE sql SECURITY DEFINER
    AS 'INSERT INTO audit.events (what) VALUES (what)';
GRANT USAGE ON SCHEMA audit TO PUBLIC;
"""


def test_the_reader_can_write_nothing_not_even_what_public_may(production: tuple[str, str]) -> None:
    owner, role = production
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(PUBLIC_WRITE_GRANTS)
        database = conn.execute("SELECT current_database()").fetchone()
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO PUBLIC").format(sql.Identifier(database[0])))
    summary = grant_reader(owner, role, "pw", ["public", "audit"])
    revoked = "\n".join(summary.closed)
    assert f'REVOKE CREATE, TEMPORARY ON DATABASE {database[0]} FROM PUBLIC, "{role}";' in revoked
    assert f'REVOKE EXECUTE ON FUNCTION lo_create(oid) FROM PUBLIC, "{role}";' in revoked

    writes = {
        "insert where PUBLIC may": "INSERT INTO users (id, email) VALUES (99, 'x@example.com')",
        "update where PUBLIC may": "UPDATE users SET email = 'x'",
        "delete where PUBLIC may": "DELETE FROM users",
        "truncate where PUBLIC may": "TRUNCATE users",
        "nextval": "SELECT nextval('users_id_seq')",
        "setval": "SELECT setval('users_id_seq', 1000)",
        "temporary table": "CREATE TEMPORARY TABLE scratch (id int)",
        "table in a schema open to PUBLIC": "CREATE TABLE open_to_all.mine (id int)",
        "table in public": "CREATE TABLE public.mine (id int)",
        "schema": "CREATE SCHEMA mine",
        "large object": "SELECT lo_create(0)",
        "large object, old call": "SELECT lo_creat(-1)",
        "large object from bytes": "SELECT lo_from_bytea(0, 'data')",
        "through a SECURITY DEFINER function": "SELECT add_event('by the reader')",
    }
    refused = {}
    with psycopg.connect(as_role(owner, role), autocommit=True) as reader:
        # default_transaction_read_only is defence in depth; the privileges must hold without it.
        reader.execute("SET default_transaction_read_only = off")
        for kind, statement in writes.items():
            try:
                reader.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                refused[kind] = True
            else:
                refused[kind] = False
    assert [kind for kind, was_refused in refused.items() if not was_refused] == []
    with psycopg.connect(owner) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM audit.events").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_a_write_path_the_owner_cannot_close_is_refused_with_the_statements_for_a_superuser(
    make_database: Callable[[], str], postgres_server_url: str
) -> None:
    """An owner that is not a superuser cannot revoke EXECUTE on lo_create from PUBLIC: refused, nothing kept."""
    url = make_database()
    suffix = uuid.uuid4().hex[:8]
    owner_role, reader_role = f"owner_{suffix}", f"sampler_{suffix}"
    with psycopg.connect(url, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner_role)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database[0]), sql.Identifier(owner_role)
            )
        )
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner_role)))
    owner = as_role(url, owner_role)
    try:
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id int PRIMARY KEY)")
        with pytest.raises(SamplingError) as refused:
            grant_reader(owner, reader_role, "pw", ["public"])
        message = str(refused.value)
        assert f"role '{reader_role}' could still write in database '{database[0]}'" in message
        assert f'REVOKE EXECUTE ON FUNCTION lo_create(oid) FROM PUBLIC, "{reader_role}";' in message
        assert "then run this command again" in message
        assert "TEMPORARY" not in message, "the owner closes what it owns itself"
        with psycopg.connect(url) as conn:
            assert (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (reader_role,)).fetchone() is None
            )
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database[0]))
            )
            for name in (reader_role, owner_role):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
