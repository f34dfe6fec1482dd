"""The sampler against real PostgreSQL, on the hand-made Makapix-like data of conftest.py.

Roots are users 1 and 2 (fraction 1 with a filter), so every expected row below is worked out
by hand from DATA_SQL:
  downward: users {1,2}; teams {10} (owner 1); posts {100,101}; comments {1,2,4} (post or author
  taken); reactions on 100 or by 1; follow both ends taken; notifications 1 and 4 (every set
  reference taken); view_events 1,2; stats of post 100; grant of user 1; player of user 1;
  playlist fav; both playlist items; login of user 1.
  include: team 20 (user 2), user 3 (invited user 2, owns team 20), comment 3 (parent of 4),
  posts 102 and 103 (of comments 2 and 3), users 4 and 5 (authors), playlist mix (item 2).
  nullify: view_event 1's viewer 6.  drop: reaction (100, 6, up) — user 6 is never taken.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sampling import plan, run, verify
from sampling.config import parse_config
from sampling.errors import ConfigError, SamplingError

Rows = Callable[[str, str], list[tuple[Any, ...]]]


def ids(rows: Rows, url: str, query: str) -> list[Any]:
    return [r[0] if len(r) == 1 else r for r in rows(url, query)]


def test_hand_made_data_gives_exactly_the_expected_rows(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    summary = run(parse_config(makapix_config), source, target)

    assert ids(rows, target, "SELECT id FROM users ORDER BY 1") == [1, 2, 3, 4, 5]
    assert ids(rows, target, "SELECT id FROM teams ORDER BY 1") == [10, 20]
    assert ids(rows, target, "SELECT id FROM posts ORDER BY 1") == [100, 101, 102, 103]
    assert ids(rows, target, "SELECT id FROM comments ORDER BY 1") == [1, 2, 3, 4]
    assert rows(target, "SELECT post_id, user_id FROM reactions ORDER BY 1, 2") == [(100, 3), (102, 1)]
    assert rows(target, "SELECT * FROM follow ORDER BY 1") == [(1, 2), (2, 1)]
    assert ids(rows, target, "SELECT id FROM social_notifications ORDER BY 1") == [1, 4]
    assert rows(target, "SELECT id, viewer_id FROM view_events ORDER BY 1") == [(1, None), (2, 1)]
    assert rows(target, "SELECT post_id, views FROM post_stats_daily") == [(100, 5)]
    assert ids(rows, target, "SELECT code FROM badges ORDER BY 1") == ["early", "top"]
    assert rows(target, "SELECT * FROM badge_grants") == [(1, "early")]
    assert ids(rows, target, "SELECT name FROM players") == ["lamp"]
    assert rows(target, "SELECT owner_id, slug FROM playlists ORDER BY 1") == [(1, "fav"), (3, "mix")]
    assert rows(target, 'SELECT "Id", "PostId" FROM "Playlist Items" ORDER BY 1') == [(1, 102), (2, 100)]
    assert ids(rows, target, "SELECT user_id FROM audit.login_events") == [1]
    # copy: none leaves the table as it was; the stale target rows are gone.
    assert ids(rows, target, "SELECT version_num FROM alembic_version") == ["dev-head"]

    assert summary.tables["public.users"].rows == 5
    assert summary.tables["public.reactions"].rows == 2
    assert summary.total_rows == 34
    assert summary.included == {
        "public.teams": 1,
        "public.users": 3,
        "public.comments": 1,
        "public.posts": 2,
        "public.playlists": 1,
    }
    assert summary.nullified == {"public.view_events": 1}
    assert summary.dropped == {"public.reactions": 1}
    assert summary.to_json()["total_rows"] == 34


def test_values_survive_and_personal_data_does_not(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows, anonymisation_key: str
) -> None:
    source, target = makapix
    run(parse_config(makapix_config), source, target)

    ada = rows(
        target,
        "SELECT handle, email, last_ip::text, settings, tags, avatar, uid::text, handle_lower "
        "FROM users WHERE id = 1",
    )[0]
    assert ada == (
        "Ada",
        "user1@dev.test",
        "192.0.2.0/32",
        {"theme": "dark"},
        ["a", "b"],
        b"\x01\x02",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "ada",
    )
    assert rows(target, "SELECT last_ip::text FROM users WHERE id = 2") == [("2001:db8::/128",)]
    post = rows(target, "SELECT visibility::text, search::text, moods::text FROM posts WHERE id = 100")[0]
    assert post == ("public", "'hello':1 'pixel':2", "{public,private}")
    assert rows(target, "SELECT password_hash, refresh_token FROM auth_identities") == [
        ("$2a$14$0zHsjiRveIpNyXVraitvZODGtb0zw.a2/sZ49h2Z.lR1F5So1B1gu", None)
    ]
    assert rows(target, "SELECT cert_pem FROM players") == [(None,)]
    assert rows(target, "SELECT host(ip) FROM view_events ORDER BY id") == [
        ("198.51.100.0",),
        ("198.51.100.0",),
    ]
    # Keyed pseudonym: recomputable with the key, never the raw value.
    inner = hashlib.sha256(f"{anonymisation_key}|203.0.113.5".encode()).hexdigest()
    expected = "ip-" + hashlib.sha256((anonymisation_key + inner).encode()).hexdigest()[:16]
    assert rows(target, "SELECT ip FROM audit.login_events") == [(expected,)]
    all_text = str(
        rows(target, "SELECT u.*, a.* FROM users u LEFT JOIN auth_identities a ON a.user_id = u.id")
    )
    for secret in ("ada@example.com", "realhashofada", "tok-ada", "192.0.2.17"):
        assert secret not in all_text


def test_target_is_consistent_triggers_silent_sequences_moved(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    config = parse_config(makapix_config)
    run(config, source, target)  # posts has a trigger that raises on insert: it did not fire
    report = verify(config, source, target)
    assert report.ok, report.problems
    assert report.checked_sequences >= 8
    with psycopg.connect(target) as conn:
        conn.execute("SET session_replication_role = replica")
        assert conn.execute("SELECT nextval('users_id_seq')").fetchone() == (6,)
        assert conn.execute("SELECT nextval(pg_get_serial_sequence('posts', 'id'))").fetchone() == (104,)
        assert conn.execute("SELECT nextval('comments_id_seq')").fetchone() == (5,)
        # An emptied table's sequence starts again.
        assert conn.execute("SELECT nextval('auth_identities_id_seq')").fetchone() == (2,)
    assert rows(target, "SELECT count(*) FROM pg_stats WHERE tablename = 'comments'")[0][0] > 0  # analyzed


def test_verify_finds_broken_links_sequences_and_leaks(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None]
) -> None:
    source, target = makapix
    config = parse_config(makapix_config)
    run(config, source, target)
    execute(
        target,
        """
        SET session_replication_role = replica;
        INSERT INTO comments (id, post_id, author_id, body) VALUES (50, 999, 1, 'orphan');
        SELECT setval('users_id_seq', 2);
        UPDATE audit.login_events SET ip = '203.0.113.5';
    """,
    )
    report = verify(config, source, target)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "comments(post_id) -> public.posts(id)" in text
    assert "users_id_seq" in text
    assert "audit.login_events.ip: 1 values also appear" in text


def test_plan_writes_nothing_and_shows_growth(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    result = plan(parse_config(makapix_config), source, target)
    tables = result.to_json()["tables"]
    assert tables["public.users"] == {"mode": "sample", "selected": 2, "parents_first_level": 2}
    assert tables["public.posts"]["selected"] == 2
    # Only post 102 is missing at the first level; three links reference it (comment 2, reaction
    # (102, 1), playlist item 1): a row counts once, not once per foreign key (it used to count 3).
    assert tables["public.posts"]["parents_first_level"] == 1
    assert tables["public.comments"] == {"mode": "sample", "selected": 3, "parents_first_level": 1}
    assert result.unreached == [] and result.sensitive_without_rule == []
    assert ids(rows, target, "SELECT id FROM users") == [99]  # untouched

    # An exact plan loads the sample and rolls it back: final counts, target still untouched.
    exact = plan(parse_config(makapix_config), source, target, exact=True).to_json()["tables"]
    assert exact["public.users"]["final"] == 5 and exact["public.reactions"]["final"] == 2
    assert ids(rows, target, "SELECT id FROM users") == [99]
    with pytest.raises(SamplingError, match="needs a target"):
        plan(parse_config(makapix_config), source, exact=True)


def test_same_seed_same_sample_other_seed_other_sample(
    make_database: Callable[[], str],
    makapix_sql: tuple[str, str],
    makapix_config: dict[str, Any],
    execute: Callable[[str, str], None],
    rows: Rows,
    anonymisation_key: str,
) -> None:
    """Generated data (2000 users): size within tolerance, consistent, deterministic."""
    schema, _ = makapix_sql
    source, target = make_database(), make_database()
    execute(
        source,
        schema
        + """
        SET session_replication_role = replica;
        INSERT INTO teams SELECT g, 'team ' || g, g * 10 FROM generate_series(1, 200) g;
        INSERT INTO users (id, handle, email, team_id, invited_by)
            SELECT g, 'u' || g, 'u' || g || '@example.com', 1 + g % 200, CASE WHEN g % 7 = 0 THEN g - 1 END
            FROM generate_series(1, 2000) g;
        INSERT INTO posts (id, owner_id, title, visibility) OVERRIDING SYSTEM VALUE
            SELECT g, 1 + (g * 7919) % 2000, 'p' || g, 'public' FROM generate_series(1, 6000) g;
        INSERT INTO comments (post_id, author_id, body)
            SELECT 1 + (g * 31) % 6000, 1 + (g * 17) % 2000, 'c' FROM generate_series(1, 8000) g;
        INSERT INTO follow SELECT DISTINCT 1 + (g * 13) % 2000, 1 + (g * 29) % 2000
            FROM generate_series(1, 5000) g WHERE (g * 13) % 2000 <> (g * 29) % 2000;
        INSERT INTO badges VALUES ('early', 'Early');
        RESET session_replication_role;
    """,
    )
    execute(target, schema)
    makapix_config["roots"] = [{"table": "users", "fraction": 0.1}]
    config = parse_config(makapix_config)

    planned = plan(config, source).tables["public.users"].selected
    assert 140 <= planned <= 260  # 10% of 2000, binomial tolerance (4 sigma)
    run(config, source, target)
    first = rows(target, "SELECT id FROM users ORDER BY 1")
    first_comments = rows(target, "SELECT id FROM comments ORDER BY 1")
    assert verify(config, source, target).ok
    run(config, source, target)
    assert rows(target, "SELECT id FROM users ORDER BY 1") == first
    assert rows(target, "SELECT id FROM comments ORDER BY 1") == first_comments

    makapix_config["seed"] = 8
    run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id FROM users ORDER BY 1") != first
    assert rows(target, "SELECT count(*) FROM users WHERE email NOT LIKE 'user%@dev.test'") == [(0,)]


def test_a_failure_midway_leaves_the_target_unchanged(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = makapix
    # users and posts load before comments; this CHECK rejects a comment row mid-run.
    execute(target, "ALTER TABLE comments ADD CONSTRAINT no_replies CHECK (parent_id IS NULL)")
    before = rows(target, "SELECT id, email FROM users ORDER BY 1")
    with pytest.raises(SamplingError, match="no_replies"):
        run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id, email FROM users ORDER BY 1") == before == [(99, "stale@dev")]
    assert rows(target, "SELECT count(*) FROM posts") == [(0,)]


def test_refusals_write_nothing(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = makapix

    def refused(config: dict[str, Any], match: str, src: str = source, tgt: str = target) -> None:
        with pytest.raises(SamplingError, match=match):
            run(parse_config(config), src, tgt)
        assert rows(target, "SELECT id FROM users") == [(99,)]

    refused(makapix_config, "is the source table itself", tgt=source)

    unknown = {**makapix_config, "tables": {**makapix_config["tables"], "userz": {"copy": "all"}}}
    refused(unknown, r"tables.userz: no table 'userz'")

    no_rule = {**makapix_config, "tables": {**makapix_config["tables"], "users": {}}}
    refused(no_rule, r"public.users.email, public.users.last_ip")

    bad_column = {
        **makapix_config,
        "tables": {**makapix_config["tables"], "players": {"columns": {"cert": "null"}}},
    }
    refused(bad_column, r"tables.players.columns.cert: no column 'cert'")

    key_rule = {
        **makapix_config,
        "tables": {
            **makapix_config["tables"],
            "posts": {"columns": {"owner_id": {"rule": "null"}, "storage_key": "keep"}},
        },
    }
    refused(key_rule, "part of a foreign key")

    # badges is reached only because grants pull their badge in; with drop nothing reaches it.
    unreached = {
        **makapix_config,
        "tables": {
            **makapix_config["tables"],
            "badges": {},
            "badge_grants": {"foreign_keys": {"badge_code": {"policy": "drop"}}},
        },
    }
    refused(unreached, "reaches these tables: public.badges")

    bad_where = {
        **makapix_config,
        "roots": [{"table": "users", "fraction": 0.5, "where": "no_such_column = 1"}],
    }
    refused(bad_where, r"selection of table public.users is not valid SQL .*no_such_column")

    monkeypatch.delenv("SAMPLING_ANONYMISATION_KEY")
    refused(makapix_config, "SAMPLING_ANONYMISATION_KEY is not set")


def test_fraction_outside_range_is_a_config_error(makapix_config: dict[str, Any]) -> None:
    for fraction in (0, 1.5, -0.1):
        makapix_config["roots"] = [{"table": "users", "fraction": fraction}]
        with pytest.raises(ConfigError, match=r"roots.0.fraction"):
            parse_config(makapix_config, "cfg.yaml")


def test_unreachable_server_is_named_without_its_password(makapix_config: dict[str, Any]) -> None:
    url = "postgresql://sampler:Sup3rSecret@127.0.0.1:1/prod"
    with pytest.raises(SamplingError) as caught:
        plan(parse_config(makapix_config), url)
    message = str(caught.value)
    assert "cannot connect to the source server postgresql://sampler:***@127.0.0.1:1/prod" in message
    assert "Sup3rSecret" not in message


def test_schema_drift_copies_common_columns_and_refuses_what_cannot_load(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = makapix
    execute(
        target,
        """
        ALTER TABLE posts ADD COLUMN subtitle text;                -- newer migration, nullable
        ALTER TABLE posts DROP COLUMN search;                      -- column gone in dev
        ALTER TABLE comments ALTER COLUMN body TYPE varchar(200);  -- compatible type change
    """,
    )
    run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id, subtitle FROM posts WHERE id = 100") == [(100, None)]
    assert rows(target, "SELECT body FROM comments WHERE id = 1") == [("on 100 by 4",)]

    execute(
        target,
        "ALTER TABLE posts ADD COLUMN rating int NOT NULL DEFAULT 0; ALTER TABLE posts ALTER COLUMN rating DROP DEFAULT",
    )
    with pytest.raises(
        SamplingError, match=r"target column public.posts.rating is NOT NULL without a default"
    ):
        run(parse_config(makapix_config), source, target)
    execute(
        target, "ALTER TABLE posts DROP COLUMN rating; ALTER TABLE players ALTER COLUMN name TYPE int USING 1"
    )
    with pytest.raises(
        SamplingError, match=r"type mismatch: public.players.name is text in the source but integer"
    ):
        run(parse_config(makapix_config), source, target)


def test_cap_keeps_at_most_n_rows_per_group_deterministically(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = makapix
    execute(
        source,
        """
        INSERT INTO view_events (post_id, viewer_id, viewed_at)
        SELECT 100, NULL, '2026-03-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 50) g
    """,
    )
    makapix_config["tables"]["view_events"]["cap"] = {"per": ["post_id"], "max": 5}
    run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT post_id, count(*) FROM view_events GROUP BY 1 ORDER BY 1") == [
        (100, 5),
        (101, 1),
    ]
    first = rows(target, "SELECT id FROM view_events ORDER BY 1")
    run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id FROM view_events ORDER BY 1") == first


# --- Sequences (issue 13: defects 1 and 2) ---------------------------------------------------------

CUSTOMER_SQL = """
CREATE SEQUENCE s;
CREATE TABLE customer (customer_id int DEFAULT nextval('s') PRIMARY KEY, handle text);
"""


def test_a_sequence_only_used_by_a_default_is_moved_past_the_copied_values(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """The film-rental shape: the sequence is not OWNED BY the column; the first insert must not collide."""
    source, target = make_database(), make_database()
    execute(
        source, CUSTOMER_SQL + "INSERT INTO customer (handle) SELECT 'h' || g FROM generate_series(1, 3) g;"
    )
    execute(target, CUSTOMER_SQL)
    config = parse_config({"roots": [{"table": "customer", "fraction": 1.0}]})
    run(config, source, target)
    assert verify(config, source, target).checked_sequences == 1
    execute(target, "INSERT INTO customer (handle) VALUES ('x')")  # duplicate key before the fix
    assert rows(target, "SELECT customer_id FROM customer WHERE handle = 'x'") == [(4,)]


def test_verify_names_a_default_sequence_behind_its_column(
    make_database: Callable[[], str], execute: Callable[[str, str], None]
) -> None:
    source, target = make_database(), make_database()
    execute(
        source, CUSTOMER_SQL + "INSERT INTO customer (handle) SELECT 'h' || g FROM generate_series(1, 3) g;"
    )
    execute(target, CUSTOMER_SQL)
    config = parse_config({"roots": [{"table": "customer", "fraction": 1.0}]})
    run(config, source, target)
    execute(target, "ALTER SEQUENCE s RESTART WITH 1")  # what the sampler left before the fix
    report = verify(config, source, target)
    assert report.problems == [
        "sequence public.s would hand out 1, a value public.customer.customer_id already hold (up to 3); "
        "run the sampler again, or ALTER SEQUENCE public.s RESTART WITH 4"
    ]


def test_a_shared_sequence_goes_past_every_column_that_uses_it(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    schema = """
    CREATE SEQUENCE shared;
    CREATE TABLE a (id int DEFAULT nextval('shared') PRIMARY KEY);
    CREATE TABLE b (id int DEFAULT nextval('shared') PRIMARY KEY, a_id int REFERENCES a);
    """
    source, target = make_database(), make_database()
    execute(source, schema + "INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (40, 1);")
    execute(target, schema)
    config = parse_config({"roots": [{"table": "a", "fraction": 1.0}]})
    run(config, source, target)
    assert rows(target, "SELECT nextval('shared')") == [(41,)]


def test_a_descending_sequence_goes_below_the_smallest_value(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    schema = """
    CREATE SEQUENCE down INCREMENT BY -1 MAXVALUE -1 START WITH -1;
    CREATE TABLE t (id int DEFAULT nextval('down') PRIMARY KEY);
    """
    source, target = make_database(), make_database()
    execute(source, schema + "INSERT INTO t SELECT FROM generate_series(1, 3);")
    execute(target, schema)
    config = parse_config({"roots": [{"table": "t", "fraction": 1.0}]})
    run(config, source, target)
    assert verify(config, source, target).ok
    assert rows(target, "SELECT nextval('down')") == [(-4,)]


def test_a_sequence_inside_a_text_default_is_left_alone(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """Every run and verify failed: invalid input syntax for type bigint: "INV-2" (max(number)::bigint)."""
    schema = """
    CREATE SEQUENCE inv;
    CREATE TABLE invoice (id serial PRIMARY KEY, number text NOT NULL DEFAULT 'INV-' || nextval('inv'));
    """
    source, target = make_database(), make_database()
    execute(source, schema + "INSERT INTO invoice DEFAULT VALUES; INSERT INTO invoice DEFAULT VALUES;")
    execute(target, schema)
    config = parse_config({"roots": [{"table": "invoice", "fraction": 1.0}]})
    run(config, source, target)
    report = verify(config, source, target)
    assert report.ok and report.checked_sequences == 1  # invoice_id_seq; inv fills no integer column
    assert rows(target, "SELECT nextval('invoice_id_seq'), nextval('inv')") == [(3, 1)]


def test_a_sequence_shared_with_a_table_outside_the_configuration_goes_past_its_values(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """A development-only table and a table of another schema draw from the sampled table's sequence."""
    schema = """
    CREATE SEQUENCE shared;
    CREATE TABLE a (id int DEFAULT nextval('shared') PRIMARY KEY);
    """
    outside = """
    CREATE TABLE dev_only (id bigint DEFAULT nextval('shared') PRIMARY KEY);
    CREATE SCHEMA extra; CREATE TABLE extra.b (n int DEFAULT nextval('public.shared'));
    INSERT INTO dev_only VALUES (70); INSERT INTO extra.b VALUES (90);
    """
    source, target = make_database(), make_database()
    execute(source, schema + "INSERT INTO a VALUES (1), (2);")
    execute(target, schema + outside)
    config = parse_config({"roots": [{"table": "a", "fraction": 1.0}]})
    run(config, source, target)
    assert rows(target, "SELECT nextval('shared')") == [(91,)]  # was 3: only table a was looked at
    execute(target, "ALTER SEQUENCE shared RESTART WITH 80")
    assert verify(config, source, target).problems == [
        "sequence public.shared would hand out 80, a value extra.b.n, public.a.id, public.dev_only.id already "
        "hold (up to 90); run the sampler again, or ALTER SEQUENCE public.shared RESTART WITH 91"
    ]


def _sequence_state(rows: Rows, url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    )


def test_an_exact_plan_leaves_every_sequence_where_it_was(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    """Repro: run, then plan --exact with another sample, then verify (setval survived the rollback)."""
    source, target = makapix
    makapix_config["roots"] = [{"table": "users", "fraction": 1.0}]
    config = parse_config(makapix_config)
    run(config, source, target)
    before = _sequence_state(rows, target)
    makapix_config["roots"] = [{"table": "users", "fraction": 1.0, "where": "id = 1"}]
    plan(parse_config(makapix_config), source, target, exact=True)
    assert _sequence_state(rows, target) == before
    assert verify(config, source, target).ok


def test_a_run_that_fails_after_the_sequence_reset_leaves_sequences_unchanged(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if killed during ANALYZE, just before COMMIT."""
    from sampling import engine

    source, target = makapix
    before = _sequence_state(rows, target)

    def fail(_loader: object) -> None:
        raise SamplingError("killed during ANALYZE")

    monkeypatch.setattr(engine._Loader, "analyze", fail)
    with pytest.raises(SamplingError, match="killed during ANALYZE"):
        run(parse_config(makapix_config), source, target)
    assert _sequence_state(rows, target) == before


# --- Classic inheritance, extension tables, plan's parent count (issue 13: defects 3, 8, 9) --------

INHERITANCE_SQL = """
CREATE TABLE payment (payment_id int PRIMARY KEY, amount numeric NOT NULL);
CREATE TABLE payment_2007 () INHERITS (payment);
CREATE TABLE payment_2008 () INHERITS (payment);
"""


def test_inherited_tables_are_read_and_emptied_without_their_children(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = make_database(), make_database()
    execute(
        source,
        INHERITANCE_SQL
        + "INSERT INTO payment VALUES (1, 1), (2, 2); INSERT INTO payment_2007 VALUES (3, 3), (4, 4);"
        + "INSERT INTO payment_2008 VALUES (5, 5);",
    )
    execute(target, INHERITANCE_SQL + "INSERT INTO payment_2008 VALUES (80, 80);")  # dev's own rows
    config = parse_config(
        {
            "roots": [{"table": "payment", "fraction": 1.0}, {"table": "payment_2007", "fraction": 1.0}],
            "tables": {"payment_2008": {"copy": "none"}},
        }
    )
    assert plan(config, source).tables["public.payment"].selected == 2
    run(config, source, target)
    assert ids(rows, target, "SELECT payment_id FROM ONLY payment ORDER BY 1") == [1, 2]
    assert ids(rows, target, "SELECT payment_id FROM ONLY payment_2007 ORDER BY 1") == [3, 4]
    assert ids(rows, target, "SELECT payment_id FROM payment_2008") == [80]  # copy: none, untouched
    assert verify(config, source, target).ok


def test_verify_finds_inherited_rows_duplicated_in_the_parent(
    make_database: Callable[[], str], execute: Callable[[str, str], None]
) -> None:
    source, target = make_database(), make_database()
    execute(source, INHERITANCE_SQL + "INSERT INTO payment_2007 VALUES (3, 3), (4, 4);")
    execute(target, INHERITANCE_SQL)
    config = parse_config(
        {
            "roots": [{"table": "payment", "fraction": 1.0}, {"table": "payment_2007", "fraction": 1.0}],
            "tables": {"payment_2008": {"copy": "none"}},
        }
    )
    run(config, source, target)
    execute(target, "INSERT INTO payment SELECT * FROM payment_2007")  # what a read without ONLY loaded
    assert verify(config, source, target).problems == [
        "public.payment: 2 rows are also rows of its inheritance child public.payment_2007 or of its "
        "descendants (the parent was read without ONLY); run the sampler again"
    ]


def test_verify_compares_whole_rows_with_every_descendant_of_an_inherited_parent(
    make_database: Callable[[], str], execute: Callable[[str, str], None]
) -> None:
    """Compared by key, development's own rows in a copy: none child were reported as duplicates; read
    with ONLY, a grandchild's rows copied into the top parent were not."""
    schema = INHERITANCE_SQL + "CREATE TABLE payment_2008_q1 () INHERITS (payment_2008);"
    source, target = make_database(), make_database()
    execute(source, schema + "INSERT INTO payment VALUES (1, 1); INSERT INTO payment_2007 VALUES (3, 3);")
    execute(
        target,
        schema
        + "INSERT INTO payment_2008 VALUES (1, 80); INSERT INTO payment_2008_q1 VALUES (9, 90), (10, 100);",
    )
    config = parse_config(
        {
            "roots": [{"table": "payment", "fraction": 1.0}, {"table": "payment_2007", "fraction": 1.0}],
            "tables": {"payment_2008": {"copy": "none"}, "payment_2008_q1": {"copy": "none"}},
        }
    )
    run(config, source, target)
    report = verify(config, source, target)
    assert report.ok, report.problems  # payment (1, 1) and development's payment_2008 (1, 80) differ
    execute(target, "INSERT INTO payment SELECT * FROM payment_2008_q1")
    assert verify(config, source, target).problems == [
        "public.payment: 2 rows are also rows of its inheritance child public.payment_2008 or of its "
        "descendants (the parent was read without ONLY); run the sampler again"
    ]


def test_tables_that_belong_to_an_extension_are_not_application_tables(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """Like PostGIS's spatial_ref_sys: pg_depend marks it as a member of the extension."""
    schema = """
    CREATE TABLE spatial_ref_sys (srid int PRIMARY KEY, auth_name text);
    ALTER EXTENSION plpgsql ADD TABLE spatial_ref_sys;
    CREATE TABLE place (id int PRIMARY KEY, name text);
    """
    source, target = make_database(), make_database()
    execute(
        source,
        schema + "INSERT INTO place VALUES (1, 'a'); INSERT INTO spatial_ref_sys VALUES (4326, 'EPSG');",
    )
    execute(target, schema + "INSERT INTO spatial_ref_sys VALUES (4326, 'EPSG');")
    config = parse_config({"roots": [{"table": "place", "fraction": 1.0}]})
    result = plan(config, source, target)
    assert result.unreached == [] and list(result.tables) == ["public.place"]
    run(config, source, target)
    assert rows(target, "SELECT srid FROM spatial_ref_sys") == [(4326,)]
    with pytest.raises(ConfigError, match="no table 'spatial_ref_sys'"):
        plan(parse_config({"roots": [{"table": "spatial_ref_sys", "fraction": 1.0}]}), source)


# --- The personal-data guard (issue 13: defect 7) --------------------------------------------------

GUARD_SQL = """
CREATE TABLE users (username text PRIMARY KEY, email text UNIQUE, id_card uuid UNIQUE);
CREATE TABLE posts (id int PRIMARY KEY, author text REFERENCES users, author_email text REFERENCES users (email),
                    card uuid REFERENCES users (id_card));
CREATE TABLE address (address_id int PRIMARY KEY, phone bigint, phone_verified boolean, phone_id int);
CREATE TABLE customer (id int PRIMARY KEY, address_id int REFERENCES address, date_of_birth date,
                       dob text, tax_id numeric, created_at timestamptz);
"""


def test_text_keys_and_strong_personal_names_need_a_decision_whatever_their_type(
    make_database: Callable[[], str], execute: Callable[[str, str], None]
) -> None:
    """A text key with a personal name passed silently once keys were exempt whatever their type."""
    source, target = make_database(), make_database()
    execute(source, GUARD_SQL)
    execute(target, GUARD_SQL)
    bare = {"roots": [{"table": "posts", "fraction": 1.0}, {"table": "customer", "fraction": 1.0}]}
    assert plan(parse_config(bare), source).sensitive_without_rule == [
        "address.phone",  # a number, but a phone number
        "customer.date_of_birth",
        "customer.dob",
        "customer.tax_id",
        "posts.author_email",
        "users.username",
        "users.email",
    ]
    with pytest.raises(
        ConfigError, match=r"tables.users.columns.username: 'username' is part of a foreign key"
    ):
        plan(
            parse_config({**bare, "tables": {"users": {"columns": {"username": {"rule": "pseudonym"}}}}}),
            source,
        )
    decided = {
        **bare,
        "tables": {
            "users": {"columns": {"username": "keep", "email": "keep"}},
            "posts": {"columns": {"author_email": "keep"}},
            "address": {"columns": {"phone": {"rule": "null"}}},
            "customer": {"columns": {c: {"rule": "null"} for c in ("date_of_birth", "dob", "tax_id")}},
        },
    }
    assert plan(parse_config(decided), source, target).sensitive_without_rule == []


# --- Locks (issue 13: defect 5) --------------------------------------------------------------------


def test_a_session_holding_a_lock_stops_the_run_with_its_name_and_how_to_retry(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    """A developer's open transaction on a table the run empties made the run wait forever at TRUNCATE."""
    source, target = makapix
    makapix_config["lock_timeout"] = "1s"
    with psycopg.connect(target, application_name="dev-shell") as developer:
        developer.execute("SELECT count(*) FROM posts")  # idle in transaction, holding ACCESS SHARE
        pid = developer.info.backend_pid
        started = time.monotonic()
        with pytest.raises(SamplingError) as stopped:
            run(parse_config(makapix_config), source, target)
        assert time.monotonic() - started < 20
    message = str(stopped.value)
    assert "the target database did not grant a lock within lock_timeout 1s" in message
    assert f"pid {pid} (application_name 'dev-shell', state 'idle in transaction'" in message
    assert f"SELECT pg_terminate_backend({pid})" in message and "then run again" in message
    assert ids(rows, target, "SELECT id FROM users") == [99]  # nothing changed


def test_lock_timeout_must_be_a_duration(makapix_config: dict[str, Any]) -> None:
    makapix_config["lock_timeout"] = "forever"
    with pytest.raises(ConfigError, match=r"lock_timeout: must look like '30s'"):
        parse_config(makapix_config, "cfg.yaml")


# --- Tables outside the sample that reference it (issue 13: defect 4) ------------------------------

# A development-only table (a migration ahead of production) with a table referencing it in turn,
# and a table in a schema the configuration leaves out; both reference sampled users.
OUTSIDE_SQL = """
CREATE TABLE dev_notes (id int PRIMARY KEY, user_id bigint NOT NULL REFERENCES users);
CREATE TABLE dev_note_tags (note_id int NOT NULL REFERENCES dev_notes, tag text);
INSERT INTO dev_notes VALUES (1, 1), (2, 99);
INSERT INTO dev_note_tags VALUES (1, 'kept'), (2, 'on a note of a user the sample replaces');
"""
EXTRA_SCHEMA_SQL = "CREATE SCHEMA extra; CREATE TABLE extra.likes (user_id bigint REFERENCES public.users);"


@pytest.fixture
def outside(makapix: tuple[str, str], execute: Callable[[str, str], None]) -> tuple[str, str]:
    source, target = makapix
    execute(source, EXTRA_SCHEMA_SQL + "INSERT INTO extra.likes VALUES (1);")
    execute(
        target,
        "SET session_replication_role = replica;"
        + OUTSIDE_SQL
        + EXTRA_SCHEMA_SQL
        + "INSERT INTO extra.likes VALUES (2), (99);",
    )
    return source, target


OUTSIDE_LINKS = [
    "extra.likes(user_id) -> public.users(id)",
    "public.dev_note_tags(note_id) -> public.dev_notes(id)",
    "public.dev_notes(user_id) -> public.users(id)",
]


def test_plan_names_the_tables_outside_the_sample_that_reference_it(
    outside: tuple[str, str], makapix_config: dict[str, Any]
) -> None:
    source, target = outside
    config = parse_config(makapix_config)
    assert plan(config, source, target).outside_references == OUTSIDE_LINKS
    # Without a target, the source's tables outside the configured schemas.
    assert plan(config, source).outside_references == ["extra.likes(user_id) -> public.users(id)"]


def test_outside_rows_whose_references_still_resolve_are_kept_the_others_pruned(
    outside: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    """The default rule, prune; it used to fail at TRUNCATE ("cannot truncate a table referenced ...")."""
    source, target = outside
    config = parse_config(makapix_config)
    summary = run(config, source, target)
    assert rows(target, "SELECT id, user_id FROM dev_notes") == [(1, 1)]
    assert rows(target, "SELECT tag FROM dev_note_tags") == [("kept",)]  # cascaded to the second level
    assert rows(target, "SELECT user_id FROM extra.likes") == [(2,)]
    assert summary.outside_pruned == {"extra.likes": 1, "public.dev_notes": 1, "public.dev_note_tags": 1}
    report = verify(config, source, target)
    assert report.ok, report.problems
    assert summary.tables["public.users"].rows == 5  # the sample itself is the same as with TRUNCATE


def test_outside_tables_can_be_emptied_or_refused(
    outside: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = outside
    with pytest.raises(SamplingError, match=r"outside_references: prune .* or empty") as refused:
        run(parse_config({**makapix_config, "outside_references": "refuse"}), source, target)
    assert all(link in str(refused.value) for link in OUTSIDE_LINKS)
    assert rows(target, "SELECT count(*) FROM dev_notes") == [(2,)]

    summary = run(parse_config({**makapix_config, "outside_references": "empty"}), source, target)
    assert summary.outside_emptied == ["extra.likes", "public.dev_note_tags", "public.dev_notes"]
    for table in ("dev_notes", "dev_note_tags", "extra.likes"):
        assert rows(target, f"SELECT count(*) FROM {table}") == [(0,)]
    assert verify(parse_config(makapix_config), source, target).ok


def _run_blocked_by(target: str, hold: str, run_it: Callable[[], object]) -> tuple[int, str]:
    """Run ``run_it`` while a development session holds what ``hold`` locks; (its pid, the error)."""
    with psycopg.connect(target, application_name="dev-shell") as developer:
        developer.execute(hold)  # type: ignore[arg-type]  # idle in transaction, keeping its locks
        with pytest.raises(SamplingError) as stopped:
            run_it()
        return developer.info.backend_pid, str(stopped.value)


def test_a_lock_held_on_an_outside_table_the_run_empties_names_its_session(
    outside: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    """The lock was not on a replaced table's name, so the error said "none left" and named no one."""
    source, target = outside
    config = parse_config({**makapix_config, "outside_references": "empty", "lock_timeout": "1s"})
    pid, message = _run_blocked_by(
        target, "SELECT count(*) FROM dev_note_tags", lambda: run(config, source, target)
    )
    assert f"pid {pid} (application_name 'dev-shell', state 'idle in transaction'" in message
    assert f"SELECT pg_terminate_backend({pid})" in message and "none left" not in message
    assert rows(target, "SELECT count(*) FROM dev_note_tags") == [(2,)]


def test_a_lock_held_on_a_sequence_the_run_restarts_names_its_session(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    config = parse_config({**makapix_config, "lock_timeout": "1s"})
    hold = "SELECT nextval('comments_id_seq')"  # ROW EXCLUSIVE on the sequence; ALTER SEQUENCE waits
    pid, message = _run_blocked_by(target, hold, lambda: run(config, source, target))
    assert f"pid {pid} (application_name 'dev-shell', state 'idle in transaction'" in message
    assert "the target database did not grant a lock within lock_timeout 1s" in message
    assert ids(rows, target, "SELECT id FROM users") == [99]  # nothing changed


def test_verify_finds_an_outside_row_that_dangles(
    outside: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None]
) -> None:
    source, target = outside
    config = parse_config(makapix_config)
    run(config, source, target)
    execute(target, "SET session_replication_role = replica; INSERT INTO dev_notes VALUES (3, 4242);")
    assert verify(config, source, target).problems == [
        "public.dev_notes(user_id) -> public.users(id) (dev_notes_user_id_fkey, a table outside the sample): "
        "1 rows reference missing rows"
    ]


def test_a_source_role_without_select_is_told_so_not_invalid_sql(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None], rows: Rows
) -> None:
    """Issue 15: a permission problem on the source was reported as "not valid SQL"."""
    import uuid

    from psycopg.conninfo import make_conninfo

    source, target = makapix
    role = f"reader_{uuid.uuid4().hex[:8]}"
    execute(source, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        for schema in ("public", "audit"):
            execute(source, f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            execute(source, f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
        execute(source, f"REVOKE SELECT ON users FROM {role}")
        limited = make_conninfo(source, user=role, password=f"pw-{role}")
        with pytest.raises(SamplingError) as refused:
            run(parse_config(makapix_config), limited, target)
        message = str(refused.value)
        assert f"the source role '{role}' may not read what the selection of table" in message
        assert "permission denied for table users" in message
        assert f"grant-reader --role {role}" in message
        assert "not valid SQL" not in message
        assert rows(target, "SELECT id FROM users") == [(99,)]
    finally:
        execute(source, f"DROP OWNED BY {role}")
        execute(source, f"DROP ROLE {role}")
