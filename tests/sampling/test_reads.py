"""Parallel reads: helper source connections on the main transaction's snapshot, the target load in one
transaction, errors from a helper stop the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from sampling import run
from sampling.config import parse_config
from sampling.errors import SamplingError
from sampling.session import connect, prepare_source, snapshot_helpers

Rows = Callable[[str, str], list[tuple[Any, ...]]]


def test_helpers_read_the_snapshot_of_the_main_connection(
    makapix: tuple[str, str], makapix_config: dict[str, Any], execute: Callable[[str, str], None]
) -> None:
    source, _target = makapix
    config = parse_config(makapix_config)
    with connect(source, "source", read_only=True) as src:
        prepare_source(src, config, "")
        src.execute("SELECT count(*) FROM users")  # the snapshot is taken here
        execute(source, "INSERT INTO users (id, handle, email, team_id) VALUES (7, 'Gus', 'gus@example.com', 10)")
        with snapshot_helpers(src, source, 2, config, "") as helpers:
            assert len(helpers) == 2
            for helper in helpers:
                assert helper.execute("SELECT count(*) FROM users").fetchone() == (6,)  # not 7
                assert helper.execute("SHOW jit").fetchone() == ("off",)
            pids = {helper.info.backend_pid for helper in helpers} | {src.info.backend_pid}
            assert len(pids) == 3


def test_a_run_reads_several_tables_at_once(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows, postgres_server_url: str
) -> None:
    source, target = makapix
    database = urlsplit(source).path.lstrip("/")
    # Every selection reads the users CTE: each statement sleeps about a second.
    makapix_config["roots"][0]["where"] = "id IN (1, 2) AND pg_sleep(0.5) IS NOT NULL"
    makapix_config["source_connections"] = 3
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            active = rows(
                postgres_server_url,
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' "
                "AND state = 'active' AND query LIKE 'COPY (%pg_sleep(0.5)%'",
            )[0][0]
            most = max(most, active)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        summary = run(parse_config(makapix_config), source, target)
    finally:
        done.set()
        watcher.join()
    assert most >= 2
    assert summary.total_rows == 34  # the same sample as with one connection (test_engine.py)
    assert rows(target, "SELECT id FROM posts ORDER BY 1") == [(100,), (101,), (102,), (103,)]


def test_an_error_on_a_helper_stops_the_run_and_writes_nothing(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    # Fails at run time only (EXPLAIN passes): on whichever connection reads first.
    makapix_config["roots"][0]["where"] = "id IN (1, 2) AND 1 / (id - 2) IS NOT NULL"
    with pytest.raises(SamplingError, match="division by zero"):
        run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id FROM users") == [(99,)]
