"""Test harness: applies a stack's rendered desired state to a real Docker engine.

No Pulumi CLI can run here (see issue 12), so the engine tests render a stack with
``tools.desired_state.render`` and apply what it declares with the Docker SDK for Python. This is a
TEST HARNESS, not a deployment path: it maps the inputs of ``docker:index/container:Container``,
``Network``, ``Volume`` and ``RemoteImage`` as the pulumi-docker docs define them, runs the declared
``command:local:Command`` resources for real, in dependency order, and keeps a small state (like
Pulumi's) so that a second apply of the same render changes nothing and a changed input replaces.

What a provider computes is computed for real while rendering (``resource_state``): a RemoteImage's
``repoDigest`` comes from the engine (pulled from the local registry when absent), pulumi-tls
resources get real PEMs from openssl (``Pki``), cached by their inputs as Pulumi's state would.

An input key the harness does not know fails it (``HarnessError``), so that a new input the program
starts to use cannot be silently ignored here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from components.images import repository_of
from tools.desired_state import RenderedResource, Rendering, render

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
COMMAND = "command:local:Command"

# The inputs each resource type may carry, as the pulumi-docker / pulumi-command docs name them.
KNOWN_INPUTS: dict[str, set[str]] = {
    CONTAINER: {
        "name", "image", "command", "entrypoints", "envs", "labels", "logDriver", "logOpts", "memory",
        "memoryReservation", "memorySwap", "cpus", "cpuShares", "restart", "init", "networksAdvanced",
        "ports", "volumes", "mounts", "uploads", "healthcheck", "destroyGraceSeconds", "gpus", "user",
        "workingDir", "hostname", "readOnly", "mustRun", "wait", "waitTimeout", "stopSignal", "stopTimeout",
    },
    NETWORK: {"name", "driver", "internal", "labels", "attachable", "options"},
    VOLUME: {"name", "driver", "driverOpts", "labels"},
    REMOTE_IMAGE: {"name", "keepLocally", "forceRemove"},
    COMMAND: {"create", "environment", "triggers", "logging", "addPreviousOutputInEnv", "dir"},
}
NESTED_INPUTS: dict[str, set[str]] = {
    "networksAdvanced": {"name", "aliases", "ipv4Address"},
    "ports": {"internal", "external", "ip", "protocol"},
    "volumes": {"containerPath", "volumeName", "hostPath", "readOnly"},
    "mounts": {"target", "source", "type", "readOnly"},
    "uploads": {"file", "content", "contentBase64", "permissions", "executable"},
    "healthcheck": {"tests", "interval", "timeout", "startPeriod", "retries"},
    "labels": {"label", "value"},
}
# Resources the engine does not see: they only compute values the render already holds.
NOT_APPLIED = ("random:", "tls:", "makapix:", "clippyfront:", "pulumi:")


class HarnessError(Exception):
    """The harness cannot apply what the program declares (an unknown input, a failed command...)."""


def check_inputs(resource: RenderedResource, inputs: dict[str, Any]) -> None:
    unknown = set(inputs) - KNOWN_INPUTS[resource.type]
    if unknown:
        raise HarnessError(
            f"{resource.type} {resource.name!r}: the harness does not know the input(s) {sorted(unknown)}; "
            "map them in tests/engine/harness.py (KNOWN_INPUTS and the apply function)"
        )
    for key, allowed in NESTED_INPUTS.items():
        value = inputs.get(key)
        for item in value if isinstance(value, list) else [value] if isinstance(value, dict) else []:
            extra = set(item) - allowed
            if extra:
                raise HarnessError(f"{resource.type} {resource.name!r}: unknown key(s) {sorted(extra)} in {key}")


def _duration_ns(text: str) -> int:
    """A Go duration as the provider takes it ("10s", "1m30s", "500ms") in nanoseconds."""
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total, number = 0, ""
    index = 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        total += int(float(number) * units[unit])
        number, index = "", index + len(unit)
    return total


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Change:
    action: str  # "create", "replace", "run"
    name: str


@dataclass
class Applied:
    """One apply: the changes it made and each command's output (stdout), as Pulumi would record them."""

    rendering: Rendering
    changes: list[Change] = field(default_factory=list)
    command_outputs: dict[str, str] = field(default_factory=dict)
    not_applied: list[str] = field(default_factory=list)


class Pki:
    """pulumi-tls resources answered with real PEMs from openssl, the same PEM for the same inputs."""

    def __init__(self, workdir: Path) -> None:
        from tests.components.test_mqtt import OpensslPki

        self.openssl = OpensslPki(workdir)
        self.issued: dict[str, dict[str, Any] | None] = {}

    def __call__(self, args: Any) -> dict[str, Any] | None:
        if not args.typ.startswith("tls:"):
            return None
        key = _digest([args.typ, args.name, repr(dict(args.inputs))])
        if key not in self.issued:
            self.issued[key] = self.openssl(args)
        return self.issued[key]


class StackHarness:
    """Renders stacks with real provider-computed values and applies them to the engine."""

    def __init__(self, client: docker.DockerClient, workdir: Path, repository_root: Path) -> None:
        self.client = client
        self.workdir = workdir
        self.repository_root = repository_root
        self.pki = Pki(workdir)
        # resource name -> digest of what was applied (Pulumi's state, in short)
        self.state: dict[str, str] = {}
        self.command_outputs: dict[str, str] = {}

    # --- rendering ------------------------------------------------------------------------------

    def resolve_image(self, args: Any) -> dict[str, Any] | None:
        """A RemoteImage's repoDigest, as the provider reports it after a pull."""
        if args.typ != REMOTE_IMAGE:
            return None
        name = str(args.inputs["name"])
        try:
            image = self.client.images.get(name)
        except docker.errors.ImageNotFound:
            image = self.client.images.pull(name)
        repository = repository_of(name)
        digests = [d for d in image.attrs.get("RepoDigests") or [] if d.split("@")[0] == repository]
        if not digests:
            raise HarnessError(f"image {name!r} has no digest on the engine (push it to the test registry first)")
        return {"repoDigest": digests[0]}

    def render(
        self,
        stack: str,
        project_dir: Path,
        references: dict[str, dict[str, Any]] | None = None,
        extra_config: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        resolve_images: bool = True,
    ) -> Rendering:
        """Render with real provider values; ``resolve_images=False`` keeps the mock digests (for a
        test that applies only infrastructure containers)."""

        def provider_state(args: Any) -> dict[str, Any] | None:
            return self.pki(args) or (self.resolve_image(args) if resolve_images else None)

        saved = dict(os.environ)
        os.environ.update(environ or {})
        try:
            return render(
                stack, project_dir, extra_config=extra_config, references=references, resource_state=provider_state
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # --- applying -------------------------------------------------------------------------------

    def apply(
        self, rendering: Rendering, project_dir: Path, only: Callable[[RenderedResource], bool] | None = None
    ) -> Applied:
        """Create or replace what changed since the last apply, in dependency order (``only``: a subset)."""
        applied = Applied(rendering)
        for resource in dependency_order(rendering):
            if resource.type.startswith(NOT_APPLIED) or (only is not None and not only(resource)):
                continue
            if resource.type not in KNOWN_INPUTS:
                raise HarnessError(f"the harness does not know resource type {resource.type} ({resource.name})")
            inputs = resource.plain_inputs()
            check_inputs(resource, inputs)
            if resource.options.get("provider"):
                # A resource for another Docker host (remote workers): that host is not here.
                applied.not_applied.append(resource.name)
                continue
            digest = _digest([inputs, resource.options.get("replacement_trigger")])
            exists = self._exists(resource, inputs)
            if self.state.get(resource.name) == digest and exists:
                if resource.type == COMMAND:
                    applied.command_outputs[resource.name] = self.command_outputs.get(resource.name, "")
                continue
            action = "create" if resource.name not in self.state and not exists else "replace"
            if resource.type == NETWORK:
                self._network(inputs, replace=exists)
            elif resource.type == VOLUME:
                if not exists:
                    self.client.volumes.create(
                        name=inputs["name"], driver=inputs.get("driver", "local"),
                        driver_opts=inputs.get("driverOpts"), labels=inputs.get("labels"),
                    )  # fmt: skip
            elif resource.type == REMOTE_IMAGE:
                self.resolve_image(_Args(REMOTE_IMAGE, resource.name, inputs))
            elif resource.type == CONTAINER:
                self.remove_container(inputs["name"], inputs.get("destroyGraceSeconds"))
                self._container(inputs)
            elif resource.type == COMMAND:
                if not _command_triggered(self.state.get(resource.name + "#triggers"), inputs):
                    self.state[resource.name] = digest
                    continue
                applied.command_outputs[resource.name] = self._command(resource.name, inputs, project_dir)
                self.command_outputs[resource.name] = applied.command_outputs[resource.name]
                self.state[resource.name + "#triggers"] = _digest(inputs.get("triggers"))
                action = "run"
            self.state[resource.name] = digest
            applied.changes.append(Change(action, resource.name))
        return applied

    def _exists(self, resource: RenderedResource, inputs: dict[str, Any]) -> bool:
        if resource.type == COMMAND:
            return resource.name in self.state
        if resource.type == REMOTE_IMAGE:
            return True
        collection = {
            CONTAINER: self.client.containers, NETWORK: self.client.networks, VOLUME: self.client.volumes
        }[resource.type]  # fmt: skip
        try:
            found = collection.get(inputs["name"])
        except docker.errors.NotFound:
            return False
        return found.name == inputs["name"]  # networks.get matches id prefixes too

    def _network(self, inputs: dict[str, Any], replace: bool) -> None:
        if replace:  # delete_before_replace: the name is fixed
            self.client.networks.get(inputs["name"]).remove()
        self.client.networks.create(
            inputs["name"],
            driver=inputs.get("driver", "bridge"),
            internal=bool(inputs.get("internal", False)),
            attachable=inputs.get("attachable"),
            options=inputs.get("options"),
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
        )

    def _container(self, inputs: dict[str, Any]) -> None:
        networks = inputs.get("networksAdvanced") or []
        host_config: dict[str, Any] = {}
        if "memory" in inputs:
            host_config["mem_limit"] = f"{inputs['memory']}m"  # pulumi-docker: memory in MB
        if "memoryReservation" in inputs:
            host_config["mem_reservation"] = f"{inputs['memoryReservation']}m"
        if "memorySwap" in inputs:
            host_config["memswap_limit"] = f"{inputs['memorySwap']}m"
        if "cpus" in inputs:
            host_config["nano_cpus"] = int(float(inputs["cpus"]) * 1e9)
        if "cpuShares" in inputs:
            host_config["cpu_shares"] = inputs["cpuShares"]
        if "gpus" in inputs:
            host_config["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        ports: dict[str, list[tuple[str, int]]] = {}
        for port in inputs.get("ports") or []:
            key = f"{port['internal']}/{port.get('protocol', 'tcp')}"
            ports.setdefault(key, []).append((port.get("ip", "0.0.0.0"), int(port["external"])))
        mounts = [
            docker.types.Mount(
                target=mount["target"], source=mount.get("source"), type=mount.get("type", "volume"),
                read_only=bool(mount.get("readOnly", False)),
            )
            for mount in inputs.get("mounts") or []
        ]  # fmt: skip
        for volume in inputs.get("volumes") or []:
            source = volume.get("volumeName") or volume.get("hostPath")
            mounts.append(
                docker.types.Mount(
                    target=volume["containerPath"], source=source,
                    type="volume" if volume.get("volumeName") else "bind", read_only=bool(volume.get("readOnly")),
                )
            )  # fmt: skip
        healthcheck = None
        if inputs.get("healthcheck"):
            check = inputs["healthcheck"]
            healthcheck = docker.types.Healthcheck(
                test=check["tests"],
                interval=_duration_ns(check.get("interval", "0s")),
                timeout=_duration_ns(check.get("timeout", "0s")),
                start_period=_duration_ns(check.get("startPeriod", "0s")),
                retries=int(check.get("retries", 0)),
            )
        networking = None
        if networks:
            first = networks[0]
            networking = {first["name"]: self.client.api.create_endpoint_config(aliases=first.get("aliases"))}
        container_id = self.client.api.create_container(
            inputs["image"],
            name=inputs["name"],
            command=inputs.get("command"),
            entrypoint=inputs.get("entrypoints"),
            environment=inputs.get("envs"),
            labels={item["label"]: item["value"] for item in inputs.get("labels") or []},
            user=inputs.get("user"),
            working_dir=inputs.get("workingDir"),
            hostname=inputs.get("hostname"),
            stop_signal=inputs.get("stopSignal"),
            stop_timeout=inputs.get("stopTimeout"),
            ports=[(int(key.split("/")[0]), key.split("/")[1]) for key in ports],
            healthcheck=healthcheck,
            networking_config=self.client.api.create_networking_config(networking) if networking else None,
            host_config=self.client.api.create_host_config(
                port_bindings={key: value for key, value in ports.items()},
                mounts=mounts,
                init=inputs.get("init"),
                read_only=inputs.get("readOnly"),
                restart_policy={"Name": inputs.get("restart", "no")} if inputs.get("restart", "no") != "no" else None,
                log_config=docker.types.LogConfig(type=inputs.get("logDriver", "json-file"), config=inputs.get("logOpts") or {}),
                network_mode=networks[0]["name"] if networks else None,
                **host_config,
            ),
        )["Id"]
        for network in networks[1:]:
            self.client.api.connect_container_to_network(container_id, network["name"], aliases=network.get("aliases"))
        # uploads are written before the container starts (pulumi-docker: on create only)
        for upload in inputs.get("uploads") or []:
            self.client.api.put_archive(container_id, "/", _upload_archive(upload))
        self.client.api.start(container_id)
        # mustRun (default true): the container must be running after create.
        time.sleep(0.5)
        state = self.client.api.inspect_container(container_id)["State"]
        if not state["Running"]:
            logs = self.client.api.logs(container_id, tail=30).decode(errors="replace")
            raise HarnessError(f"container {inputs['name']} is not running after start ({state['Status']}):\n{logs}")

    def _command(self, name: str, inputs: dict[str, Any], project_dir: Path) -> str:
        environment = {**os.environ, **{key: str(value) for key, value in (inputs.get("environment") or {}).items()}}
        working_dir = Path(inputs.get("dir") or program_directory(project_dir))
        done = subprocess.run(
            ["/bin/sh", "-c", inputs["create"]],
            cwd=working_dir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(
                f"command {name} ({shlex.quote(inputs['create'])}) failed with {done.returncode}:\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout.strip()

    # --- tearing down ---------------------------------------------------------------------------

    def remove_container(self, name: str, grace_seconds: int | None = None) -> None:
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return
        if container.name != name:
            return
        container.stop(timeout=int(grace_seconds or 10))
        container.remove(force=True)

    def destroy(
        self,
        rendering: Rendering,
        keep_protected: bool = True,
        only: Callable[[RenderedResource], bool] | None = None,
    ) -> None:
        """Remove in reverse dependency order; ``retain_on_delete`` volumes stay (as Pulumi leaves them)."""
        for resource in reversed(dependency_order(rendering)):
            if resource.options.get("provider") or (only is not None and not only(resource)):
                continue
            inputs = resource.plain_inputs()
            if resource.type == CONTAINER:
                self.remove_container(inputs["name"], inputs.get("destroyGraceSeconds"))
            elif resource.type == NETWORK:
                try:
                    network = self.client.networks.get(inputs["name"])
                    if network.name == inputs["name"]:
                        network.remove()
                except docker.errors.NotFound:
                    pass
            elif resource.type == VOLUME and not (keep_protected and resource.options.get("retain_on_delete")):
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.volumes.get(inputs["name"]).remove(force=True)
            self.state.pop(resource.name, None)
            self.state.pop(resource.name + "#triggers", None)


@dataclass
class _Args:
    typ: str
    name: str
    inputs: dict[str, Any]


def _command_triggered(previous_triggers: str | None, inputs: dict[str, Any]) -> bool:
    """A Command runs on create, and again only when a replace_on_changes input (its triggers) changes."""
    if previous_triggers is None:
        return True
    return previous_triggers != _digest(inputs.get("triggers"))


def program_directory(project_dir: Path) -> Path:
    """Where Pulumi runs the program, and so a local Command: ``main`` of Pulumi.yaml, if set."""
    import yaml

    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}
    return (project_dir / str(project.get("main") or ".")).resolve()


def _upload_archive(upload: dict[str, Any]) -> bytes:
    import base64

    content = (
        base64.b64decode(upload["contentBase64"]) if "contentBase64" in upload else str(upload["content"]).encode()
    )
    mode = int(str(upload.get("permissions", "0644")), 8)
    if upload.get("executable"):
        mode |= 0o111
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        path = upload["file"].lstrip("/")
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = tarfile.TarInfo("/".join(parts[:depth]))
            directory.type, directory.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(directory)
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(content), mode
        tar.addfile(info, io.BytesIO(content))
    return archive.getvalue()


def dependency_order(rendering: Rendering) -> list[RenderedResource]:
    """Resources so that each comes after everything it depends on (Pulumi's create order)."""
    by_name = {resource.name: resource for resource in rendering.resources}
    ordered: list[RenderedResource] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(resource: RenderedResource) -> None:
        if resource.name in done:
            return
        if resource.name in visiting:
            raise HarnessError(f"dependency cycle through {resource.name}")
        visiting.add(resource.name)
        for dependency in resource.options.get("depends_on", []):
            if dependency in by_name:
                visit(by_name[dependency])
        visiting.discard(resource.name)
        done.add(resource.name)
        ordered.append(resource)

    for resource in rendering.resources:
        visit(resource)
    return ordered

