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
