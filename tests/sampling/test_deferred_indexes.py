"""Plain secondary indexes are dropped for the load and rebuilt before COMMIT, exactly as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from sampling import run
from sampling.config import parse_config
from sampling.deferred_indexes import drop_secondary_indexes
from sampling.errors import SamplingError

Rows = Callable[[str, str], list[tuple[Any, ...]]]

EXTRA_INDEXES = """
CREATE INDEX posts_title_partial ON posts (lower(title)) WHERE visibility = 'public';
CREATE INDEX comments_body ON comments USING hash (body) WITH (fillfactor = 70);
CREATE UNIQUE INDEX comments_unique_body ON comments (id, body);
CREATE INDEX "Playlist Items owner" ON "Playlist Items" (owner_id, playlist_slug);
CREATE INDEX comments_clustered ON comments (author_id);
CLUSTER comments USING comments_clustered;
CREATE INDEX comments_commented ON comments (parent_id);
COMMENT ON INDEX comments_commented IS 'kept as it is';
"""

INDEXES = (
    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), indisclustered FROM pg_index "
    "WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace IN ('public'::regnamespace, "
    "'audit'::regnamespace)) ORDER BY 1"
)


def test_a_run_leaves_every_index_as_it_was(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    execute: Callable[[str, str], None],
    rows: Rows,
) -> None:
    source, target = makapix
    execute(target, EXTRA_INDEXES)
    before = rows(target, INDEXES)
    run(parse_config(makapix_config), source, target)
    assert rows(target, INDEXES) == before
    # The rebuilt indexes hold the loaded rows (an index scan finds them).
    with psycopg.connect(target) as conn:
        conn.execute("SET enable_seqscan = off")
        assert conn.execute("SELECT count(*) FROM comments WHERE parent_id = 3").fetchone() == (1,)


def test_only_plain_indexes_of_owned_tables_are_dropped_and_a_rollback_restores_them(
    makapix: tuple[str, str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    _source, target = makapix
    execute(target, EXTRA_INDEXES)
    before = rows(target, INDEXES)
    with psycopg.connect(target) as conn:
        definitions = drop_secondary_indexes(conn, [("public", "comments"), ("public", "Playlist Items")])
        dropped = sorted(d.split(" ON ")[0] for d in definitions)
        # Not the primary key, the unique index, the CLUSTER index, nor the commented one.
        assert dropped == [
            'CREATE INDEX "Playlist Items owner"',
            "CREATE INDEX comments_body",
        ]
        conn.rollback()
    assert rows(target, INDEXES) == before


def test_a_failed_run_keeps_the_indexes(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    execute: Callable[[str, str], None],
    rows: Rows,
) -> None:
    source, target = makapix
    execute(
        target, EXTRA_INDEXES + "ALTER TABLE comments ADD CONSTRAINT no_replies CHECK (parent_id IS NULL)"
    )
    before = rows(target, INDEXES)
    with pytest.raises(SamplingError, match="no_replies"):
        run(parse_config(makapix_config), source, target)
    assert rows(target, INDEXES) == before
