"""The isolation audit on the real Docker engine: each finding kind, seeded with busybox containers.

Every container and network is named ``audit-test-<hex>-...`` and carries the test-only project
``audit-test-<hex>`` in its labels; the audit is run for that project only, so the stacks other
engineers deploy on the same engine are neither touched nor asserted about.  Everything seeded is
removed afterwards, by id.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.audit import AuditReport, Kind, audit

pytestmark = pytest.mark.engine


class Seed:
    """Creates small containers and networks of one test-only project and removes exactly those."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.project = f"audit-test-{uuid.uuid4().hex[:10]}"
        self.containers: list[Any] = []
        self.networks: list[Any] = []

    def name(self, suffix: str) -> str:
        return f"{self.project}-{suffix}"

    def labels(self, environment: str | None = None, shared: str | None = None) -> dict[str, str]:
        if shared is not None:
            return {f"{self.project}.shared": shared}
        return {f"{self.project}.environment": environment} if environment else {}

    def network(self, suffix: str, environment: str | None = None, internal: bool = True) -> str:
        network = self.client.networks.create(
            self.name(suffix), driver="bridge", internal=internal, labels=self.labels(environment)
        )
        self.networks.append(network)
        return str(self.name(suffix))

    def container(
        self,
        suffix: str,
        owner: str | None = None,
        *,
        networks: tuple[str, ...] = (),
        aliases: tuple[str, ...] = (),
        shared: str | None = None,
        start: bool = True,
        **options: Any,
    ) -> Any:
        first, *others = networks or (None,)
        container = self.client.containers.create(
            self.image,
            ["sleep", "600"],
            name=self.name(suffix),
            labels=self.labels(owner, shared),
            network=first,
            **options,
        )
        self.containers.append(container)
        for network in others:
            self.client.networks.get(network).connect(container, aliases=list(aliases) or None)
        if start:
            container.start()
        return container

    def audit(self) -> AuditReport:
        return audit(self.client, [self.project])

    def remove(self) -> None:
        for container in self.containers:
            container.remove(force=True)
        for network in self.networks:
            network.remove()


@pytest.fixture
def seed(docker_client: Any, busybox_image: str) -> Iterator[Seed]:
    seeded = Seed(docker_client, busybox_image)
    try:
        yield seeded
    finally:
        seeded.remove()


def kinds(report: AuditReport) -> list[Kind]:
    return [finding.kind for finding in report.findings]


def separated_environments(seed: Seed, vault: Path) -> None:
    """The program's layout in small: per environment an internal network, an edge network, a db and
    an api (with a vault, secrets and a database URL); the shared edge joins both edge networks."""
    seed.network("prod-internal", "production")
    seed.network("dev-internal", "development")
    seed.network("prod-edge", internal=False)
    seed.network("dev-edge", internal=False)
    for environment, short in (("production", "prod"), ("development", "dev")):
        (vault / short).mkdir(parents=True)
        seed.container(f"{short}-db", environment, networks=(seed.name(f"{short}-internal"),))
        seed.container(
            f"{short}-api",
            environment,
            networks=(seed.name(f"{short}-internal"), seed.name(f"{short}-edge")),
            environment={
                "DATABASE_URL": f"postgresql://app:{short}-password-{seed.project}@{seed.name(f'{short}-db')}:5432/app",
                "JWT_SECRET_KEY": f"{short}-jwt-{seed.project}",
                "ENVIRONMENT": environment,
            },
            volumes={str(vault / short): {"bind": "/vault", "mode": "rw"}},
        )
    seed.container("edge-caddy", shared="edge", networks=(seed.name("prod-edge"), seed.name("dev-edge")))


def test_two_separated_environments_yield_no_finding(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    report = seed.audit()
    assert report.findings == (), report.render_text()
    summary = report.projects[0]
    assert summary.environments == {
        "development": (seed.name("dev-api"), seed.name("dev-db")),
        "production": (seed.name("prod-api"), seed.name("prod-db")),
    }
    assert summary.shared == {"edge": (seed.name("edge-caddy"),)}


def test_a_network_joined_by_both_environments(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    seed.container("dev-intruder", "development", networks=(seed.name("prod-internal"),))
    assert kinds(seed.audit()) == [Kind.SHARED_NETWORK]
    finding = seed.audit().findings[0]
    assert finding.networks == (seed.name("prod-internal"),)
    assert seed.name("dev-intruder") in finding.containers


def test_the_shared_edge_off_the_edge_networks(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    seed.client.networks.get(seed.name("prod-internal")).connect(seed.name("edge-caddy"))
    report = seed.audit()
    assert kinds(report) == [Kind.SHARED_NETWORK]
    assert report.findings[0].containers == (seed.name("edge-caddy"),)


def test_an_unlabelled_container_on_an_environment_network(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    seed.container("by-hand", networks=(seed.name("dev-internal"),), start=False)
    report = seed.audit()
    assert kinds(report) == [Kind.UNLABELLED_CONTAINER]
    assert report.findings[0].containers == (seed.name("by-hand"),)
    assert seed.name("by-hand") in report.other_containers


def test_overlapping_bind_mounts(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    (tmp_path / "prod" / "posts").mkdir()
    seed.container(
        "dev-reader",
        "development",
        networks=(seed.name("dev-internal"),),
        volumes={str(tmp_path / "prod" / "posts"): {"bind": "/vault", "mode": "ro"}},
    )
    report = seed.audit()
    assert kinds(report) == [Kind.OVERLAPPING_MOUNT]
    assert set(report.findings[0].paths) == {str(tmp_path / "prod"), str(tmp_path / "prod" / "posts")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_overlapping_published_ports(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    port = free_port()
    seed.network("prod-published", "production", internal=False)
    seed.network("dev-published", "development", internal=False)
    seed.container(
        "prod-port",
        "production",
        networks=(seed.name("prod-published"),),
        ports={"5432/tcp": ("127.0.0.1", port)},
    )
    # Development's container waits to take the port on every address once production's stops.
    seed.container(
        "dev-port",
        "development",
        networks=(seed.name("dev-published"),),
        ports={"5432/tcp": port},
        start=False,
    )
    report = seed.audit()
    assert kinds(report) == [Kind.OVERLAPPING_PORT]
    assert f":{port}/tcp" in report.findings[0].message
    assert set(report.findings[0].containers) == {seed.name("prod-port"), seed.name("dev-port")}


def test_the_same_secret_in_both_environments(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    api_key = f"re_{uuid.uuid4().hex}"
    for environment, short in (("production", "prod"), ("development", "dev")):
        seed.container(
            f"{short}-mailer",
            environment,
            networks=(seed.name(f"{short}-internal"),),
            environment={"RESEND_API_KEY": api_key},
        )
    report = seed.audit()
    assert kinds(report) == [Kind.SHARED_SECRET]
    assert "RESEND_API_KEY" in report.findings[0].message
    assert api_key not in report.render_text() + str(report.as_json())


def test_pointing_at_the_other_environments_database(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)
    seed.container(
        "dev-worker",
        "development",
        networks=(seed.name("dev-internal"),),
        environment={"DATABASE_URL": f"postgresql://app@{seed.name('prod-db')}:5432/app"},
    )
    report = seed.audit()
    assert kinds(report) == [Kind.CROSS_ENVIRONMENT_HOST]
    assert report.findings[0].containers == (seed.name("dev-worker"), seed.name("prod-db"))


def test_the_command_line_exits_1_on_a_finding_and_names_it(seed: Seed, tmp_path: Path) -> None:
    separated_environments(seed, tmp_path)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops", "audit", "--project", seed.project],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    seed.container("by-hand", networks=(seed.name("prod-internal"),), start=False)
    found = run()
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"[unlabelled-container] {seed.project}: container {seed.name('by-hand')}" in found.stdout
