"""Images for the tests on the real Docker engine, built offline from Debian's packages.

No registry can be reached, so nothing is pulled: each image is built here from Debian packages and
tagged with a hash of its recipe, so a machine that built it once reuses it.

``busybox_image``: Debian's busybox-static (sh, httpd, nc, wget, sleep) in an otherwise empty root;
small containers for tests that need a process, a port or a mount, not an application.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors

IMAGE_REPOSITORY = "makapix-test"


def recipe_tag(name: str, *recipe: object) -> str:
    """``makapix-test/NAME:<hash>``: the hash of everything that decides the image's content."""
    digest = hashlib.sha256(repr(recipe).encode()).hexdigest()[:12]
    return f"{IMAGE_REPOSITORY}/{name}:{digest}"


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def download_debs(packages: list[str], into: Path) -> list[Path]:
    """``apt-get download`` (no install, no root needed once the package lists exist)."""
    result = subprocess.run(
        ["apt-get", "download", *packages], cwd=into, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"apt-get download {' '.join(packages)} failed (run 'apt-get update' as root first?):\n"
            f"{result.stderr[-2000:]}"
        )
    return sorted(into.glob("*.deb"))


def busybox_image(client: docker.DockerClient) -> str:
    tag = recipe_tag("busybox", "busybox-static", inspect.getsource(busybox_image))
    if image_exists(client, tag):
        return tag
    with tempfile.TemporaryDirectory() as work:
        (deb,) = download_debs(["busybox-static"], Path(work))
        root = Path(work, "root")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        busybox = root / "bin" / "busybox"
        applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(busybox, arcname="bin/busybox")
            for applet in applets.stdout.split():
                if applet == "busybox":
                    continue
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
            for directory in ("tmp", "etc", "var/www", "data"):
                info = tarfile.TarInfo(directory)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if directory == "tmp" else 0o755
                tar.addfile(info)
        repository, version = tag.rsplit(":", 1)
        client.api.import_image_from_data(
            archive.getvalue(), repository=repository, tag=version, changes=['CMD ["/bin/sh"]']
        )
    return tag
