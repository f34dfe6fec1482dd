"""Selection graph corner cases: a following cycle between tables, a root without a primary key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sampling import plan, run, verify
from sampling.config import parse_config

Rows = Callable[[str, str], list[tuple[Any, ...]]]

# posts.pinned_comment_id -> comments and comments.post_id -> posts form a cycle of links to
# follow; the nullable one (pinned_comment_id) is cut, the other is followed.
CYCLE_SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE posts (id int PRIMARY KEY, owner_id int NOT NULL REFERENCES users, pinned_comment_id int);
CREATE TABLE comments (id int PRIMARY KEY, post_id int NOT NULL REFERENCES posts, author_id int NOT NULL REFERENCES users);
ALTER TABLE posts ADD FOREIGN KEY (pinned_comment_id) REFERENCES comments;
CREATE TABLE tags (label text NOT NULL, weight int NOT NULL);  -- no primary key
"""

CYCLE_DATA = """
SET session_replication_role = replica;
INSERT INTO users VALUES (1, 'a'), (2, 'b'), (3, 'c');
INSERT INTO posts VALUES (10, 1, 101), (20, 2, 100), (30, 3, NULL);
INSERT INTO comments VALUES (100, 10, 2), (101, 10, 1), (102, 30, 3), (103, 20, 1);
INSERT INTO tags SELECT 'tag' || g, g FROM generate_series(1, 400) g;
"""


def test_a_cycle_of_followed_links_is_cut_at_its_nullable_link(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = make_database(), make_database()
    execute(source, CYCLE_SCHEMA + CYCLE_DATA)
    execute(target, CYCLE_SCHEMA)
    config = parse_config(
        {
            "roots": [{"table": "users", "fraction": 1.0, "where": "id = 1"}],
            "tables": {
                "users": {"columns": {"name": {"rule": "redact"}}},  # a person's name: needs a rule
                "comments": {"follow": "any"},
                "tags": {"copy": "none"},
            },
        }
    )
    planned = plan(config, source, target)
    assert planned.cycle_breaks == ["public.posts(pinned_comment_id) -> public.comments"]
    # Downward: post 10 (owner 1); comments on post 10 or by user 1: 100, 101, 103.
    assert planned.tables["public.comments"].selected == 3

    run(config, source, target)
    assert rows(target, "SELECT id FROM comments ORDER BY 1") == [(100,), (101,), (103,)]
    # Comment 103 is on post 20, pulled in with its owner 2 and its pinned comment 100.
    assert rows(target, "SELECT id, pinned_comment_id FROM posts ORDER BY 1") == [(10, 101), (20, 100)]
    assert rows(target, "SELECT id FROM users ORDER BY 1") == [(1,), (2,)]
    assert verify(config, source, target).ok


def test_a_root_without_primary_key_is_sampled_by_whole_row(
    make_database: Callable[[], str], execute: Callable[[str, str], None], rows: Rows
) -> None:
    source, target = make_database(), make_database()
    execute(source, CYCLE_SCHEMA + CYCLE_DATA)
    execute(target, CYCLE_SCHEMA)
    config: dict[str, Any] = {
        "seed": 5,
        "roots": [{"table": "tags", "fraction": 0.25}],
        "tables": {"users": {"copy": "empty"}, "posts": {"copy": "empty"}, "comments": {"copy": "empty"}},
    }
    run(parse_config(config), source, target)
    first = rows(target, "SELECT label FROM tags ORDER BY 1")
    assert 60 <= len(first) <= 140  # 25% of 400
    run(parse_config(config), source, target)
    assert rows(target, "SELECT label FROM tags ORDER BY 1") == first
    run(parse_config({**config, "seed": 6}), source, target)
    assert rows(target, "SELECT label FROM tags ORDER BY 1") != first
