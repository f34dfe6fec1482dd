"""``python -m ops backup --wait``: a deploy's backup waits for a freshly started database, then dumps it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

from ops.backup import wait_for_server
from ops.errors import OpsError


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_server_that_comes_up_late_is_waited_for(make_database: Callable[[], str], tmp_path: Path) -> None:
    """The socket appears only after a second, as when a database container is still starting."""
    url = make_database()
    parts = urlsplit(url)
    socket_dir = Path(parse_qs(parts.query)["host"][0])
    real_socket = next(socket_dir.glob(".s.PGSQL.*"))
    late_dir = tmp_path / "starting"
    late_dir.mkdir()
    late_url = urlunsplit(parts._replace(query=f"host={late_dir}&port={real_socket.suffix[1:]}"))
    timer = threading.Timer(1.0, lambda: (late_dir / real_socket.name).symlink_to(real_socket))
    started = time.monotonic()
    timer.start()
    try:
        wait_for_server(late_url, 20, interval=0.1)
    finally:
        timer.cancel()
    assert 1.0 <= time.monotonic() - started < 15


def test_no_server_fails_after_the_wait_with_the_password_masked() -> None:
    url = f"postgresql://owner:s3cret-pw@127.0.0.1:{unused_port()}/makapix"
    started = time.monotonic()
    with pytest.raises(OpsError) as refused:
        wait_for_server(url, 1.5, interval=0.2)
    assert 1.2 <= time.monotonic() - started < 10
    message = str(refused.value)
    assert "did not accept a connection within 1.5 s" in message and "no backup was written" in message
    assert "s3cret-pw" not in message and "owner:***@127.0.0.1" in message


def test_malformed_url_fails_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(OpsError, match="OPS_DATABASE_URL: names no database"):
        wait_for_server("postgresql://owner:pw@127.0.0.1:5432", 60)
    assert time.monotonic() - started < 1


def test_cli_wait_then_nothing_written(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    env = {**os.environ, "OPS_DATABASE_URL": f"postgresql://owner:pw@127.0.0.1:{unused_port()}/makapix"}
    run = subprocess.run(
        [sys.executable, "-m", "ops", "backup", "--dir", str(backups), "--wait", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: postgresql://owner:***@127.0.0.1:")
    assert not backups.exists()
