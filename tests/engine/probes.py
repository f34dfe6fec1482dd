"""Probes the engine tests run: from the host an MQTT CONNECT over mTLS, a PostgreSQL login, a GET through
the edge; a command inside a container; the container names a rendered stack declares."""

from __future__ import annotations

import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.engine.harness import CONTAINER
from tests.engine.stacks import DeployedPair
from tools.desired_state import Rendering


def mqtt_connect(host: str, port: int, ca_pem: str, cert_pem: str, key_pem: str, client_id: str = "engine-test") -> str:
    """'accepted' if the broker answers CONNECT with CONNACK 0, else what went wrong.

    The packet is MQTT 3.1.1's CONNECT (clean session, keepalive 60 s); no client library needed.
    """
    with tempfile.TemporaryDirectory() as directory:
        files = {}
        for name, pem in (("ca", ca_pem), ("cert", cert_pem), ("key", key_pem)):
            files[name] = Path(directory, name)
            files[name].write_text(pem)
        context = ssl.create_default_context(cafile=str(files["ca"]))
        context.check_hostname = False  # the server certificate names the broker's DNS names, not 127.0.0.1
        context.load_cert_chain(str(files["cert"]), str(files["key"]))
        payload = len(client_id).to_bytes(2, "big") + client_id.encode()
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c"
        packet = b"\x10" + bytes([len(variable) + len(payload)]) + variable + payload
        try:
            with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
                tls.sendall(packet)
                answer = tls.recv(4)
        except (OSError, ssl.SSLError) as error:
            return f"refused: {type(error).__name__}: {error}"
    if answer[:1] == b"\x20" and len(answer) == 4:
        return "accepted" if answer[3] == 0 else f"refused: CONNACK return code {answer[3]}"
    return f"refused: answer {answer!r}"


def postgres_login(url: str) -> str:
    """'ok <user>@<db>' if a login over TCP works, else the error."""
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            user, database = connection.execute("SELECT current_user::text, current_database()::text").fetchone() or ("", "")
            return f"ok {user}@{database}"
    except psycopg.Error as error:
        return f"failed: {error}"


def names(rendering: Rendering) -> list[str]:
    return [
        resource.plain_inputs()["name"]
        for resource in rendering.of_type(CONTAINER)
        if not resource.options.get("provider")
    ]


def exec_in(pair: DeployedPair, container: str, *command: str) -> tuple[int, str]:
    exit_code, output = pair.harness.client.containers.get(container).exec_run(list(command))
    return int(exit_code), output.decode(errors="replace")


def through_edge(domain: str, path: str) -> tuple[int, dict[str, str], str]:
    """GET https://DOMAIN/PATH through the edge on the host's port 443 (certificates from Caddy's local CA)."""
    done = subprocess.run(
        ["curl", "-sk", "--max-time", "10", "--resolve", f"{domain}:443:127.0.0.1", "-D", "-",
         f"https://{domain}{path}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1]) if lines else 0
    headers = {key.strip().lower(): value.strip() for key, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, body
