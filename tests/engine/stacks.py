"""Deploying a pair of stacks (prod + dev of one application) on the engine, for the engine tests.

The order is the README's fresh-machine order: dev (prod absent), prod (its digests promoted from
dev), dev again (now with prod's outputs: the isolation check and the sampling run). Each stack is
rendered with its real configuration; only what must differ on a test machine is overridden
(``TEST_OVERRIDES``): the application images come from the local test registry (so digests are real),
and pg_dump is Debian's PostgreSQL 15 (the stand-in database runs 15).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.engine import images
from tests.engine.harness import CONTAINER, Applied, StackHarness
from tools.desired_state import Rendering

REPOSITORY_ROOT = Path(__file__).parents[2]
REGISTRY = "127.0.0.1:5050"
PG_BIN = "/usr/lib/postgresql/15/bin"


def seed_makapix_prod(rendering: Rendering) -> None:
    """Production's data: the sampler test's Makapix rows, each post with its file in the vault."""
    import psycopg

    from tests.sampling.test_makapix_config import DATA

    data = DATA.replace("INSERT INTO alembic_version VALUES ('prod');", "")
    url = rendering.plain_outputs()["database_host_url"]
    vault = Path(rendering.plain_outputs()["sampling_source_vault"])
    with psycopg.connect(url, autocommit=True) as connection:
        if connection.execute("SELECT count(*) FROM users").fetchone() != (0,):
            return
        connection.execute(data)
        connection.execute("UPDATE posts SET storage_shard = left(storage_key::text, 2), format = 'png'")
        for shard, key in connection.execute("SELECT storage_shard, storage_key::text FROM posts").fetchall():
            Path(vault, shard).mkdir(parents=True, exist_ok=True)
            Path(vault, shard, f"{key}.png").write_text(f"artwork {key}\n")


def _makapix_migrations() -> str:
    from tests.sampling.test_makapix_config import SCHEMA

    # The vault sync reads each post's file path from these columns (sampling/vault.py's template).
    vault_columns = "ALTER TABLE posts ADD COLUMN storage_shard varchar(8), ADD COLUMN format varchar(10);\n"
    return "-- marker: alembic_version\n" + SCHEMA + vault_columns + "INSERT INTO alembic_version VALUES ('engine-test');\n"


@dataclass(frozen=True)
class Application:
    """One application as the engine tests deploy it."""

    project: str
    project_dir: Path
    # service -> (repository in the test registry, port the probe serves on by default)
    images: dict[str, tuple[str, int]]
    migrations: str
    host_dirs: tuple[str, ...]
    version: str = "1.0.0"

    def image(self, service: str, version: str | None = None) -> str:
        return f"{REGISTRY}/{self.images[service][0]}:{version or self.version}"

    def production_repositories(self) -> dict[str, Any]:
        """Production names only its repositories: it runs the digests promoted from them (never a tag)."""
        return {service: {"image": f"{REGISTRY}/{repository}"} for service, (repository, _) in self.images.items()}

    def overrides(self, version: str | None = None) -> dict[str, Any]:
        return {
            "services": {service: {"image": self.image(service, version)} for service in self.images},
            "release": {"pg_bin": PG_BIN},
        }


MAKAPIX = Application(
    project="makapix",
    project_dir=REPOSITORY_ROOT,
    images={"api": ("makapix/api", 8000), "web": ("makapix/web", 3000), "worker": ("makapix/api", 8000)},
    migrations=_makapix_migrations(),
    host_dirs=("/mnt/vault-1", "/mnt/vault-dev", "/srv/makapix/backups"),
)


# Flask-Migrate's version table is alembic_version whatever the prefix: both environments share it.
CLIPPYFRONT_MIGRATIONS = """-- marker: {prefix}users
DO $$ BEGIN CREATE TYPE userrole AS ENUM ('user', 'admin'); EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE TABLE {prefix}users (id int PRIMARY KEY, email text NOT NULL, role userrole NOT NULL);
CREATE TABLE {prefix}team_invitations (id int PRIMARY KEY, invited_by int REFERENCES {prefix}users, token text);
CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('engine-test') ON CONFLICT DO NOTHING;
"""

CLIPPYFRONT = Application(
    project="clippyfront",
    project_dir=REPOSITORY_ROOT / "examples" / "clippyfront",
    images={"web": ("clippyfront/clippyfront", 8000), "worker": ("clippyfront/clippyfront", 8000)},
    migrations=CLIPPYFRONT_MIGRATIONS,
    host_dirs=("/opt/clippyfront/instance", "/srv/clippyfront-dev/instance", "/srv/clippyfront/backups"),
)


def seed_clippyfront_prod(rendering: Rendering) -> None:
    """Production's users in opt_users of the shared database."""
    import psycopg

    with psycopg.connect(rendering.plain_outputs()["database_host_url"], autocommit=True) as connection:
        if connection.execute("SELECT count(*) FROM opt_users").fetchone() == (0,):
            connection.execute(
                "INSERT INTO opt_users SELECT i, 'person' || i || '@example.com', 'user' FROM generate_series(1, 60) i"
            )
            connection.execute("INSERT INTO opt_team_invitations VALUES (1, 1, 'secret-token')")


def registry_digest(client: docker.DockerClient, name: str) -> str:
    """``repo@sha256:...`` of an image in the test registry (pulled to read it)."""
    from components.images import repository_of

    image = client.images.pull(name)
    (digest,) = [d for d in image.attrs["RepoDigests"] if d.startswith(repository_of(name) + "@")]
    return str(digest)


def deploy_shared_pair(
    harness: StackHarness, application: Application, seed_prod: Callable[[Rendering], None] | None = None
) -> DeployedPair:
    """ClippyFront's first-deploy order (docs/clippyfront.md): prod with pinned digests, dev, prod promoted."""
    prepare_host(harness.client, application)
    project_dir = application.project_dir
    overrides = application.overrides()
    pins = {service: {"image": registry_digest(harness.client, application.image(service))} for service in application.images}
    print(f"[engine] {application.project}: prod, digests pinned", file=sys.stderr, flush=True)
    first_prod_render = harness.render(
        "prod", project_dir, extra_config={**overrides, "services": pins}, references={"dev": {}, "prod": {}}
    )
    first_prod = harness.apply(first_prod_render, project_dir)
    if seed_prod is not None:
        seed_prod(first_prod_render)
    print(f"[engine] {application.project}: dev, on production's servers", file=sys.stderr, flush=True)
    dev_render = harness.render(
        "dev", project_dir, extra_config=overrides, references={"prod": first_prod_render.plain_outputs()}
    )
    dev = harness.apply(dev_render, project_dir)
    print(f"[engine] {application.project}: prod, promoted from dev", file=sys.stderr, flush=True)
    prod_render = harness.render(
        "prod", project_dir, extra_config={**overrides, "services": application.production_repositories()},
        references={"dev": dev_render.plain_outputs(), "prod": first_prod_render.plain_outputs()},
    )  # fmt: skip
    prod = harness.apply(prod_render, project_dir)
    return DeployedPair(application, harness, prod, dev, first_prod)


def start_registry(workdir: Path) -> subprocess.Popen[bytes] | None:
    """Debian's docker-registry on 127.0.0.1:5050 (None if one answers already)."""
    import urllib.request

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2)
            return True
        except OSError:
            return False

    if answers():
        return None
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "storage:\n  filesystem:\n    rootdirectory: /var/lib/makapix-test-registry\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {REGISTRY}\n"
    )
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(50):
        if answers():
            return registry
        time.sleep(0.2)
    registry.kill()
    raise RuntimeError("docker-registry did not answer on 127.0.0.1:5050 (apt-get install docker-registry)")


def push_application_images(client: docker.DockerClient, application: Application, version: str) -> None:
    """Build the probe image for each service of ``application`` and push it as ``version``."""
    for repository, port in sorted(set(application.images.values())):
        # The version is part of the recipe, so two versions are two images with two digests.
        migrations = application.migrations + f"-- release {version}\n"
        name = f"{REGISTRY}/{repository}:{version}"
        images.probe_image(client, [name], port, migrations)
        for line in client.images.push(f"{REGISTRY}/{repository}", tag=version, stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"push of {name} failed: {line['error']}")
        client.images.remove(name)  # the harness pulls it back by tag, as RemoteImage does


@dataclass
class DeployedPair:
    """prod and dev of one application, applied on the engine; what the tests look at."""

    application: Application
    harness: StackHarness
    prod: Applied
    dev: Applied
    first_apply: Applied  # the first stack applied (dev for Makapix, prod for ClippyFront)
    history: list[Applied] = field(default_factory=list)

    def containers(self, rendering: Rendering) -> dict[str, Any]:
        return {
            resource.name: resource.plain_inputs()
            for resource in rendering.of_type(CONTAINER)
            if not resource.options.get("provider")
        }


def prepare_host(client: docker.DockerClient, application: Application) -> None:
    """What a fresh host has before the first deploy: no leftovers, the host directories made."""
    remove_leftovers(client, application.project)
    for directory in application.host_dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)


def remove_leftovers(client: docker.DockerClient, project: str) -> None:
    """A fresh machine: remove what an interrupted earlier run left (containers, networks, volumes
    named ``<project>-...``; only these tests deploy the stacks on this engine)."""
    prefix = f"{project}-"
    for container in client.containers.list(all=True):
        if container.name.startswith(prefix):
            container.remove(force=True)
    for network in client.networks.list():
        if network.name.startswith(prefix):
            network.remove()
    for volume in client.volumes.list():
        if volume.name.startswith(prefix):
            volume.remove(force=True)


def deploy_pair(
    harness: StackHarness, application: Application, seed_prod: Callable[[Rendering], None] | None = None
) -> DeployedPair:
    """dev (prod absent), prod, then ``seed_prod`` (production's data), then dev again (samples prod)."""
    prepare_host(harness.client, application)
    project_dir = application.project_dir
    overrides = application.overrides()
    print(f"[engine] {application.project}: dev (prod absent)", file=sys.stderr, flush=True)
    first_dev_render = harness.render(
        "dev", project_dir, extra_config=overrides, environ={"MAKAPIX_ABSENT_STACKS": "prod"}
    )
    first_dev = harness.apply(first_dev_render, project_dir)
    print(f"[engine] {application.project}: prod, promoted from dev", file=sys.stderr, flush=True)
    # Production: digests promoted from dev, from the repositories it names, never tags.
    prod_overrides = {**overrides, "services": application.production_repositories()}
    # prod reads dev's digests, and its own last outputs (none yet: a stack's first deploy).
    prod_render = harness.render(
        "prod",
        project_dir,
        extra_config=prod_overrides,
        references={"dev": first_dev_render.plain_outputs(), "prod": {}},
    )
    prod = harness.apply(prod_render, project_dir)
    if seed_prod is not None:
        seed_prod(prod_render)
    print(f"[engine] {application.project}: dev again, reading prod", file=sys.stderr, flush=True)
    dev_render = harness.render("dev", project_dir, extra_config=overrides, references={"prod": prod_render.plain_outputs()})
    dev = harness.apply(dev_render, project_dir)
    return DeployedPair(application, harness, prod, dev, first_dev)


def wait_healthy(client: docker.DockerClient, names: list[str], timeout: float = 180) -> dict[str, str]:
    """Each container's health status once all are healthy (or, at the timeout, as they are)."""
    deadline = time.monotonic() + timeout
    while True:
        status = {}
        for name in names:
            state = client.api.inspect_container(name)["State"]
            status[name] = state.get("Health", {}).get("Status", "running" if state["Running"] else state["Status"])
        if all(value in ("healthy", "running") for value in status.values()) or time.monotonic() > deadline:
            return status
        time.sleep(2)


def require_tools() -> None:
    from shutil import which

    for tool in ("debootstrap", "docker-registry", "docker"):
        if which(tool) is None:
            pytest.fail(f"{tool} is not installed: the engine tests need it (scripts/docker-engine installs it)")
