"""The sampler's read-only role in the production database: ``python -m sampling grant-reader``.

The prod stack runs this on the Docker host after its database container (components/sampling_reader.py).
It connects as the database owner (``SAMPLING_OWNER_URL``) and, in one transaction, creates or updates
the role so that it can log in with the password in ``SAMPLING_READER_PASSWORD`` and do nothing but
read the application's schemas:

- ``LOGIN`` with no other attribute (no superuser, createdb, createrole, replication, bypassrls);
- ``default_transaction_read_only = on`` (defence in depth: the privileges below are the real limit);
- ``CONNECT`` on the database, ``USAGE`` on each schema, ``SELECT`` on every table and sequence in them,
  every write privilege (``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``REFERENCES``, ``TRIGGER``,
  sequence ``UPDATE``) and schema ``CREATE`` revoked from it;
- default privileges, so tables and sequences that the owner (or the existing tables' owners) create
  later are readable too.

Privileges granted to PUBLIC apply to every role, the reader too, and PostgreSQL grants PUBLIC some
write paths by default. So, last, it closes every write path the role still has *on this database*,
whoever granted it, by revoking it from PUBLIC and from the role (``WRITE_PATHS_SQL`` finds them):

- ``TEMPORARY`` and ``CREATE`` on the database (PUBLIC has ``TEMPORARY`` by default);
- ``CREATE`` on any schema (PUBLIC has it on ``public`` before PostgreSQL 15);
- ``INSERT``, ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``REFERENCES``, ``TRIGGER`` on any table or view,
  ``USAGE``/``UPDATE`` on any sequence (``nextval``, ``setval``);
- ``EXECUTE`` on the functions that create large objects (``lo_create``, ``lo_creat``,
  ``lo_from_bytea``: PUBLIC by default, no table privilege needed), and on every ``SECURITY DEFINER``
  function outside the system schemas (it runs with its owner's rights).

Then it looks again: a path it could not close (the connecting role is not the owner of that object,
e.g. the large-object functions when it is not a superuser) makes the command fail, the transaction
rolled back, with the exact ``REVOKE`` statements a superuser must run first.  Left open by design
(they change no application data): ``ALTER ROLE`` of its own session defaults, ``LISTEN``/``NOTIFY``,
advisory locks.

Running it again is safe and sets the new password.  The password reaches the server only as a
SCRAM-SHA-256 verifier computed by libpq on the client, never in clear text.  It refuses a role that is
the connecting user, owns objects, or is a member of other roles: altering such a role could lock out
the application or leave the reader with inherited write access.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cli_support.commands import Command, ExitCode, run_command
from cli_support.database_urls import mask_text, mask_url, url_password, url_problem
from sampling.errors import SamplingError
from sampling.readiness import wait_until_accepting

OWNER_URL_ENV = "SAMPLING_OWNER_URL"
PASSWORD_ENV = "SAMPLING_READER_PASSWORD"
DEFAULT_ROLE = "makapix_sampler"
WRITE_PRIVILEGES = sql.SQL("INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER")
# Functions that create a large object; EXECUTE is PUBLIC's by default and no other privilege is needed.
LARGE_OBJECT_CREATORS = ("lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)")

# Every way the role %(role)s can still write in this database: (kind, object, privileges).
# kind: database / schema / relation / sequence / function; object: a name ready for SQL.
WRITE_PATHS_SQL = """
WITH user_schemas AS (
    SELECT oid, nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
)
SELECT 'database', quote_ident(current_database()),
       concat_ws(', ', CASE WHEN has_database_privilege(%(role)s, current_database(), 'CREATE') THEN 'CREATE' END,
                       CASE WHEN has_database_privilege(%(role)s, current_database(), 'TEMPORARY') THEN 'TEMPORARY' END)
UNION ALL
SELECT 'schema', quote_ident(nspname), 'CREATE'
FROM user_schemas WHERE has_schema_privilege(%(role)s, oid, 'CREATE')
UNION ALL
SELECT 'relation', format('%%I.%%I', s.nspname, c.relname),
       concat_ws(', ', CASE WHEN has_any_column_privilege(%(role)s, c.oid, 'INSERT') THEN 'INSERT' END,
                       CASE WHEN has_any_column_privilege(%(role)s, c.oid, 'UPDATE') THEN 'UPDATE' END,
                       CASE WHEN has_table_privilege(%(role)s, c.oid, 'DELETE') THEN 'DELETE' END,
                       CASE WHEN has_table_privilege(%(role)s, c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
                       CASE WHEN has_any_column_privilege(%(role)s, c.oid, 'REFERENCES') THEN 'REFERENCES' END,
                       CASE WHEN has_table_privilege(%(role)s, c.oid, 'TRIGGER') THEN 'TRIGGER' END)
FROM pg_class c JOIN user_schemas s ON s.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT 'sequence', format('%%I.%%I', s.nspname, c.relname),
       concat_ws(', ', CASE WHEN has_sequence_privilege(%(role)s, c.oid, 'USAGE') THEN 'USAGE' END,
                       CASE WHEN has_sequence_privilege(%(role)s, c.oid, 'UPDATE') THEN 'UPDATE' END)
FROM pg_class c JOIN user_schemas s ON s.oid = c.relnamespace WHERE c.relkind = 'S'
UNION ALL
SELECT 'function', signature::regprocedure::text, 'EXECUTE'
FROM unnest(%(large_object_creators)s::text[]) AS signature
WHERE has_function_privilege(%(role)s, signature::regprocedure, 'EXECUTE')
UNION ALL
SELECT 'function', p.oid::regprocedure::text, 'EXECUTE'
FROM pg_proc p JOIN user_schemas s ON s.oid = p.pronamespace
WHERE p.prosecdef AND has_function_privilege(%(role)s, p.oid, 'EXECUTE')
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class WritePath:
    """A write the role could do: ``privileges`` on ``target`` (``DATABASE x``, ``TABLE s.t``...)."""

    target: str
    privileges: str

    def revoke(self, role: str) -> str:
        """The statement closing it, for this role and for PUBLIC (a grant to PUBLIC reaches every role)."""
        return f"REVOKE {self.privileges} ON {self.target} FROM PUBLIC, {sql.Identifier(role).as_string()};"


_TARGET_KEYWORD = {
    "database": "DATABASE",
    "schema": "SCHEMA",
    "relation": "TABLE",
    "sequence": "SEQUENCE",
    "function": "FUNCTION",
}


def open_write_paths(conn: psycopg.Connection[Any], role: str) -> list[WritePath]:
    """Every privilege that lets ``role`` write in the connected database, whoever granted it."""
    rows = conn.execute(
        WRITE_PATHS_SQL, {"role": role, "large_object_creators": list(LARGE_OBJECT_CREATORS)}
    ).fetchall()
    return [
        WritePath(f"{_TARGET_KEYWORD[kind]} {name}", privileges)
        for kind, name, privileges in rows
        if privileges
    ]


def close_write_paths(conn: psycopg.Connection[Any], role: str) -> tuple[list[WritePath], list[WritePath]]:
    """Revoke every open write path; returns (closed, still open: the connecting role may not revoke it)."""
    found = open_write_paths(conn, role)
    for path in found:
        # A REVOKE by a role without the grant option only warns: the second look below decides.
        conn.execute(path.revoke(role).encode())
    remaining = open_write_paths(conn, role)
    return [path for path in found if path not in remaining], remaining


@dataclass(frozen=True)
class GrantSummary:
    role: str
    created: bool
    database: str
    schemas: tuple[str, ...]
    default_privileges_for: tuple[str, ...]
    # What was revoked from PUBLIC (and the role) so that the role can write nothing.
    closed: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "created": self.created,
            "database": self.database,
            "schemas": list(self.schemas),
            "default_privileges_for": list(self.default_privileges_for),
            "revoked": list(self.closed),
        }


def _refuse_unsafe_role(conn: psycopg.Connection[Any], role: str) -> None:
    """Refuse a role whose alteration would harm the application or leave write access behind."""
    current = conn.execute("SELECT current_user").fetchone()
    if current is not None and current[0] == role:
        raise SamplingError(
            f"the reader role {role!r} is the role this command connects as (the database owner); "
            "choose another name for sampling.reader_role"
        )
    member_of = [
        row[0]
        for row in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1",
            (role,),
        )
    ]
    if member_of:
        raise SamplingError(
            f"role {role!r} is a member of {', '.join(member_of)} and could inherit write access from it; "
            f"revoke that membership (REVOKE {member_of[0]} FROM {role}) or choose another sampling.reader_role"
        )
    owns = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = %s", (role,)
    ).fetchone()
    if owns is not None and owns[0]:
        raise SamplingError(
            f"role {role!r} owns {owns[0]} table(s) or other relations in this database, so it can write them; "
            "it cannot be the read-only reader: choose another sampling.reader_role"
        )


def _table_owners(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """The connecting role plus the owners of existing tables it may act for (who create tables later)."""
    rows = conn.execute(
        """
        SELECT DISTINCT r.rolname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          AND pg_has_role(current_user, r.oid, 'MEMBER')
        UNION SELECT current_user ORDER BY 1
        """,
        (list(schemas),),
    ).fetchall()
    return [row[0] for row in rows]


def grant_reader(owner_url: str, role: str, password: str, schemas: Sequence[str]) -> GrantSummary:
    """Create or update ``role`` as a SELECT-only login of the database ``owner_url`` points at."""
    if not password:
        raise SamplingError(f"no password for role {role!r}: set {PASSWORD_ENV}")
    if not schemas:
        raise SamplingError("no schema given: name at least one schema the sampler reads (e.g. public)")
    try:
        with psycopg.connect(owner_url, connect_timeout=10) as conn:
            _refuse_unsafe_role(conn, role)
            missing = [
                schema
                for schema in schemas
                if conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone() == (None,)
            ]
            if missing:
                raise SamplingError(
                    f"schema(s) {', '.join(missing)} do not exist in the production database; "
                    "fix sampling.reader_schemas in the prod stack file"
                )
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
            name = sql.Identifier(role)
            attributes = sql.SQL(
                "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT PASSWORD {}"
            ).format(sql.Literal(verifier.decode()))
            verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
            conn.execute(sql.SQL("{} {} WITH {}").format(verb, name, attributes))
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(name))
            database = conn.execute("SELECT current_database()").fetchone()
            assert database is not None
            conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database[0]), name)
            )
            owners = _table_owners(conn, schemas)
            for schema in schemas:
                namespace = sql.Identifier(schema)
                statements = [
                    "REVOKE CREATE ON SCHEMA {schema} FROM {role}",
                    "GRANT USAGE ON SCHEMA {schema} TO {role}",
                    "REVOKE {writes} ON ALL TABLES IN SCHEMA {schema} FROM {role}",
                    "REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
                    "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
                    "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
                ]
                for statement in statements:
                    conn.execute(
                        sql.SQL(statement).format(schema=namespace, role=name, writes=WRITE_PRIVILEGES)
                    )
                for owner in owners:
                    for kind in ("TABLES", "SEQUENCES"):
                        conn.execute(
                            sql.SQL(
                                "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} "
                                "GRANT SELECT ON {kind} TO {role}"
                            ).format(
                                owner=sql.Identifier(owner), schema=namespace, kind=sql.SQL(kind), role=name
                            )
                        )
            closed, still_open = close_write_paths(conn, role)
            if still_open:
                fix = "\n".join(f"  {path.revoke(role)}" for path in still_open)
                raise SamplingError(
                    f"role {role!r} could still write in database {database[0]!r} and the connecting role may "
                    f"not revoke it; nothing was changed. Have a superuser run, in that database:\n{fix}\n"
                    "then run this command again"
                )
    except psycopg.Error as error:
        message = mask_text(str(error).strip(), url_password(owner_url), password)
        raise SamplingError(f"granting read access on {mask_url(owner_url)} failed: {message}") from None
    return GrantSummary(
        role,
        not exists,
        database[0],
        tuple(schemas),
        tuple(owners),
        tuple(path.revoke(role) for path in closed),
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", default=DEFAULT_ROLE, help=f"role name (default {DEFAULT_ROLE})")
    parser.add_argument(
        "--schema",
        action="append",
        dest="schemas",
        help="schema the sampler reads (repeatable; default public)",
    )
    parser.add_argument(
        "--wait", type=float, default=120.0, help="seconds to wait for the database to accept connections"
    )


def _run(args: argparse.Namespace) -> int:
    owner_url = os.environ.get(OWNER_URL_ENV, "")
    password = os.environ.get(PASSWORD_ENV, "")
    if not owner_url or not password:
        print(
            f"error: set {OWNER_URL_ENV} and {PASSWORD_ENV} (never pass them as arguments)", file=sys.stderr
        )
        return ExitCode.USAGE
    problem = url_problem(owner_url)
    if problem is not None:
        print(f"error: {OWNER_URL_ENV}: the production database URL is malformed: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        wait_until_accepting(owner_url, args.wait, "production", variable=OWNER_URL_ENV)
        summary = grant_reader(owner_url, args.role, password, args.schemas or ["public"])
    except SamplingError as error:
        print(f"error: {mask_text(str(error), password)}", file=sys.stderr)
        return ExitCode.FAILED
    print(
        f"role {summary.role} {'created' if summary.created else 'updated'}: SELECT on schema(s) "
        f"{', '.join(summary.schemas)} of database {summary.database}, read-only, new password set",
        file=sys.stderr,
    )
    for statement in summary.closed:
        print(f"closed a write path: {statement}", file=sys.stderr)
    return ExitCode.OK


COMMAND = Command(
    "grant-reader",
    "create the read-only sampling role in production (sampling.access)",
    _add_arguments,
    _run,
    description="Create or update the sampler's SELECT-only role in the production database. "
    f"Connects as the owner from ${OWNER_URL_ENV}; the role's password comes from ${PASSWORD_ENV}.",
)


def main(argv: list[str]) -> int:
    """``python -m sampling grant-reader ARGS``: 0 done, 1 failure or refusal, 2 usage."""
    # Its errors are masked with the new role's password: _run words them itself.
    return run_command("python -m sampling grant-reader", COMMAND, argv, errors={})
