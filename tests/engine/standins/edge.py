#!/usr/bin/python3
"""Stand-in for caddy-docker-proxy: the real Caddy, configured from the live containers' labels.

Every 2 s it lists the running containers through the mounted Docker socket, turns their ``caddy*``
labels into a Caddyfile with the repository's translation (caddy_docker_proxy.py, copied in), each
``{{upstreams PORT}}`` expanding to the container's address on its ``caddy_ingress_network`` (or on
one of CADDY_INGRESS_NETWORKS), and reloads Caddy when the text changes, as caddy-docker-proxy does.

One deviation, because no ACME server can be reached here: the global options get ``local_certs``,
so Caddy issues site certificates from its own local CA instead of Let's Encrypt.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, "/opt/edge")
from caddy_docker_proxy import LabelledContainer, caddyfile_from_containers

CADDYFILE = Path("/etc/caddy/Caddyfile")
INGRESS_NETWORKS = [n for n in __import__("os").environ.get("CADDY_INGRESS_NETWORKS", "").split(",") if n]


def labelled_containers(client: docker.DockerClient) -> list[LabelledContainer]:
    found = []
    for container in client.containers.list():
        labels = container.labels
        if not any(key == "caddy" or key.startswith(("caddy.", "caddy_")) for key in labels):
            continue
        networks = container.attrs["NetworkSettings"]["Networks"]
        wanted = [labels["caddy_ingress_network"]] if "caddy_ingress_network" in labels else INGRESS_NETWORKS
        addresses = tuple(networks[n]["IPAddress"] for n in wanted if n in networks and networks[n]["IPAddress"])
        found.append(LabelledContainer(labels=dict(labels), addresses=addresses, name=container.name))
    return found


def caddyfile(client: docker.DockerClient) -> str:
    text = caddyfile_from_containers(labelled_containers(client))
    if text.startswith("{"):
        return "{\n\tlocal_certs" + text[1:]
    return "{\n\tlocal_certs\n}\n" + text


def main() -> None:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    CADDYFILE.parent.mkdir(parents=True, exist_ok=True)
    CADDYFILE.write_text(caddyfile(client))
    caddy = subprocess.Popen(["caddy", "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"])
    while caddy.poll() is None:
        time.sleep(2)
        try:
            text = caddyfile(client)
        except Exception as error:  # a container vanished mid-listing: try again next round
            print(f"edge: {error}", flush=True)
            continue
        if text != CADDYFILE.read_text():
            CADDYFILE.write_text(text)
            print("edge: labels changed, reloading Caddy", flush=True)
            subprocess.run(["caddy", "reload", "--config", str(CADDYFILE), "--adapter", "caddyfile"], check=False)
    sys.exit(caddy.returncode)


if __name__ == "__main__":
    main()
