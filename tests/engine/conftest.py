"""Fixtures of the full-stack engine tests: the offline image set, the test registry, the harness."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine import images, stacks
from tests.engine.harness import StackHarness


@pytest.fixture(scope="session")
def infrastructure_images(docker_client: Any) -> None:
    """Stand-ins tagged with the infrastructure image names the stacks render (built once, cached)."""
    stacks.require_tools()
    images.infrastructure_images(
        docker_client,
        postgres="postgres:17.2-alpine",
        redis="redis:7.4-alpine",
        mosquitto="eclipse-mosquitto:2.0.20",
        edge="lucaslorentz/caddy-docker-proxy:2.10.0-alpine",
    )


@pytest.fixture(scope="session")
def test_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1:5050, holding the application images."""
    registry = stacks.start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield stacks.REGISTRY
    finally:
        if registry is not None:
            registry.terminate()
            try:
                registry.wait(timeout=10)
            except subprocess.TimeoutExpired:
                registry.kill()


@pytest.fixture(scope="session")
def harness(docker_client: Any, infrastructure_images: None, tmp_path_factory: pytest.TempPathFactory) -> StackHarness:
    """One harness (one 'Pulumi state') for the whole session, like one backend for every stack."""
    return StackHarness(docker_client, Path(tmp_path_factory.mktemp("harness")), stacks.REPOSITORY_ROOT)
