"""sampling/makapix.yaml against a schema shaped like Makapix's (tables and columns of its SQLAlchemy models).

Only the columns that matter to the sampler are kept (keys, NOT NULLs, personal data); the
real tables have more, which the sampler copies like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sampling import plan, run, verify
from sampling.config import load_config, parse_config

MAKAPIX_YAML = Path(__file__).parents[2] / "sampling" / "makapix.yaml"

SCHEMA = """
CREATE TABLE users (id serial PRIMARY KEY, user_key uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    handle varchar(50) NOT NULL UNIQUE, bio text, website varchar(500), avatar_url varchar(500),
    email varchar(255) NOT NULL UNIQUE, roles json NOT NULL DEFAULT '[]', banned_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE refresh_tokens (id uuid PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    token_hash varchar(255) NOT NULL UNIQUE);
CREATE TABLE auth_identities (id uuid PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    provider varchar(50) NOT NULL, provider_user_id varchar(255) NOT NULL, secret_hash varchar(255),
    email varchar(255), provider_metadata json, UNIQUE (provider, provider_user_id));
CREATE TABLE email_verification_tokens (id uuid PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    token_hash varchar(255) NOT NULL, email varchar(255) NOT NULL);
CREATE TABLE password_reset_tokens (id uuid PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    token_hash varchar(255) NOT NULL);
CREATE TABLE posts (id serial PRIMARY KEY, storage_key uuid NOT NULL UNIQUE, owner_id int NOT NULL REFERENCES users,
    title varchar(200) NOT NULL, hashtags varchar[] NOT NULL DEFAULT '{}');
CREATE TABLE playlist_items (id serial PRIMARY KEY, playlist_post_id int NOT NULL REFERENCES posts,
    artwork_post_id int NOT NULL REFERENCES posts, position int NOT NULL);
CREATE TABLE comments (id uuid PRIMARY KEY, post_id int NOT NULL REFERENCES posts, author_id int REFERENCES users,
    author_ip varchar(45), parent_id uuid REFERENCES comments, body text NOT NULL);
CREATE TABLE reactions (id serial PRIMARY KEY, post_id int NOT NULL REFERENCES posts, user_id int REFERENCES users,
    user_ip varchar(45), emoji varchar(20) NOT NULL);
CREATE TABLE follows (id serial PRIMARY KEY, follower_id int NOT NULL REFERENCES users,
    following_id int NOT NULL REFERENCES users, UNIQUE (follower_id, following_id));
CREATE TABLE social_notifications (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    actor_id int REFERENCES users, post_id int, kind varchar(30) NOT NULL);
CREATE TABLE view_events (id uuid PRIMARY KEY, post_id int NOT NULL REFERENCES posts ON DELETE CASCADE,
    viewer_user_id int REFERENCES users ON DELETE SET NULL, viewer_ip_hash varchar(64) NOT NULL,
    user_agent_hash varchar(64), created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE post_stats_daily (id serial PRIMARY KEY, post_id int NOT NULL REFERENCES posts, date date NOT NULL,
    total_views int NOT NULL DEFAULT 0, UNIQUE (post_id, date));
CREATE TABLE badge_grants (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users, badge varchar(50) NOT NULL);
CREATE TABLE players (id uuid PRIMARY KEY, player_key uuid NOT NULL UNIQUE, owner_id int REFERENCES users,
    current_post_id int REFERENCES posts, registration_code varchar(6) UNIQUE, cert_serial_number varchar(100),
    cert_issued_at timestamptz, cert_expires_at timestamptz, cert_pem text, key_pem text);
CREATE TABLE github_installations (id uuid PRIMARY KEY, user_id int NOT NULL REFERENCES users,
    installation_id bigint NOT NULL UNIQUE, access_token text);
CREATE TABLE site_events (id uuid PRIMARY KEY, visitor_ip_hash varchar(64) NOT NULL, user_id int REFERENCES users);
CREATE TABLE site_stats_daily (id serial PRIMARY KEY, date date NOT NULL UNIQUE, total_page_views int NOT NULL);
CREATE TABLE audit_logs (id uuid PRIMARY KEY, actor_id int NOT NULL REFERENCES users, target_id varchar(50));
CREATE TABLE reports (id uuid PRIMARY KEY, reporter_id int NOT NULL REFERENCES users, target_id varchar(50) NOT NULL);
CREATE TABLE blog_posts (id serial PRIMARY KEY, owner_id int NOT NULL REFERENCES users, body text NOT NULL);
CREATE TABLE blog_post_comments (id uuid PRIMARY KEY, blog_post_id int NOT NULL REFERENCES blog_posts,
    author_id int REFERENCES users, author_ip varchar(45), parent_id uuid REFERENCES blog_post_comments, body text);
CREATE TABLE blog_post_reactions (id serial PRIMARY KEY, blog_post_id int NOT NULL REFERENCES blog_posts,
    user_id int REFERENCES users, user_ip varchar(45), emoji varchar(20) NOT NULL);
CREATE TABLE blog_post_view_events (id uuid PRIMARY KEY, blog_post_id int NOT NULL REFERENCES blog_posts,
    viewer_user_id int REFERENCES users, viewer_ip_hash varchar(64) NOT NULL);
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
"""

DATA = """
INSERT INTO users (handle, email, bio, website, banned_until)
    SELECT 'artist' || g, 'artist' || g || '@mail.example', 'I draw ' || g, 'https://a' || g || '.example',
           CASE WHEN g % 10 = 0 THEN now() + interval '30 days' END
    FROM generate_series(1, 300) g;
INSERT INTO auth_identities SELECT gen_random_uuid(), g, 'password', 'artist' || g, '$2b$12$prodhash' || g,
    'artist' || g || '@mail.example', '{"avatar": "x"}' FROM generate_series(1, 300) g;
INSERT INTO refresh_tokens SELECT gen_random_uuid(), g, 'rt' || g FROM generate_series(1, 300) g;
INSERT INTO posts (storage_key, owner_id, title) SELECT gen_random_uuid(), 1 + g % 300, 'art ' || g
    FROM generate_series(1, 900) g;
INSERT INTO playlist_items (playlist_post_id, artwork_post_id, position)
    SELECT 1 + g % 900, 1 + (g * 7) % 900, g FROM generate_series(1, 200) g;
INSERT INTO comments SELECT gen_random_uuid(), 1 + (g * 13) % 900, CASE WHEN g % 5 <> 0 THEN 1 + (g * 17) % 300 END,
    '198.51.100.' || g % 250, NULL, 'nice ' || g FROM generate_series(1, 1500) g;
INSERT INTO reactions (post_id, user_id, user_ip, emoji) SELECT 1 + (g * 11) % 900, 1 + (g * 19) % 300,
    '203.0.113.' || g % 250, 'heart' FROM generate_series(1, 1500) g;
INSERT INTO follows (follower_id, following_id) SELECT DISTINCT 1 + g % 300, 1 + (g * 37) % 300
    FROM generate_series(1, 1000) g WHERE g % 300 <> (g * 37) % 300;
INSERT INTO social_notifications (user_id, actor_id, post_id, kind)
    SELECT 1 + g % 300, 1 + (g * 7) % 300, 1 + g % 900, 'reaction' FROM generate_series(1, 600) g;
INSERT INTO view_events SELECT gen_random_uuid(), 1 + g % 900, CASE WHEN g % 2 = 0 THEN 1 + g % 300 END,
    md5('ip' || g), md5('ua' || g), now() FROM generate_series(1, 3000) g;
INSERT INTO post_stats_daily (post_id, date, total_views) SELECT 1 + g % 900, '2026-01-01', g FROM generate_series(1, 900) g;
INSERT INTO badge_grants (user_id, badge) SELECT 1 + g % 300, 'early' FROM generate_series(1, 100) g;
INSERT INTO players SELECT gen_random_uuid(), gen_random_uuid(), 1 + g % 300, 1 + g % 900, lpad(g::text, 6, '0'),
    'serial' || g, now(), now(), 'PEM', 'KEY' FROM generate_series(1, 50) g;
INSERT INTO github_installations SELECT gen_random_uuid(), g, g, 'ghs_secret' || g FROM generate_series(1, 20) g;
INSERT INTO site_stats_daily (date, total_page_views) VALUES ('2026-01-01', 10);
INSERT INTO blog_posts (owner_id, body) SELECT 1 + g % 300, 'blog' FROM generate_series(1, 100) g;
INSERT INTO alembic_version VALUES ('prod');
"""


def test_makapix_configuration_samples_and_anonymises(
    make_database: Callable[[], str],
    execute: Callable[[str, str], None],
    rows: Callable[[str, str], list[tuple[Any, ...]]],
    anonymisation_key: str,
) -> None:
    source, target = make_database(), make_database()
    execute(source, SCHEMA + DATA)
    execute(target, SCHEMA + "INSERT INTO alembic_version VALUES ('dev');")
    config = load_config(MAKAPIX_YAML)

    planned = plan(config, source)
    assert planned.unreached == [] and planned.sensitive_without_rule == []
    assert 10 <= planned.tables["public.users"].selected <= 50  # 10% of the 270 not banned

    summary = run(config, source, target)
    assert verify(config, source, target).ok
    assert summary.tables["public.users"].rows >= planned.tables["public.users"].selected
    assert rows(target, "SELECT count(*) FROM users WHERE email !~ '^user[0-9]+@dev\\.makapix\\.local$'") == [
        (0,)
    ]
    assert rows(
        target,
        "SELECT count(*) FROM users u WHERE banned_until > now() AND NOT EXISTS "
        "(SELECT 1 FROM posts p WHERE p.owner_id = u.id) AND NOT EXISTS "
        "(SELECT 1 FROM comments c WHERE c.author_id = u.id)",
    ) == [(0,)]  # banned only as parents
    assert rows(target, "SELECT DISTINCT secret_hash FROM auth_identities") == [
        ("$2a$14$0zHsjiRveIpNyXVraitvZODGtb0zw.a2/sZ49h2Z.lR1F5So1B1gu",)
    ]
    for table in ("refresh_tokens", "site_events", "audit_logs"):
        assert rows(target, f"SELECT count(*) FROM {table}") == [(0,)]
    assert rows(target, "SELECT count(*) FROM players WHERE cert_pem IS NOT NULL OR key_pem IS NOT NULL") == [
        (0,)
    ]
    assert rows(target, "SELECT count(*) FROM github_installations WHERE access_token IS NOT NULL") == [(0,)]
    assert rows(target, "SELECT count(*) FROM comments WHERE author_ip !~ '\\.0$'") == [(0,)]
    assert rows(
        target,
        "SELECT count(*) FROM follows f WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = f.follower_id)",
    ) == [(0,)]
    assert rows(target, "SELECT version_num FROM alembic_version") == [("dev",)]
    assert rows(target, "SELECT count(*) FROM site_stats_daily") == [(1,)]


def test_the_guard_asks_few_decisions_of_the_makapix_schema(
    make_database: Callable[[], str], execute: Callable[[str, str], None]
) -> None:
    """Every column a configuration without rules would have to decide: names and types both say personal.

    22 columns in 27 tables: credentials, addresses and their hashes, e-mails, keys, the bio. The
    certificate dates (timestamps) no longer count; the private key (key_pem) and the bio now do.
    """
    source = make_database()
    execute(source, SCHEMA)
    bare = parse_config({"roots": [{"table": "users", "fraction": 0.1}]})
    assert plan(bare, source).sensitive_without_rule == [
        "auth_identities.secret_hash",
        "auth_identities.email",
        "blog_post_comments.author_ip",
        "blog_post_reactions.user_ip",
        "blog_post_view_events.viewer_ip_hash",
        "comments.author_ip",
        "email_verification_tokens.token_hash",
        "email_verification_tokens.email",
        "github_installations.access_token",
        "password_reset_tokens.token_hash",
        "players.player_key",
        "players.cert_serial_number",
        "players.cert_pem",
        "players.key_pem",
        "posts.storage_key",
        "reactions.user_ip",
        "refresh_tokens.token_hash",
        "site_events.visitor_ip_hash",
        "users.user_key",
        "users.bio",
        "users.email",
        "view_events.viewer_ip_hash",
    ]
