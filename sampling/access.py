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

from sampling.errors import SamplingError, mask_text, mask_url, url_password, url_problem
from sampling.readiness import wait_until_accepting

OWNER_URL_ENV = "SAMPLING_OWNER_URL"
PASSWORD_ENV = "SAMPLING_READER_PASSWORD"
DEFAULT_ROLE = "makapix_sampler"
WRITE_PRIVILEGES = sql.SQL("INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER")


@dataclass(frozen=True)
class GrantSummary:
    role: str
    created: bool
    database: str
    schemas: tuple[str, ...]
    default_privileges_for: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "created": self.created,
            "database": self.database,
            "schemas": list(self.schemas),
            "default_privileges_for": list(self.default_privileges_for),
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
    except psycopg.Error as error:
        message = mask_text(str(error).strip(), url_password(owner_url), password)
        raise SamplingError(f"granting read access on {mask_url(owner_url)} failed: {message}") from None
    return GrantSummary(role, not exists, database[0], tuple(schemas), tuple(owners))


def main(argv: list[str]) -> int:
    """``python -m sampling grant-reader``: 0 done, 1 failure or refusal, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="python -m sampling grant-reader",
        description="Create or update the sampler's SELECT-only role in the production database. "
        f"Connects as the owner from ${OWNER_URL_ENV}; the role's password comes from ${PASSWORD_ENV}.",
    )
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return 0 if stop.code == 0 else 2
    owner_url = os.environ.get(OWNER_URL_ENV, "")
    password = os.environ.get(PASSWORD_ENV, "")
    if not owner_url or not password:
        print(
            f"error: set {OWNER_URL_ENV} and {PASSWORD_ENV} (never pass them as arguments)", file=sys.stderr
        )
        return 2
    problem = url_problem(owner_url)
    if problem is not None:
        print(f"error: {OWNER_URL_ENV}: the production database URL is malformed: {problem}", file=sys.stderr)
        return 2
    try:
        wait_until_accepting(owner_url, args.wait, "production")
        summary = grant_reader(owner_url, args.role, password, args.schemas or ["public"])
    except SamplingError as error:
        print(f"error: {mask_text(str(error), password)}", file=sys.stderr)
        return 1
    print(
        f"role {summary.role} {'created' if summary.created else 'updated'}: SELECT on schema(s) "
        f"{', '.join(summary.schemas)} of database {summary.database}, read-only, new password set",
        file=sys.stderr,
    )
    return 0
