"""Fixtures for the edge tests: real Caddy, small HTTP upstreams, real Mosquitto, openssl certificates.

Every program is started on 127.0.0.x with free ports and stopped in the fixture's ``finally``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# --- generic -------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(
    host: str, port: int, process: subprocess.Popen[bytes], log: Path, seconds: float = 10
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port} after {seconds}s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ProcessGroup:
    """Programs a harness started, each logging to its own file; ``stop_all`` ends every one."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            stop(process)


def require(program: str) -> str:
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None
    )
    if path is None:
        pytest.fail(f"{program} is not installed; the edge tests need the real program (apt-get install)")
    return path


# --- HTTP upstreams ------------------------------------------------------------------------------


@dataclass
class Upstream:
    """A tiny HTTP server that answers which upstream it is and which path it received."""

    name: str
    host: str
    port: int
    server: ThreadingHTTPServer

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 404 if self.path.startswith("/missing") else 200
            body = json.dumps({"upstream": name, "path": self.path}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if self.path.startswith("/indexable"):  # an app that asks to be indexed
                self.send_header("X-Robots-Tag", "all")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Echo


@pytest.fixture
def start_upstream() -> Iterator[Callable[[str, str], Upstream]]:
    """start_upstream(name, host) -> a running echo server on host:<free port>."""
    started: list[Upstream] = []

    def start(name: str, host: str) -> Upstream:
        server = ThreadingHTTPServer((host, 0), _handler(name))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        upstream = Upstream(name, host, server.server_address[1], server)
        started.append(upstream)
        return upstream

    try:
        yield start
    finally:
        for upstream in started:
            with contextlib.suppress(OSError):  # a test may have stopped it already
                upstream.stop()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def json(self) -> dict[str, str]:
        answer: dict[str, str] = json.loads(self.body)
        return answer


def http_get(port: int, host_header: str, path: str) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host_header})
        reply = connection.getresponse()
        headers: dict[str, list[str]] = {}
        for name, value in reply.getheaders():
            headers.setdefault(name.lower(), []).append(value)
        return Response(reply.status, headers, reply.read())
    finally:
        connection.close()


# --- Caddy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaddyRun:
    port: int
    caddyfile: Path


class CaddyHarness(ProcessGroup):
    """Validates and runs Caddyfiles with the real ``caddy``; stops every Caddy it started."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.caddy = require("caddy")
        self.workdir = workdir
        # Caddy writes its state under HOME/XDG dirs: keep it inside the test's temp dir.
        self.env = {
            **os.environ,
            "HOME": str(workdir),
            "XDG_DATA_HOME": str(workdir / "data"),
            "XDG_CONFIG_HOME": str(workdir / "config"),
        }

    def write(self, caddyfile: str) -> Path:
        path = self.workdir / f"Caddyfile.{len(list(self.workdir.glob('Caddyfile.*')))}"
        path.write_text(caddyfile)
        return path

    def validate(self, caddyfile: str) -> subprocess.CompletedProcess[str]:
        path = self.write(caddyfile)
        return subprocess.run(
            [self.caddy, "validate", "--adapter", "caddyfile", "--config", str(path)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )

    def run(self, caddyfile: str, port: int) -> CaddyRun:
        """Validate (must pass) then run this Caddyfile, which must listen on 127.0.0.1:port."""
        checked = self.validate(caddyfile)
        assert checked.returncode == 0, f"caddy validate failed:\n{checked.stderr[-2000:]}\n{caddyfile}"
        path = self.write(caddyfile)
        log = self.workdir / f"caddy.{port}.log"
        process = self.spawn(
            [self.caddy, "run", "--adapter", "caddyfile", "--config", str(path)], log, self.env
        )
        wait_for_port("127.0.0.1", port, process, log)
        return CaddyRun(port, path)


@pytest.fixture
def caddy(tmp_path: Path) -> Iterator[CaddyHarness]:
    harness = CaddyHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.stop_all()


@pytest.fixture
def get() -> Callable[[int, str, str], Response]:
    """get(port, host_header, path) -> Response, a plain HTTP GET to 127.0.0.1:port."""
    return http_get


@pytest.fixture
def unused_port() -> Callable[[], int]:
    """unused_port() -> a TCP port nothing listens on at 127.0.0.1 right now."""
    return free_port


# --- certificates (openssl CLI) ------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    name: str
    cert: Path
    key: Path
    workdir: Path

    def issue(self, common_name: str, *, server: bool = False) -> KeyPair:
        """A certificate signed by this CA whose CN is ``common_name`` (server: valid for 127.0.0.1)."""
        stem = self.workdir / f"{self.name}-{common_name}-{'server' if server else 'client'}"
        key, csr, cert, extensions = (stem.with_suffix(s) for s in (".key", ".csr", ".crt", ".ext"))
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={common_name}",
        )
        usage = "serverAuth" if server else "clientAuth"
        extensions.write_text(
            ("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "") + f"extendedKeyUsage={usage}\n"
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.cert,
            "-CAkey",
            self.key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-extfile",
            extensions,
        )
        return KeyPair(cert, key)


def _openssl(*arguments: str | Path) -> None:
    subprocess.run([require("openssl"), *map(str, arguments)], check=True, capture_output=True, timeout=30)


def make_ca(workdir: Path, name: str) -> CertificateAuthority:
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / f"{name}-ca.crt", workdir / f"{name}-ca.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-subj",
        f"/CN={name} test CA",
        "-days",
        "2",
    )
    return CertificateAuthority(name, cert, key, workdir)


@pytest.fixture(scope="session")
def certificate_authority(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], CertificateAuthority]:
    """certificate_authority(name) -> a CA made with openssl, one per name for the whole session."""
    workdir = tmp_path_factory.mktemp("pki")
    made: dict[str, CertificateAuthority] = {}

    def get(name: str) -> CertificateAuthority:
        if name not in made:
            made[name] = make_ca(workdir, name)
        return made[name]

    return get


# --- Mosquitto ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MqttClient:
    """Options of mosquitto_pub/mosquitto_sub for one client, kept in the clients' options file.

    The options (password included) go into ``$XDG_CONFIG_HOME/mosquitto_{pub,sub}``, which both
    programs read, so no secret is ever on a command line.
    """

    name: str
    options: tuple[str, ...]
    config_home: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_CONFIG_HOME": str(self.config_home)}

    def publish(self, topic: str, message: str, qos: int = 1) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [require("mosquitto_pub"), "-t", topic, "-m", message, "-q", str(qos), "-V", "mqttv311"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=15,
        )

    def subscribe(self, *topics: str, seconds: int = 3) -> Subscription:
        """A running mosquitto_sub on ``topics`` that has received its SUBACK (or has failed)."""
        # Line-buffered, so that the SUBACK debug line arrives as it happens, not at exit.
        command = [
            require("stdbuf"),
            "-oL",
            require("mosquitto_sub"),
            "-d",
            "-v",
            "-W",
            str(seconds),
            "-V",
            "mqttv311",
        ]
        for topic in topics:
            command += ["-t", topic]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )
        subscription = Subscription(self.name, process, [])
        subscription.wait_for_suback()
        return subscription

    def connects(self) -> bool:
        return self.publish(f"connectivity-check/{self.name}", "ping", qos=1).returncode == 0


@dataclass
class Subscription:
    name: str
    process: subprocess.Popen[str]
    lines: list[str]

    def wait_for_suback(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "received SUBACK" in line:
                return
        raise AssertionError(f"{self.name}: no SUBACK; mosquitto_sub said:\n" + "\n".join(self.lines))

    def messages(self) -> list[str]:
        """``topic payload`` lines received until mosquitto_sub's -W timeout ends it."""
        output, _ = self.process.communicate(timeout=30)
        lines = self.lines + output.splitlines()
        return [
            line
            for line in lines
            if not line.startswith(("Client ", " - ", "Subscribed ", "Timed out")) and line.strip()
        ]


@pytest.fixture
def mqtt_client(tmp_path: Path) -> Callable[..., MqttClient]:
    """mqtt_client(name, port, ca=, cert=, username=, password=, insecure=) -> a client's mosquitto_pub/sub options.

    ``insecure``: skip only the check of the server certificate's host name (the chain is still checked),
    for a server certificate issued for the broker's DNS names rather than 127.0.0.1.
    """

    def make(
        name: str,
        port: int,
        *,
        ca: Path | None = None,
        cert: KeyPair | None = None,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = False,
    ) -> MqttClient:
        options = ["-h 127.0.0.1", f"-p {port}"]  # no fixed client id: each process gets its own
        if ca:
            options.append(f"--cafile {ca}")
        if insecure:
            options.append("--insecure")
        if cert:
            options += [f"--cert {cert.cert}", f"--key {cert.key}"]
        if username:
            options.append(f"-u {username}")
        if password:
            options.append(f"-P {password}")
        home = tmp_path / "mqtt-clients" / name
        home.mkdir(parents=True)
        for program in ("mosquitto_pub", "mosquitto_sub"):
            (home / program).write_text("\n".join(options) + "\n")
        return MqttClient(name, tuple(options), home)

    return make


class MosquittoHarness(ProcessGroup):
    """Runs real ``mosquitto`` processes on 127.0.0.1; stops every one it started."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.mosquitto = require("mosquitto")
        self.workdir = workdir

    def start(self, config_dir: Path, conf: str, files: dict[str, str], ports: list[int]) -> None:
        """Write mosquitto.conf and the other files into config_dir, start Mosquitto, wait for its ports."""
        config_dir.mkdir(parents=True, exist_ok=True)
        for name, text in {"mosquitto.conf": conf, **files}.items():
            (config_dir / name).write_text(text)
        log = config_dir / "mosquitto.log"
        process = self.spawn([self.mosquitto, "-c", str(config_dir / "mosquitto.conf")], log)
        for port in ports:
            wait_for_port("127.0.0.1", port, process, log)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoHarness]:
    harness = MosquittoHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.stop_all()
