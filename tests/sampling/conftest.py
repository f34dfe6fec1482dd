"""A Makapix-like schema with the awkward cases the sampler must handle, and hand-made data.

Awkward cases: a NOT NULL foreign-key cycle (users.team_id <-> teams.owner_id), self-references
(users.invited_by, comments.parent_id), a composite foreign key to a unique key that is not the
primary key ("Playlist Items" -> playlists), an enum, a domain, a partitioned table whose
foreign key on posts is declared on the partitions only, a generated column, a table without a
primary key, mixed-case quoted names, a second schema, jsonb / arrays / bytea / uuid / inet /
tsvector, a polymorphic link (social_notifications.target_type + target_id) and a trigger on the
target that must not fire.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml
from psycopg import sql

SCHEMA_SQL = """
CREATE TYPE visibility AS ENUM ('public', 'unlisted', 'private');
CREATE DOMAIN handle_text AS text CHECK (length(VALUE) > 0);
CREATE TABLE teams (id bigint PRIMARY KEY, name text NOT NULL, owner_id bigint NOT NULL);
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    handle handle_text NOT NULL,
    email text NOT NULL UNIQUE,
    banned_until timestamptz,
    team_id bigint NOT NULL REFERENCES teams,
    invited_by bigint REFERENCES users,
    last_ip inet,
    settings jsonb,
    tags text[],
    avatar bytea,
    uid uuid,
    handle_lower text GENERATED ALWAYS AS (lower(handle)) STORED
);
ALTER TABLE teams ADD FOREIGN KEY (owner_id) REFERENCES users;
CREATE TABLE auth_identities (
    id serial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, provider text NOT NULL,
    password_hash text, refresh_token text
);
CREATE TABLE posts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id bigint NOT NULL REFERENCES users,
    title text NOT NULL,
    visibility visibility NOT NULL,
    storage_key text,
    search tsvector,
    moods visibility[]
);
CREATE TABLE comments (
    id bigserial PRIMARY KEY, post_id bigint NOT NULL REFERENCES posts,
    author_id bigint NOT NULL REFERENCES users, parent_id bigint REFERENCES comments, body text NOT NULL
);
CREATE TABLE reactions (
    post_id bigint REFERENCES posts, user_id bigint REFERENCES users, emoji text,
    PRIMARY KEY (post_id, user_id, emoji)
);
CREATE TABLE follow (
    follower_id bigint REFERENCES users, following_id bigint REFERENCES users,
    PRIMARY KEY (follower_id, following_id)
);
CREATE TABLE social_notifications (
    id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, actor_id bigint REFERENCES users,
    target_type text, target_id bigint
);
CREATE TABLE view_events (
    id bigserial, post_id bigint NOT NULL, viewer_id bigint REFERENCES users, ip inet,
    viewed_at timestamptz NOT NULL, PRIMARY KEY (id, viewed_at)
) PARTITION BY RANGE (viewed_at);
CREATE TABLE view_events_2025 PARTITION OF view_events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE view_events_2026 PARTITION OF view_events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
ALTER TABLE view_events_2025 ADD FOREIGN KEY (post_id) REFERENCES posts;
ALTER TABLE view_events_2026 ADD FOREIGN KEY (post_id) REFERENCES posts;
CREATE TABLE post_stats_daily (
    post_id bigint REFERENCES posts, day date, views int NOT NULL, PRIMARY KEY (post_id, day)
);
CREATE TABLE badges (code text PRIMARY KEY, title text NOT NULL);
CREATE TABLE badge_grants (user_id bigint NOT NULL REFERENCES users, badge_code text NOT NULL REFERENCES badges);
CREATE TABLE players (id uuid PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users, cert_pem text, name text);
CREATE TABLE playlists (id serial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users, slug text NOT NULL,
                        UNIQUE (owner_id, slug));
CREATE TABLE "Playlist Items" (
    "Id" serial PRIMARY KEY, owner_id bigint NOT NULL, playlist_slug text NOT NULL,
    "PostId" bigint NOT NULL REFERENCES posts,
    FOREIGN KEY (owner_id, playlist_slug) REFERENCES playlists (owner_id, slug)
);
CREATE SCHEMA audit;
CREATE TABLE audit.login_events (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES public.users,
                                 ip text, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE alembic_version (version_num text PRIMARY KEY);
"""

# Fires on every insert into posts: a run that lets target triggers fire fails.
TARGET_TRIGGER_SQL = """
CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'trigger fired on %', TG_TABLE_NAME; END $$;
CREATE TRIGGER posts_refuse BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION refuse_insert();
"""

# Hand-made rows; the expected sample for roots {1, 2} is worked out in test_engine.py.
DATA_SQL = """
SET session_replication_role = replica;
INSERT INTO teams VALUES (10, 'red', 1), (20, 'blue', 3);
INSERT INTO users (id, handle, email, banned_until, team_id, invited_by, last_ip, settings, tags, avatar, uid) VALUES
 (1, 'Ada', 'ada@example.com', NULL, 10, NULL, '192.0.2.17', '{"theme": "dark"}', '{a,b}', '\\x0102',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, 'Bob', 'bob@example.com', NULL, 20, 3, '2001:db8::1', '{}', '{}', NULL, NULL),
 (3, 'Cy', 'cy@example.com', NULL, 20, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 'Di', 'di@example.com', NULL, 10, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 'Ed', 'ed@example.com', NULL, 20, NULL, NULL, NULL, NULL, NULL, NULL),
 (6, 'Fay', 'fay@example.com', '2030-01-01', 10, NULL, NULL, NULL, NULL, NULL, NULL);
SELECT setval('users_id_seq', 6);
INSERT INTO auth_identities (user_id, provider, password_hash, refresh_token) VALUES
 (1, 'password', '$2b$12$realhashofada', 'tok-ada'), (3, 'password', '$2b$12$realhashofcy', 'tok-cy');
INSERT INTO posts (id, owner_id, title, visibility, storage_key, search, moods) OVERRIDING SYSTEM VALUE VALUES
 (100, 1, 'first', 'public', 'a/b/100.png', to_tsvector('simple', 'hello pixel'), '{public,private}'),
 (101, 2, 'second', 'private', 'a/b/101.png', NULL, NULL),
 (102, 3, 'third', 'unlisted', 'a/b/102.png', NULL, NULL),
 (103, 4, 'fourth', 'public', 'a/b/103.png', NULL, NULL);
INSERT INTO comments (id, post_id, author_id, parent_id, body) VALUES
 (1, 100, 4, NULL, 'on 100 by 4'), (2, 102, 1, NULL, 'on 102 by 1'), (3, 103, 5, NULL, 'on 103 by 5'),
 (4, 101, 2, 3, 'reply to 3'), (5, 103, 6, NULL, 'not taken');
INSERT INTO reactions VALUES (100, 3, 'up'), (100, 6, 'up'), (102, 1, 'up'), (103, 5, 'up');
INSERT INTO follow VALUES (1, 2), (1, 3), (2, 1), (4, 5);
INSERT INTO social_notifications (id, user_id, actor_id, target_type, target_id) VALUES
 (1, 1, 2, 'post', 100), (2, 1, 3, 'post', 100), (3, 2, NULL, 'post', 103), (4, 2, NULL, 'comment', 1);
INSERT INTO view_events (id, post_id, viewer_id, ip, viewed_at) VALUES
 (1, 100, 6, '198.51.100.7', '2025-03-01'), (2, 101, 1, '198.51.100.8', '2026-02-01'),
 (3, 103, 1, '198.51.100.9', '2026-02-02');
INSERT INTO post_stats_daily VALUES (100, '2026-01-01', 5), (102, '2026-01-01', 7);
INSERT INTO badges VALUES ('early', 'Early bird'), ('top', 'Top artist');
INSERT INTO badge_grants VALUES (1, 'early'), (3, 'top');
INSERT INTO players VALUES ('11111111-1111-1111-1111-111111111111', 1, '-----BEGIN CERTIFICATE-----', 'lamp'),
                           ('22222222-2222-2222-2222-222222222222', 4, '-----BEGIN CERTIFICATE-----', 'frame');
INSERT INTO playlists (id, owner_id, slug) VALUES (1, 1, 'fav'), (2, 3, 'mix');
INSERT INTO "Playlist Items" ("Id", owner_id, playlist_slug, "PostId") VALUES (1, 1, 'fav', 102), (2, 3, 'mix', 100);
INSERT INTO audit.login_events (user_id, ip, at) VALUES (1, '203.0.113.5', '2026-01-01'), (5, '203.0.113.6', '2026-01-01');
INSERT INTO alembic_version VALUES ('prod-head');
RESET session_replication_role;
"""

BCRYPT_DEV = "$2a$14$0zHsjiRveIpNyXVraitvZODGtb0zw.a2/sZ49h2Z.lR1F5So1B1gu"

CONFIG: dict[str, Any] = {
    "seed": 7,
    "schemas": ["public", "audit"],
    "roots": [{"table": "users", "fraction": 1.0, "where": "id IN (1, 2)"}],
    "anonymisation": {"email_domain": "dev.test"},
    "relations": [
        {
            "table": "social_notifications",
            "columns": ["target_id"],
            "references": "posts",
            "referenced_columns": ["id"],
            "when": "target_type = 'post'",
        },
    ],
    "tables": {
        "users": {"columns": {"email": {"rule": "email"}, "last_ip": {"rule": "ip", "style": "truncate"}}},
        "auth_identities": {
            "columns": {
                "password_hash": {"rule": "password", "value": BCRYPT_DEV},
                "refresh_token": {"rule": "token"},
            }
        },
        "posts": {"columns": {"storage_key": "keep"}},
        "reactions": {"foreign_keys": {"user_id": {"policy": "drop"}}},
        "follow": {"follow": "all"},
        "social_notifications": {"follow": "all"},
        "view_events": {
            "columns": {"ip": {"rule": "ip", "style": "truncate"}},
            "foreign_keys": {"viewer_id": {"policy": "nullify", "follow": False}},
        },
        "badges": {"copy": "all"},
        "players": {"columns": {"cert_pem": {"rule": "null"}}},
        "audit.login_events": {"columns": {"ip": {"rule": "pseudonym", "prefix": "ip-"}}},
        "alembic_version": {"copy": "none"},
    },
}

KEY_ENV = "SAMPLING_ANONYMISATION_KEY"


def _execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)  # type: ignore[arg-type]


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def rows() -> Callable[[str, str], list[tuple[Any, ...]]]:
    """``rows(url, query)``: all rows of ``query`` on database ``url``."""
    return _rows


@pytest.fixture
def execute() -> Callable[[str, str], None]:
    """``execute(url, statements)`` in autocommit mode."""
    return _execute


@pytest.fixture
def makapix_config() -> dict[str, Any]:
    """A fresh copy of the configuration for the Makapix-like test schema (safe to modify)."""
    return copy.deepcopy(CONFIG)


@pytest.fixture
def makapix_sql() -> tuple[str, str]:
    """(schema DDL, hand-made data) of the Makapix-like test schema."""
    return SCHEMA_SQL, DATA_SQL


@pytest.fixture
def anonymisation_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, "test-key-not-secret")
    return "test-key-not-secret"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / "sampling.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def start_sampler_run(
    write_config: Callable[[dict[str, Any]], Path],
) -> Iterator[Callable[[dict[str, Any], str, str], subprocess.Popen[bytes]]]:
    """start(config, source, target): ``python -m sampling run`` as its own process (stderr piped), to be
    signalled or killed by the test; any still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any], source: str, target: str) -> subprocess.Popen[bytes]:
        path = write_config(config)
        process = subprocess.Popen(
            [sys.executable, "-m", "sampling", "run", "--config", str(path), "--json"],
            env={**os.environ, "SAMPLING_SOURCE_URL": source, "SAMPLING_TARGET_URL": target},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def makapix(make_database: Callable[[], str], anonymisation_key: str) -> tuple[str, str]:
    """(source URL, target URL): source with the hand-made data, target with the same schema and stale rows."""
    source, target = make_database(), make_database()
    _execute(source, SCHEMA_SQL + DATA_SQL)
    _execute(target, SCHEMA_SQL + TARGET_TRIGGER_SQL)
    _execute(
        target,
        """
        SET session_replication_role = replica;
        INSERT INTO teams VALUES (99, 'stale', 99);
        INSERT INTO users (id, handle, email, team_id) VALUES (99, 'stale', 'stale@dev', 99);
        INSERT INTO alembic_version VALUES ('dev-head');
    """,
    )
    return source, target


@pytest.fixture
def password_login(postgres_server_url: str) -> Iterator[Callable[[str, str], str]]:
    """``login(database_url, password)``: the URL of a role that must give the right password, ``'right'``.

    The embedded test server trusts every login; this puts a scram-sha-256 line for one new role at the
    top of its pg_hba.conf (restored afterwards), so a wrong password is refused as in production.
    """
    role = f"pw_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'hba_file'").fetchone()
        hba = Path(str(row[0])) if row else None
        if hba is None or not os.access(hba, os.W_OK):
            pytest.skip("the test server's pg_hba.conf cannot be changed here (TEST_POSTGRES_URL?)")
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD 'right'").format(sql.Identifier(role)))
        original = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")

    def login(url: str, password: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.netloc.rsplit('@', 1)[-1]}"))

    try:
        yield login
    finally:
        hba.write_text(original)
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
