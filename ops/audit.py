"""Isolation audit of the running Docker engine: is what actually runs on the host still isolated?

The isolation guard (``components.isolation``) checks the desired state at deploy time; this module
checks what the engine runs now, containers stopped or running, read-only.

Ownership comes from the labels the program sets (``components.container.owner_labels``):

- ``<project>.environment: <environment>`` on every container of one environment;
- ``<project>.shared: edge`` on the shared Caddy, ``<project>.shared: data`` on a shared-mode server.
  A shared container may join the networks of its kind only: ``<project>-<name>-edge`` for the edge,
  ``<project>-<name>-data`` for a data server (the names ``components.edge`` and
  ``EnvironmentConfig.shared_network_name`` give them).

Findings, each naming the containers, network or path and what to do (:class:`Kind`):

- ``shared-network``: a user-defined network joined by containers of two environments, or a shared
  container on a network that is not of its kind;
- ``overlapping-mount``: mounts of two environments whose host paths are the same or one under the other;
- ``overlapping-port``: two environments publishing the same port and protocol on overlapping host
  addresses (``0.0.0.0``, ``::`` and an empty address overlap every address);
- ``shared-secret``: the same secret in both environments (see :func:`secret_fingerprints` for which
  values count); only SHA-256 hashes are kept and no value or hash is ever printed;
- ``cross-environment-host``: a container whose environment names another environment's container
  (by name, host name, address, or an alias on a network it joins) as a host;
- ``unlabelled-container``: a container without the project's labels on an environment's network.
- ``unlabelled-project``: a project named with ``--project`` of which no container carries a label
  (deployed by an older version of the program, or by hand): nothing of it can be audited.

:func:`audit` reads the engine (:func:`read_engine`) and applies the rules (:func:`audit_state`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import posixpath
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from ops.errors import OpsError

ENVIRONMENT_LABEL = "environment"  # <project>.environment
SHARED_LABEL = "shared"  # <project>.shared: edge | data
SHARED_KINDS = ("edge", "data")
# Docker's own networks: the audit follows user-defined networks only (the scope).
BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})


class Kind(StrEnum):
    SHARED_NETWORK = "shared-network"
    OVERLAPPING_MOUNT = "overlapping-mount"
    OVERLAPPING_PORT = "overlapping-port"
    SHARED_SECRET = "shared-secret"
    CROSS_ENVIRONMENT_HOST = "cross-environment-host"
    UNLABELLED_CONTAINER = "unlabelled-container"
    UNLABELLED_PROJECT = "unlabelled-project"


class EngineUnreadable(OpsError):
    """The Docker engine did not answer, or answered something the audit cannot read."""


# --- What the audit knows about the engine (no secret value is kept) -----------------------------


@dataclass(frozen=True)
class Attachment:
    network: str
    aliases: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mount:
    source: str  # host path (a named volume's too: /var/lib/docker/volumes/<name>/_data)
    destination: str
    type: str = "bind"


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str
    host_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class SecretFingerprint:
    """The SHA-256 of one secret value; ``host`` is the host a URL's password authenticates to."""

    variable: str
    sha256: str
    host: str | None = None


@dataclass(frozen=True)
class HostReference:
    variable: str
    host: str


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "running"
    hostname: str = ""
    networks: tuple[Attachment, ...] = ()
    mounts: tuple[Mount, ...] = ()
    ports: tuple[PublishedPort, ...] = ()
    secrets: tuple[SecretFingerprint, ...] = ()
    host_references: tuple[HostReference, ...] = ()


@dataclass(frozen=True)
class NetworkFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    driver: str = "bridge"


@dataclass(frozen=True)
class EngineState:
    containers: tuple[ContainerFacts, ...]
    networks: tuple[NetworkFacts, ...] = ()


# --- Environment variables: which values are secrets, which name hosts ---------------------------

# A variable is a secret by name when the last word of its name is one of these
# (JWT_SECRET_KEY, GITHUB_OAUTH_CLIENT_SECRET, RESEND_API_KEY, ADMIN_PASSWORD, MQTT_CLIENT_KEY), so
# AWS_ACCESS_KEY_ID, TOKEN_EXPIRY_SECONDS or PASSWORD_MIN_LENGTH are not.
SECRET_WORDS = frozenset(
    {
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "APIKEY",
        "PASSPHRASE",
        "CREDENTIALS",
        "SALT",
    }
)
# A value is a secret whatever its name when it looks randomly generated: a single token of at least
# this many characters from a base64/URL-safe alphabet, with letters and digits, and more than
# RANDOM_MIN_BITS_PER_CHARACTER of Shannon entropy (hex digests such as a git commit stay below 4.0).
RANDOM_MIN_LENGTH = 24
RANDOM_MIN_BITS_PER_CHARACTER = 4.0
# Values too plain to be a secret even under a secret name: empty, short, numbers, booleans.
SECRET_MIN_LENGTH = 6
_PLAIN_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null"})
_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]+")
# A variable names a host when the last word of its name is one of these (MQTT_HOST, DB_HOST).
HOST_WORDS = frozenset({"HOST", "HOSTNAME", "SERVER", "ADDR", "ADDRESS", "HOSTS", "SERVERS"})
_HOST = re.compile(r"^[A-Za-z0-9_.-]+$|^\[?[0-9A-Fa-f:]+\]?$")


def _last_word(name: str) -> str:
    words = [word for word in re.split(r"[_\-.]", name.upper()) if word]
    return words[-1] if words else ""


def secret_name(name: str) -> bool:
    return _last_word(name) in SECRET_WORDS


def shannon_bits_per_character(value: str) -> float:
    counts = Counter(value)
    return -sum(count / len(value) * math.log2(count / len(value)) for count in counts.values())


def looks_random(value: str) -> bool:
    return (
        len(value) >= RANDOM_MIN_LENGTH
        and _TOKEN.fullmatch(value) is not None
        and any(c.isalpha() for c in value)
        and any(c.isdigit() for c in value)
        and shannon_bits_per_character(value) > RANDOM_MIN_BITS_PER_CHARACTER
    )


def plain_value(value: str) -> bool:
    """Too plain to be a secret: compared, it would only produce false findings."""
    stripped = value.strip()
    return len(stripped) < SECRET_MIN_LENGTH or stripped.isdigit() or stripped.lower() in _PLAIN_VALUES


def _url(value: str) -> SplitResult | None:
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    return parts if parts.hostname else None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def secret_fingerprints(environment: Mapping[str, str]) -> tuple[SecretFingerprint, ...]:
    """The hashes of the secrets in a container's environment.

    Counted: the value of a variable with a secret name (:data:`SECRET_WORDS`), a random-looking value
    under any name (:func:`looks_random`), and the password inside any URL (``scheme://user:pw@host``,
    with the host it is for).  Never counted: plain values (:func:`plain_value`).
    """
    found: list[SecretFingerprint] = []
    for name, value in sorted(environment.items()):
        url = _url(value)
        if url is not None and url.password and not plain_value(url.password):
            found.append(
                SecretFingerprint(f"{name} (password in the URL)", _sha256(url.password), url.hostname)
            )
        elif not plain_value(value) and (secret_name(name) or looks_random(value)):
            found.append(SecretFingerprint(name, _sha256(value)))
    return tuple(found)


def host_references(environment: Mapping[str, str]) -> tuple[HostReference, ...]:
    """The hosts a container's environment names: every URL's host, and ``*_HOST``-like values."""
    found: list[HostReference] = []
    for name, value in sorted(environment.items()):
        url = _url(value)
        if url is not None:
            found.append(HostReference(name, (url.hostname or "").lower()))
        elif _last_word(name) in HOST_WORDS:
            for item in value.split(","):
                host = item.strip()
                if host.count(":") == 1:  # host:port (an IPv6 address has several colons)
                    host = host.split(":")[0]
                host = host.strip("[]").lower()
                if host and _HOST.match(host):
                    found.append(HostReference(name, host))
    return tuple(found)


# --- Reading the engine --------------------------------------------------------------------------


def _environment(entries: Sequence[str] | None) -> dict[str, str]:
    environment: dict[str, str] = {}
    for entry in entries or ():
        name, _, value = entry.partition("=")
        environment[name] = value
    return environment


def _ports(bindings: Mapping[str, Any] | None) -> tuple[PublishedPort, ...]:
    """Configured bindings (HostConfig), so a stopped container's ports count too."""
    ports: list[PublishedPort] = []
    for container_port, hosts in (bindings or {}).items():
        protocol = container_port.partition("/")[2] or "tcp"
        for host in hosts or ():
            port = str(host.get("HostPort") or "")
            if port.isdigit() and int(port) > 0:  # "" or "0": an ephemeral port chosen at start
                ports.append(PublishedPort(host.get("HostIp") or "", int(port), protocol))
    return tuple(ports)


def container_facts(attrs: Mapping[str, Any]) -> ContainerFacts:
    """What the audit needs from one ``docker inspect`` of a container; secret values are hashed here."""
    config = attrs.get("Config") or {}
    host_config = attrs.get("HostConfig") or {}
    settings = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    environment = _environment(config.get("Env"))
    return ContainerFacts(
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        state=str((attrs.get("State") or {}).get("Status", "")),
        hostname=str(config.get("Hostname") or ""),
        networks=tuple(
            Attachment(
                network,
                tuple(sorted(set(endpoint.get("Aliases") or ()) | set(endpoint.get("DNSNames") or ()))),
                tuple(a for a in (endpoint.get("IPAddress"), endpoint.get("GlobalIPv6Address")) if a),
            )
            for network, endpoint in sorted(settings.items())
        ),
        mounts=tuple(
            Mount(str(m.get("Source", "")), str(m.get("Destination", "")), str(m.get("Type", "")))
            for m in attrs.get("Mounts") or ()
            if m.get("Source")
        ),
        ports=_ports(host_config.get("PortBindings")),
        secrets=secret_fingerprints(environment),
        host_references=host_references(environment),
    )


def read_engine(client: Any) -> EngineState:
    """Every container (running or not) and network of the engine ``client`` (a ``docker.DockerClient``)."""
    import docker.errors  # type: ignore[import-untyped]
    import requests.exceptions

    try:
        containers = client.containers.list(all=True, ignore_removed=True)
        networks = client.networks.list()
        return EngineState(
            tuple(container_facts(container.attrs) for container in containers),
            tuple(
                NetworkFacts(
                    str(network.attrs.get("Name", network.name)),
                    dict(network.attrs.get("Labels") or {}),
                    str(network.attrs.get("Driver", "")),
                )
                for network in networks
            ),
        )
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        raise EngineUnreadable(f"cannot read the Docker engine: {error}") from error


# --- The report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: Kind
    project: str
    message: str  # what is wrong, naming the containers, network or path
    advice: str  # what to do
    containers: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "project": self.project,
            "message": self.message,
            "advice": self.advice,
            "containers": list(self.containers),
            "networks": list(self.networks),
            "paths": list(self.paths),
        }


@dataclass(frozen=True)
class ProjectSummary:
    project: str
    environments: Mapping[str, tuple[str, ...]]  # environment -> container names
    shared: Mapping[str, tuple[str, ...]]  # shared kind -> container names


@dataclass(frozen=True)
class AuditReport:
    projects: tuple[ProjectSummary, ...]
    other_containers: tuple[str, ...]  # containers of no audited project, by name
    findings: tuple[Finding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings

    def of_project(self, project: str) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.project == project)

    def as_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "projects": [
                {
                    "project": summary.project,
                    "environments": {env: list(names) for env, names in summary.environments.items()},
                    "shared": {kind: list(names) for kind, names in summary.shared.items()},
                    "findings": dict(Counter(str(f.kind) for f in self.of_project(summary.project))),
                }
                for summary in self.projects
            ],
            "other_containers": list(self.other_containers),
            "findings": [finding.as_json() for finding in self.findings],
        }

    def render_text(self) -> str:
        lines: list[str] = []
        for summary in self.projects:
            lines.append(f"project {summary.project}")
            for environment, names in summary.environments.items():
                lines.append(f"  {environment}: {', '.join(names)}")
            for kind, names in summary.shared.items():
                lines.append(f"  shared {kind}: {', '.join(names)}")
            if not summary.environments and not summary.shared:
                lines.append("  no labelled container")
        if not self.projects:
            lines.append("no container or network carries a <project>.environment or <project>.shared label")
        if self.other_containers:
            lines.append(f"other containers: {', '.join(self.other_containers)}")
        lines.append("")
        if self.clean:
            lines.append("isolation audit: no findings")
        else:
            lines.append(f"isolation audit: {len(self.findings)} finding(s)")
            for number, finding in enumerate(self.findings, 1):
                lines.append(f"{number}. [{finding.kind}] {finding.project}: {finding.message}")
                lines.append(f"   what to do: {finding.advice}")
        return "\n".join(lines) + "\n"

    def render_prometheus(self, timestamp: float) -> str:
        """A node_exporter textfile: findings by project and kind (0 too), containers, run time."""
        lines = [
            "# HELP isolation_audit_up 1 when the audit read the Docker engine, 0 when it could not.",
            "# TYPE isolation_audit_up gauge",
            "isolation_audit_up 1",
            *_timestamp_lines(timestamp),
            "# HELP isolation_audit_findings Findings of the last isolation audit, by project and kind.",
            "# TYPE isolation_audit_findings gauge",
        ]
        for summary in self.projects:
            counts = Counter(finding.kind for finding in self.of_project(summary.project))
            for kind in Kind:
                labels = _prometheus_labels(project=summary.project, kind=str(kind))
                lines.append(f"isolation_audit_findings{labels} {counts[kind]}")
        lines += [
            "# HELP isolation_audit_containers Containers by project and environment (shared: shared-<kind>).",
            "# TYPE isolation_audit_containers gauge",
        ]
        for summary in self.projects:
            groups = {**summary.environments, **{f"shared-{k}": v for k, v in summary.shared.items()}}
            for group, names in groups.items():
                labels = _prometheus_labels(project=summary.project, environment=group)
                lines.append(f"isolation_audit_containers{labels} {len(names)}")
        return "\n".join(lines) + "\n"


def _timestamp_lines(timestamp: float) -> list[str]:
    return [
        "# HELP isolation_audit_last_run_timestamp_seconds When the isolation audit last ran (Unix time).",
        "# TYPE isolation_audit_last_run_timestamp_seconds gauge",
        f"isolation_audit_last_run_timestamp_seconds {timestamp:.3f}",
    ]


def unreadable_prometheus(timestamp: float) -> str:
    """The textfile when the engine could not be read: ``isolation_audit_up 0`` and the run time."""
    lines = [
        "# HELP isolation_audit_up 1 when the audit read the Docker engine, 0 when it could not.",
        "# TYPE isolation_audit_up gauge",
        "isolation_audit_up 0",
        *_timestamp_lines(timestamp),
    ]
    return "\n".join(lines) + "\n"


def _prometheus_labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels.items()) + "}"


# --- The rules -----------------------------------------------------------------------------------


def paths_overlap(first: str, second: str) -> bool:
    """The same path, or one under the other (``/mnt/vault`` and ``/mnt/vault/posts``)."""
    a, b = posixpath.normpath(first), posixpath.normpath(second)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def addresses_overlap(first: str, second: str) -> bool:
    """Two host addresses a port can be bound on that catch the same connections."""
    if first in WILDCARD_ADDRESSES or second in WILDCARD_ADDRESSES:
        return True
    try:
        return ipaddress.ip_address(first) == ipaddress.ip_address(second)
    except ValueError:
        return first == second


def ports_overlap(first: PublishedPort, second: PublishedPort) -> bool:
    return (
        first.host_port == second.host_port
        and first.protocol == second.protocol
        and addresses_overlap(first.host_ip, second.host_ip)
    )


def _address(port: PublishedPort) -> str:
    host = port.host_ip or "0.0.0.0"
    return (
        f"[{host}]:{port.host_port}/{port.protocol}"
        if ":" in host
        else f"{host}:{port.host_port}/{port.protocol}"
    )


def discover_projects(state: EngineState) -> list[str]:
    """Projects named by an ownership label on any container or network."""
    suffixes = (f".{ENVIRONMENT_LABEL}", f".{SHARED_LABEL}")
    found = set()
    for labels in [c.labels for c in state.containers] + [n.labels for n in state.networks]:
        for key in labels:
            for suffix in suffixes:
                if key.endswith(suffix) and len(key) > len(suffix):
                    found.add(key[: -len(suffix)])
    return sorted(found)


@dataclass
class _Project:
    """One project's view of the engine: who owns which container, who joins which network."""

    name: str
    state: EngineState
    environment_of: dict[str, str] = field(default_factory=dict)
    shared_kind_of: dict[str, str] = field(default_factory=dict)
    members: dict[str, list[ContainerFacts]] = field(default_factory=lambda: defaultdict(list))
    network_environment: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        environment_key, shared_key = f"{self.name}.{ENVIRONMENT_LABEL}", f"{self.name}.{SHARED_LABEL}"
        for container in self.state.containers:
            if environment_key in container.labels:
                self.environment_of[container.name] = container.labels[environment_key]
            elif shared_key in container.labels:
                self.shared_kind_of[container.name] = container.labels[shared_key]
            for attachment in container.networks:
                if attachment.network not in BUILTIN_NETWORKS:
                    self.members[attachment.network].append(container)
        for network in self.state.networks:
            if environment_key in network.labels:
                self.network_environment[network.name] = network.labels[environment_key]

    def owns(self, container: ContainerFacts) -> bool:
        return container.name in self.environment_of or container.name in self.shared_kind_of

    def environments_on(self, network: str) -> dict[str, list[str]]:
        """Environment -> its containers on ``network`` (a labelled network counts for its own)."""
        present: dict[str, list[str]] = defaultdict(list)
        if network in self.network_environment:
            present.setdefault(self.network_environment[network], [])
        for container in self.members.get(network, ()):
            if container.name in self.environment_of:
                present[self.environment_of[container.name]].append(container.name)
        return dict(sorted(present.items()))

    def allowed_for_shared(self, kind: str, network: str) -> bool:
        if not (kind in SHARED_KINDS and network.startswith(f"{self.name}-")):
            return False
        # A shared server that publishes a host port also joins its owner's plain bridge network
        # <project>-<name>-published (moby/moby#36174); the shared-network rule keeps that one
        # environment's.
        return network.endswith(f"-{kind}") or (kind == "data" and network.endswith("-published"))

    def environment_pairs(self) -> list[tuple[ContainerFacts, str]]:
        return [
            (c, self.environment_of[c.name]) for c in self.state.containers if c.name in self.environment_of
        ]

    def summary(self) -> ProjectSummary:
        environments: dict[str, list[str]] = defaultdict(list)
        shared: dict[str, list[str]] = defaultdict(list)
        for name, environment in self.environment_of.items():
            environments[environment].append(name)
        for name, kind in self.shared_kind_of.items():
            shared[kind].append(name)
        return ProjectSummary(
            self.name,
            {env: tuple(sorted(names)) for env, names in sorted(environments.items())},
            {kind: tuple(sorted(names)) for kind, names in sorted(shared.items())},
        )


def _describe(groups: Mapping[str, Iterable[str]]) -> str:
    return "; ".join(
        f"{env}: {', '.join(sorted(set(names))) or '(network label)'}" for env, names in groups.items()
    )


def network_findings(project: _Project) -> list[Finding]:
    findings: list[Finding] = []
    for network in sorted(project.members):
        present = project.environments_on(network)
        names = sorted({c.name for c in project.members[network]})
        if len(present) >= 2:
            findings.append(
                Finding(
                    Kind.SHARED_NETWORK,
                    project.name,
                    f"network {network} is joined by containers of {len(present)} environments ({_describe(present)})",
                    f"disconnect the containers of all but one environment (`docker network disconnect {network} "
                    "CONTAINER`) and redeploy the stacks; each environment keeps its own networks",
                    tuple(names),
                    (network,),
                )
            )
        for container in project.members[network]:
            kind = project.shared_kind_of.get(container.name)
            if kind is not None and present and not project.allowed_for_shared(kind, network):
                findings.append(
                    Finding(
                        Kind.SHARED_NETWORK,
                        project.name,
                        f"shared {kind} container {container.name} joins network {network} of "
                        f"{', '.join(present)}, which is not a {project.name}-<name>-{kind} network: through it "
                        "that environment meets every environment the shared container serves",
                        f"`docker network disconnect {network} {container.name}` and redeploy the stack that "
                        "owns the shared container",
                        (container.name,),
                        (network,),
                    )
                )
    return findings


def unlabelled_findings(project: _Project) -> list[Finding]:
    findings: list[Finding] = []
    for network in sorted(project.members):
        present = project.environments_on(network)
        if not present:
            continue
        for container in sorted(project.members[network], key=lambda c: c.name):
            if not project.owns(container):
                findings.append(
                    Finding(
                        Kind.UNLABELLED_CONTAINER,
                        project.name,
                        f"container {container.name} ({container.state}) without a {project.name}.environment "
                        f"label joins network {network} of {', '.join(present)}",
                        f"if it belongs there, recreate it with the label {project.name}.environment=<environment> "
                        f"(or deploy it from its stack); otherwise `docker network disconnect {network} "
                        f"{container.name}`",
                        (container.name,),
                        (network,),
                    )
                )
    return findings


def unlabelled_project_finding(project: _Project) -> Finding:
    """A project asked for by name that no container carries a label of: nothing of it can be audited.

    Containers deployed by an older version of the program (or by hand) look like this; a clean report
    would hide exactly the drift the audit is for.
    """
    named = tuple(sorted(c.name for c in project.state.containers if c.name.startswith(f"{project.name}-")))
    seen = (
        f"containers named {project.name}-*: {', '.join(named)}"
        if named
        else f"none is named {project.name}-*"
    )
    return Finding(
        Kind.UNLABELLED_PROJECT,
        project.name,
        f"no container carries the label {project.name}.{ENVIRONMENT_LABEL} or {project.name}.{SHARED_LABEL}"
        f" ({seen}): their isolation cannot be audited",
        "redeploy the stacks with this version of the program (`pulumi up --stack prod`, then `--stack dev`), "
        "which labels every container; or check the project name given to --project",
        named,
    )


def mount_findings(project: _Project) -> list[Finding]:
    groups: dict[tuple[tuple[str, str], tuple[str, str]], set[str]] = defaultdict(set)
    entries = [(env, mount.source, c.name) for c, env in project.environment_pairs() for mount in c.mounts]
    for index, (env_a, path_a, name_a) in enumerate(entries):
        for env_b, path_b, name_b in entries[index + 1 :]:
            if env_a != env_b and paths_overlap(path_a, path_b):
                first, second = sorted([(env_a, path_a), (env_b, path_b)])
                groups[(first, second)] |= {name_a, name_b}
    findings = []
    for (first, second), names in sorted(groups.items()):
        same = posixpath.normpath(first[1]) == posixpath.normpath(second[1])
        findings.append(
            Finding(
                Kind.OVERLAPPING_MOUNT,
                project.name,
                f"{first[0]} mounts {first[1]} and {second[0]} mounts {second[1]}: "
                f"{'the same path' if same else 'one is inside the other'} (containers {', '.join(sorted(names))})",
                f"give each environment its own vault directory outside the other's ({project.name}:vault.host_path), "
                "move the files, and redeploy",
                tuple(sorted(names)),
                paths=(first[1], second[1]),
            )
        )
    return findings


def port_findings(project: _Project) -> list[Finding]:
    groups: dict[tuple[tuple[str, str], tuple[str, str]], set[str]] = defaultdict(set)
    entries = [(env, port, c.name) for c, env in project.environment_pairs() for port in c.ports]
    for index, (env_a, port_a, name_a) in enumerate(entries):
        for env_b, port_b, name_b in entries[index + 1 :]:
            if env_a != env_b and ports_overlap(port_a, port_b):
                first, second = sorted([(env_a, _address(port_a)), (env_b, _address(port_b))])
                groups[(first, second)] |= {name_a, name_b}
    return [
        Finding(
            Kind.OVERLAPPING_PORT,
            project.name,
            f"{first[0]} publishes {first[1]} where {second[0]} publishes {second[1]} "
            f"(containers {', '.join(sorted(names))}): whichever starts first takes the other's clients",
            f"give each environment its own host port (e.g. {project.name}:database.host_port, "
            f"{project.name}:mqtt.public_port) "
            "and redeploy; remove a container started by hand",
            tuple(sorted(names)),
        )
        for (first, second), names in sorted(groups.items())
    ]


def secret_findings(project: _Project) -> list[Finding]:
    # A shared-mode server has one password for every environment (000): a URL password for a host
    # that is a shared container is that server's, shared by design, and is not compared anywhere.
    shared_hosts = set()
    for container in project.state.containers:
        if container.name in project.shared_kind_of:
            shared_hosts.add(container.name.lower())
            shared_hosts.update(alias.lower() for a in container.networks for alias in a.aliases)
    # Only that URL is exempt: the same value under any other variable is still compared.
    where: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for container, env in project.environment_pairs():
        for secret in container.secrets:
            if secret.host is None or secret.host.lower() not in shared_hosts:
                where[secret.sha256][env].add(f"{container.name} {secret.variable}")
    findings = []
    for by_environment in where.values():
        if len(by_environment) < 2:
            continue
        described = "; ".join(
            f"{env}: {', '.join(sorted(uses))}" for env, uses in sorted(by_environment.items())
        )
        containers = sorted({use.split(" ")[0] for uses in by_environment.values() for use in uses})
        findings.append(
            Finding(
                Kind.SHARED_SECRET,
                project.name,
                f"the same secret value is set in {len(by_environment)} environments ({described})",
                "give one environment a new value (`pulumi config set --secret ...` on that stack, or rotate the "
                "key at its provider) and redeploy it; a leak of development must not open production",
                tuple(containers),
            )
        )
    return sorted(findings, key=lambda f: f.message)


def host_findings(project: _Project) -> list[Finding]:
    # Every name under which a container of an environment can be reached, and where.
    names: dict[str, tuple[str, str]] = {}  # name, host name or address -> (container, environment)
    aliases: dict[tuple[str, str], tuple[str, str]] = {}  # (network, alias) -> (container, environment)
    for container, env in project.environment_pairs():
        for key in (container.name, container.hostname):
            if key:
                names[key.lower()] = (container.name, env)
        for attachment in container.networks:
            for address in attachment.addresses:
                names[address.lower()] = (container.name, env)
            for alias in attachment.aliases:
                aliases[(attachment.network, alias.lower())] = (container.name, env)
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for container, env in project.environment_pairs():
        joined = [a.network for a in container.networks]
        for reference in container.host_references:
            targets = [names.get(reference.host)] + [aliases.get((n, reference.host)) for n in joined]
            for target in targets:
                if target is not None and target[1] != env:
                    found[(container.name, target[0])].add(reference.variable)
    return [
        Finding(
            Kind.CROSS_ENVIRONMENT_HOST,
            project.name,
            f"{source} ({project.environment_of[source]}) names {target} of {project.environment_of[target]} "
            f"as a host in {', '.join(sorted(variables))}",
            f"point {', '.join(sorted(variables))} of {source} at its own environment's server and redeploy "
            "(or remove the container if it was started by hand)",
            (source, target),
        )
        for (source, target), variables in sorted(found.items())
    ]


def audit_state(state: EngineState, projects: Sequence[str] | None = None) -> AuditReport:
    """Apply every rule to ``state`` for ``projects`` (default: every project a label names)."""
    chosen = list(projects) if projects else discover_projects(state)
    views = [_Project(name, state) for name in chosen]
    findings: list[Finding] = []
    for view in views:
        for rule in (
            network_findings,
            unlabelled_findings,
            mount_findings,
            port_findings,
            secret_findings,
            host_findings,
        ):
            findings.extend(rule(view))
        if projects and not view.environment_of and not view.shared_kind_of:
            findings.append(unlabelled_project_finding(view))
    others = sorted(c.name for c in state.containers if not any(view.owns(c) for view in views))
    return AuditReport(tuple(view.summary() for view in views), tuple(others), tuple(findings))


def audit(client: Any, projects: Sequence[str] | None = None) -> AuditReport:
    """Read the engine of ``client`` (a ``docker.DockerClient``) and audit it; see :func:`audit_state`."""
    return audit_state(read_engine(client), projects)


def report_json(report: AuditReport) -> str:
    return json.dumps(report.as_json(), indent=2, sort_keys=True)
