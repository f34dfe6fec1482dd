"""The guarded source session: JIT off, a statement_timeout from the configuration, and statements that
end on the server when the sampler is interrupted (Ctrl-C), terminated (SIGTERM) or killed (SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from sampling import run
from sampling.config import parse_config
from sampling.errors import ConfigError, SamplingError
from sampling.session import connect, prepare_source

Rows = Callable[[str, str], list[tuple[Any, ...]]]
StartRun = Callable[[dict[str, Any], str, str], subprocess.Popen[bytes]]


def test_the_source_session_has_jit_off_and_the_configured_timeout(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    makapix_config["source_statement_timeout"] = "7min"
    config = parse_config(makapix_config)
    with connect(source, "source", read_only=True) as src:
        prepare_source(src, config, "")
        shown = {name: src.execute(f"SHOW {name}").fetchone() for name in ("jit", "statement_timeout")}
        assert shown == {"jit": ("off",), "statement_timeout": ("7min",)}
        assert src.execute("SHOW client_connection_check_interval").fetchone() == ("1s",)
    # The statements that select the rows run under those settings: the root takes users 1 and 2
    # only if they hold there.
    makapix_config["roots"][0]["where"] = (
        "id IN (1, 2) AND current_setting('jit') = 'off' AND current_setting('statement_timeout') = '7min'"
    )
    summary = run(parse_config(makapix_config), source, target)
    assert summary.tables["public.users"].rows == 5  # users 1 and 2, and the parents they pull in


def test_a_statement_past_the_timeout_fails_the_run_and_writes_nothing(
    makapix: tuple[str, str], makapix_config: dict[str, Any], rows: Rows
) -> None:
    source, target = makapix
    makapix_config["source_statement_timeout"] = "1s"
    makapix_config["roots"][0]["where"] = "id IN (1, 2) AND pg_sleep(2) IS NOT NULL"
    with pytest.raises(SamplingError, match="source_statement_timeout"):
        run(parse_config(makapix_config), source, target)
    assert rows(target, "SELECT id FROM users") == [(99,)]


def test_a_bad_timeout_is_a_configuration_error(makapix_config: dict[str, Any]) -> None:
    makapix_config["source_statement_timeout"] = "ten minutes"
    with pytest.raises(ConfigError, match=r"(?s)cfg.yaml.*source_statement_timeout.*'30min'"):
        parse_config(makapix_config, "cfg.yaml")


def _source_statement(rows: Rows, server: str, database: str) -> list[tuple[Any, ...]]:
    """(pid, state, wait_event) of the source backends whose last statement is the sampler's sleeping
    selection.  The EXPLAINs that check the selection first show the same text for a moment, so only
    a backend waiting in ``PgSleep`` is the selection at work."""
    return rows(
        server,
        "SELECT pid, state, wait_event FROM pg_stat_activity WHERE datname = '"
        + database
        + "' AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
    )


def _sleeping(statements: list[tuple[Any, ...]]) -> bool:
    return any(state == "active" and wait_event == "PgSleep" for _pid, state, wait_event in statements)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_sampler_ends_its_statement_on_the_source(
    stop: signal.Signals,
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    start_sampler_run: StartRun,
    rows: Rows,
    postgres_server_url: str,
) -> None:
    source, target = makapix
    database = urlsplit(source).path.lstrip("/")
    # Ten minutes of server-side work per selected user: only a cancellation ends it soon.
    makapix_config["roots"][0]["where"] = "id IN (1, 2) AND pg_sleep(600) IS NOT NULL"
    process = start_sampler_run(makapix_config, source, target)
    deadline = time.monotonic() + 90
    while (
        time.monotonic() < deadline
        and process.poll() is None
        and not _sleeping(_source_statement(rows, postgres_server_url, database))
    ):
        time.sleep(0.2)
    if process.poll() is not None:
        assert process.stderr is not None
        pytest.fail(f"the run ended before its selection started: {process.stderr.read().decode()}")
    assert _sleeping(_source_statement(rows, postgres_server_url, database)), "the selection never started"
    process.send_signal(stop)
    process.wait(timeout=30)
    if stop != signal.SIGKILL:
        assert process.returncode == 130
        assert process.stderr is not None and b"interrupted" in process.stderr.read()
    # Without a cancellation the backend would sleep on for ten minutes; give it a generous while.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(
        state == "active" for _pid, state, _wait in _source_statement(rows, postgres_server_url, database)
    ):
        time.sleep(0.2)
    assert not any(
        state == "active" for _pid, state, _wait in _source_statement(rows, postgres_server_url, database)
    )
    assert rows(target, "SELECT id FROM users") == [(99,)]
