"""The isolation audit's rules on engine states written here, and its command line.

The engine itself is read in test_audit_engine.py; here every container is a ``ContainerFacts``
(or a ``docker inspect``-shaped dict through ``container_facts``), so each rule is shown to fire on
exactly its case and to stay silent on the program's own layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ops.cli as cli
from ops.audit import (
    Attachment,
    AuditReport,
    ContainerFacts,
    EngineState,
    HostReference,
    Kind,
    Mount,
    NetworkFacts,
    PublishedPort,
    addresses_overlap,
    audit_state,
    container_facts,
    host_references,
    looks_random,
    paths_overlap,
    plain_value,
    ports_overlap,
    secret_fingerprints,
    secret_name,
    unreadable_prometheus,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
P = "makapix"
PROD = {f"{P}.environment": "production"}
DEV = {f"{P}.environment": "development"}
EDGE = {f"{P}.shared": "edge"}
DATA = {f"{P}.shared": "data"}


def on(*networks: str, aliases: tuple[str, ...] = ()) -> tuple[Attachment, ...]:
    return tuple(Attachment(network, aliases) for network in networks)


def separated() -> list[ContainerFacts]:
    """The program's layout: two environments, each on its own networks, Caddy on both edges."""
    return [
        ContainerFacts("makapix-edge-caddy", EDGE, networks=on("makapix-prod-edge", "makapix-dev-edge")),
        ContainerFacts(
            "makapix-prod-api",
            PROD,
            networks=on("makapix-prod-internal", "makapix-prod-edge"),
            mounts=(Mount("/mnt/vault-1", "/vault"),),
            ports=(),
            secrets=secret_fingerprints(
                {
                    "DATABASE_URL": "postgresql://makapix:prod-db-pw-123@db:5432/makapix",
                    "JWT_SECRET_KEY": "prod-jwt-1",
                }
            ),
            host_references=host_references(
                {"DATABASE_URL": "postgresql://u:p@db:5432/x", "MQTT_HOST": "mqtt"}
            ),
        ),
        ContainerFacts(
            "makapix-prod-db",
            PROD,
            networks=on("makapix-prod-internal", aliases=("db",)),
            ports=(PublishedPort("127.0.0.1", 55432),),
        ),
        ContainerFacts(
            "makapix-dev-api",
            DEV,
            networks=on("makapix-dev-internal", "makapix-dev-edge"),
            mounts=(Mount("/mnt/vault-dev", "/vault"),),
            secrets=secret_fingerprints(
                {
                    "DATABASE_URL": "postgresql://makapix:dev-db-pw-456@db:5432/makapix_dev",
                    "JWT_SECRET_KEY": "dev-jwt-2",
                }
            ),
            host_references=host_references(
                {"DATABASE_URL": "postgresql://u:p@db:5432/x", "MQTT_HOST": "mqtt"}
            ),
        ),
        ContainerFacts(
            "makapix-dev-db",
            DEV,
            networks=on("makapix-dev-internal", aliases=("db",)),
            ports=(PublishedPort("127.0.0.1", 55433),),
        ),
    ]


def findings_of(containers: list[ContainerFacts], networks: tuple[NetworkFacts, ...] = ()) -> AuditReport:
    return audit_state(EngineState(tuple(containers), networks), [P])


def replace(containers: list[ContainerFacts], name: str, **changes: Any) -> list[ContainerFacts]:
    from dataclasses import replace as copy

    return [copy(c, **changes) if c.name == name else c for c in containers]


def kinds(report: AuditReport) -> list[Kind]:
    return [finding.kind for finding in report.findings]


# --- the pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("/mnt/vault-1", "/mnt/vault-1", True),
        ("/mnt/vault-1/", "/mnt/vault-1", True),
        ("/mnt/vault-1", "/mnt/vault-1/posts", True),
        ("/mnt/vault-1/posts", "/mnt", True),
        ("/", "/srv/x", True),
        ("/mnt/vault-1", "/mnt/vault-10", False),
        ("/mnt/vault-1", "/mnt/vault-dev", False),
    ],
)
def test_paths_overlap_when_equal_or_nested(first: str, second: str, overlap: bool) -> None:
    assert paths_overlap(first, second) is overlap
    assert paths_overlap(second, first) is overlap


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("0.0.0.0", "127.0.0.1", True),
        ("", "10.8.0.1", True),
        ("::", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("::1", "0:0:0:0:0:0:0:1", True),
        ("127.0.0.1", "10.8.0.1", False),
        ("127.0.0.1", "::1", False),
    ],
)
def test_a_wildcard_address_overlaps_every_address(first: str, second: str, overlap: bool) -> None:
    assert addresses_overlap(first, second) is overlap
    assert addresses_overlap(second, first) is overlap


def test_ports_overlap_only_on_the_same_port_and_protocol() -> None:
    assert ports_overlap(PublishedPort("0.0.0.0", 8883), PublishedPort("127.0.0.1", 8883))
    assert not ports_overlap(PublishedPort("0.0.0.0", 8883), PublishedPort("0.0.0.0", 8884))
    assert not ports_overlap(PublishedPort("0.0.0.0", 53, "udp"), PublishedPort("0.0.0.0", 53, "tcp"))


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("JWT_SECRET_KEY", True),
        ("GITHUB_OAUTH_CLIENT_SECRET", True),
        ("RESEND_API_KEY", True),
        ("ADMIN_PASSWORD", True),
        ("MQTT_CLIENT_KEY", True),
        ("api-token", True),
        ("AWS_ACCESS_KEY_ID", False),
        ("TOKEN_EXPIRY_SECONDS", False),
        ("PASSWORD_MIN_LENGTH", False),
        ("MQTT_CA_CERT", False),
        ("GITHUB_OAUTH_CLIENT_ID", False),
    ],
)
def test_a_secret_name_ends_in_a_secret_word(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_random_looking_values_count_and_plain_ones_do_not() -> None:
    assert looks_random("kq9ZtB2wX7mPa4LrV1sYc8NdE3")  # 26 random letters and digits
    assert not looks_random("3f786850e387550fdab836ed7e6dc881de23001b")  # a git commit: hex, < 4 bits
    assert not looks_random("https://development.makapix.club")
    assert not looks_random("development")
    for plain in ("", "true", "8883", "abc", "  no "):
        assert plain_value(plain)
    assert not plain_value("hunter22")


def test_secret_fingerprints_hash_named_random_and_url_secrets_only() -> None:
    environment = {
        "JWT_SECRET_KEY": "prod-jwt-secret",
        "SOME_VALUE": "kq9ZtB2wX7mPa4LrV1sYc8NdE3",
        "DATABASE_URL": "postgresql://makapix:pg-password-1@makapix-prod-db:5432/makapix",
        "ENVIRONMENT": "production",
        "MQTT_PORT": "8883",
        "ADMIN_PASSWORD": "",
        "TOKEN_EXPIRY_SECONDS": "3600",
    }
    found = {f.variable: f for f in secret_fingerprints(environment)}
    assert set(found) == {"JWT_SECRET_KEY", "SOME_VALUE", "DATABASE_URL (password in the URL)"}
    url = found["DATABASE_URL (password in the URL)"]
    assert url.sha256 == hashlib.sha256(b"pg-password-1").hexdigest()
    assert url.host == "makapix-prod-db"
    assert found["JWT_SECRET_KEY"].host is None


def test_host_references_are_url_hosts_and_host_variables() -> None:
    references = host_references(
        {
            "DATABASE_URL": "postgresql://u:p@Makapix-Prod-DB:5432/x",
            "MQTT_HOST": "mqtt",
            "REDIS_HOSTS": "redis-a:6379, redis-b",
            "BASE_URL": "https://makapix.club",
            "MQTT_PORT": "8883",
            "DB_HOST": "not a host/name",
        }
    )
    assert set(references) == {
        HostReference("DATABASE_URL", "makapix-prod-db"),
        HostReference("MQTT_HOST", "mqtt"),
        HostReference("REDIS_HOSTS", "redis-a"),
        HostReference("REDIS_HOSTS", "redis-b"),
        HostReference("BASE_URL", "makapix.club"),
    }


def test_container_facts_read_an_inspect_document() -> None:
    facts = container_facts(
        {
            "Name": "/makapix-dev-db",
            "State": {"Status": "exited"},
            "Config": {
                "Labels": DEV,
                "Env": ["POSTGRES_PASSWORD=s3cret-value", "PGDATA=/x"],
                "Hostname": "abc",
            },
            "HostConfig": {
                "PortBindings": {
                    "5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "55433"}],
                    "9000/udp": [{"HostIp": "", "HostPort": ""}],
                }
            },
            "NetworkSettings": {
                "Networks": {
                    "makapix-dev-internal": {
                        "Aliases": ["db"],
                        "DNSNames": ["makapix-dev-db"],
                        "IPAddress": "",
                    }
                }
            },
            "Mounts": [
                {"Type": "volume", "Source": "/var/lib/docker/volumes/v/_data", "Destination": "/data"}
            ],
        }
    )
    assert facts.name == "makapix-dev-db" and facts.state == "exited"
    assert facts.ports == (PublishedPort("127.0.0.1", 55433, "tcp"),)  # the ephemeral one is no binding
    assert facts.networks == (Attachment("makapix-dev-internal", ("db", "makapix-dev-db"), ()),)
    assert facts.mounts == (Mount("/var/lib/docker/volumes/v/_data", "/data", "volume"),)
    assert [s.variable for s in facts.secrets] == ["POSTGRES_PASSWORD"]
    assert "s3cret-value" not in repr(facts)


# --- the audit of a whole engine state --------------------------------------------------------


def test_two_separated_environments_and_the_edge_yield_no_finding() -> None:
    report = findings_of(separated())
    assert report.findings == ()
    assert report.clean
    summary = report.projects[0]
    assert summary.environments == {
        "development": ("makapix-dev-api", "makapix-dev-db"),
        "production": ("makapix-prod-api", "makapix-prod-db"),
    }
    assert summary.shared == {"edge": ("makapix-edge-caddy",)}


def test_a_network_joined_by_both_environments_is_a_finding() -> None:
    containers = replace(
        separated(), "makapix-dev-api", networks=on("makapix-dev-internal", "makapix-prod-internal")
    )
    report = findings_of(containers)
    # On production's network, the api's host "db" now also resolves to production's database.
    assert kinds(report) == [Kind.SHARED_NETWORK, Kind.CROSS_ENVIRONMENT_HOST]
    assert report.findings[1].containers == ("makapix-dev-api", "makapix-prod-db")
    finding = report.findings[0]
    assert finding.networks == ("makapix-prod-internal",)
    assert set(finding.containers) == {"makapix-dev-api", "makapix-prod-api", "makapix-prod-db"}
    assert "docker network disconnect makapix-prod-internal" in finding.advice


def test_a_labelled_network_joined_by_the_other_environment_is_a_finding() -> None:
    containers = replace(separated(), "makapix-dev-db", networks=on("makapix-dev-internal", "makapix-spare"))
    labelled = (NetworkFacts("makapix-spare", PROD),)
    assert kinds(findings_of(containers, labelled)) == [Kind.SHARED_NETWORK]
    assert findings_of(containers).clean  # unlabelled and joined by one environment only: fine


def test_the_edge_may_join_edge_networks_only() -> None:
    containers = replace(
        separated(),
        "makapix-edge-caddy",
        networks=on("makapix-prod-edge", "makapix-dev-edge", "makapix-prod-internal"),
    )
    report = findings_of(containers)
    assert kinds(report) == [Kind.SHARED_NETWORK]
    assert report.findings[0].containers == ("makapix-edge-caddy",)
    assert "makapix-prod-internal" in report.findings[0].message


def test_a_shared_data_server_may_join_data_networks_only() -> None:
    server = ContainerFacts("makapix-shared-db", DATA, networks=on("makapix-prod-data", "makapix-dev-data"))
    prod = replace(separated(), "makapix-prod-api", networks=on("makapix-prod-internal", "makapix-prod-data"))
    both = replace(prod, "makapix-dev-api", networks=on("makapix-dev-internal", "makapix-dev-data"))
    assert findings_of([*both, server]).clean
    # On a data network joined by both environments, the environments share it: a finding.
    mixed = replace(both, "makapix-dev-api", networks=on("makapix-dev-internal", "makapix-prod-data"))
    assert kinds(findings_of([*mixed, server])) == [Kind.SHARED_NETWORK]
    # An edge container on a data network is off its kind.
    edge_on_data = ContainerFacts("makapix-edge-caddy2", EDGE, networks=on("makapix-prod-data"))
    assert kinds(findings_of([*both, server, edge_on_data])) == [Kind.SHARED_NETWORK]
    # Found on the engine: a shared server publishing a port also joins its owner's plain bridge
    # <project>-<name>-published (moby/moby#36174), labelled for production; that is its kind too.
    published = ContainerFacts(
        "makapix-shared-db", DATA, networks=on("makapix-prod-data", "makapix-dev-data", "makapix-prod-published")
    )
    labelled = (NetworkFacts("makapix-prod-published", {"makapix.environment": "production"}),)
    assert findings_of([*both, published], labelled).clean
    # An environment's internal network is still off its kind.
    internal = ContainerFacts("makapix-shared-db", DATA, networks=on("makapix-prod-data", "makapix-dev-internal"))
    assert kinds(findings_of([*both, internal])) == [Kind.SHARED_NETWORK]


def test_an_unlabelled_container_on_an_environment_network_is_a_finding() -> None:
    stray = ContainerFacts("debug-shell", {}, state="exited", networks=on("makapix-dev-internal"))
    other_project = ContainerFacts(
        "clippyfront-dev-web", {"clippyfront.environment": "development"}, networks=on("makapix-prod-edge")
    )
    report = findings_of([*separated(), stray, other_project])
    assert kinds(report) == [Kind.UNLABELLED_CONTAINER, Kind.UNLABELLED_CONTAINER]
    assert {f.containers for f in report.findings} == {("debug-shell",), ("clippyfront-dev-web",)}
    assert report.other_containers == ("clippyfront-dev-web", "debug-shell")
    # Not on any environment's network: listed, not a finding.
    assert findings_of([*separated(), ContainerFacts("lonely", {}, networks=on("elsewhere"))]).clean


def test_overlapping_mounts_of_two_environments_are_a_finding() -> None:
    for dev_path in ("/mnt/vault-1", "/mnt/vault-1/dev", "/mnt"):
        containers = replace(separated(), "makapix-dev-api", mounts=(Mount(dev_path, "/vault"),))
        report = findings_of(containers)
        assert kinds(report) == [Kind.OVERLAPPING_MOUNT], dev_path
        assert set(report.findings[0].paths) == {"/mnt/vault-1", dev_path}
        assert set(report.findings[0].containers) == {"makapix-dev-api", "makapix-prod-api"}


def test_overlapping_ports_of_two_environments_are_a_finding() -> None:
    for address in ("127.0.0.1", "0.0.0.0", ""):
        containers = replace(separated(), "makapix-dev-db", ports=(PublishedPort(address, 55432),))
        report = findings_of(containers)
        assert kinds(report) == [Kind.OVERLAPPING_PORT], address
        assert "55432" in report.findings[0].message
    elsewhere = replace(separated(), "makapix-dev-db", ports=(PublishedPort("10.8.0.1", 55432),))
    assert findings_of(elsewhere).clean


def test_the_same_secret_in_both_environments_is_a_finding_naming_variables_not_values() -> None:
    shared_key = "re_live_0123456789abcdef"
    prod_env = {"RESEND_API_KEY": shared_key, "JWT_SECRET_KEY": "prod-jwt-1"}
    dev_env = {"MAIL_KEY": shared_key, "JWT_SECRET_KEY": "dev-jwt-2"}
    containers = replace(separated(), "makapix-prod-api", secrets=secret_fingerprints(prod_env))
    containers = replace(containers, "makapix-dev-api", secrets=secret_fingerprints(dev_env))
    report = findings_of(containers)
    assert kinds(report) == [Kind.SHARED_SECRET]
    finding = report.findings[0]
    assert "makapix-prod-api RESEND_API_KEY" in finding.message
    assert "makapix-dev-api MAIL_KEY" in finding.message
    assert finding.containers == ("makapix-dev-api", "makapix-prod-api")
    everything = report.render_text() + json.dumps(report.as_json()) + report.render_prometheus(0)
    assert shared_key not in everything
    assert hashlib.sha256(shared_key.encode()).hexdigest()[:8] not in everything


def test_a_shared_servers_password_is_shared_by_design() -> None:
    url = "postgresql://clippyfront:one-password-9@makapix-shared-db:5432/clippy_front"
    server = ContainerFacts(
        "makapix-shared-db", DATA, networks=on("makapix-prod-data", "makapix-dev-data", aliases=("db",))
    )
    containers = replace(separated(), "makapix-prod-api", secrets=secret_fingerprints({"DATABASE_URL": url}))
    containers = replace(containers, "makapix-dev-api", secrets=secret_fingerprints({"DATABASE_URL": url}))
    assert findings_of([*containers, server]).clean
    # The same password towards an environment's own server is a finding.
    own = url.replace("makapix-shared-db", "makapix-prod-db")
    containers = replace(containers, "makapix-dev-api", secrets=secret_fingerprints({"DATABASE_URL": own}))
    containers = replace(containers, "makapix-prod-api", secrets=secret_fingerprints({"DATABASE_URL": own}))
    assert kinds(findings_of([*containers, server])) == [Kind.SHARED_SECRET]


def test_only_the_shared_servers_url_is_exempt_not_its_password_elsewhere() -> None:
    url = "postgresql://clippyfront:one-password-9@makapix-shared-db:5432/clippy_front"
    server = ContainerFacts(
        "makapix-shared-db", DATA, networks=on("makapix-prod-data", "makapix-dev-data", aliases=("db",))
    )
    # Both environments also use the value as their session key: that is a shared secret like any other.
    both = secret_fingerprints({"DATABASE_URL": url, "SESSION_KEY": "one-password-9"})
    containers = replace(separated(), "makapix-prod-api", secrets=both)
    containers = replace(containers, "makapix-dev-api", secrets=both)
    report = findings_of([*containers, server])
    assert kinds(report) == [Kind.SHARED_SECRET]
    assert "makapix-dev-api SESSION_KEY" in report.findings[0].message
    assert "DATABASE_URL" not in report.findings[0].message
    assert "one-password-9" not in report.render_text()


def test_a_container_pointing_at_the_other_environments_server_is_a_finding() -> None:
    by_name = replace(
        separated(),
        "makapix-dev-api",
        host_references=host_references({"DATABASE_URL": "postgresql://u:p@makapix-prod-db:5432/makapix"}),
    )
    report = findings_of(by_name)
    assert kinds(report) == [Kind.CROSS_ENVIRONMENT_HOST]
    assert report.findings[0].containers == ("makapix-dev-api", "makapix-prod-db")
    assert "DATABASE_URL" in report.findings[0].message
    # By address.
    addressed = replace(
        by_name, "makapix-prod-db", networks=(Attachment("makapix-prod-internal", ("db",), ("172.30.0.5",)),)
    )
    addressed = replace(
        addressed, "makapix-dev-api", host_references=host_references({"REDIS_HOST": "172.30.0.5"})
    )
    assert kinds(findings_of(addressed)) == [Kind.CROSS_ENVIRONMENT_HOST]
    # Each environment's own alias "db" is its own server: no finding (separated() uses it).


def test_other_projects_are_listed_by_name_and_not_audited() -> None:
    foreign = [
        ContainerFacts("clippyfront-prod-web", {"clippyfront.environment": "production"}, networks=on("x")),
        ContainerFacts("clippyfront-dev-web", {"clippyfront.environment": "development"}, networks=on("x")),
    ]
    report = findings_of([*separated(), *foreign])
    assert report.clean
    assert report.other_containers == ("clippyfront-dev-web", "clippyfront-prod-web")
    # Without --project every labelled project is audited, and that one shares network x.
    everything = audit_state(EngineState(tuple([*separated(), *foreign])))
    assert [s.project for s in everything.projects] == ["clippyfront", "makapix"]
    assert [(f.project, f.kind) for f in everything.findings] == [("clippyfront", Kind.SHARED_NETWORK)]


def test_prometheus_textfile_counts_every_kind_per_project() -> None:
    containers = replace(separated(), "makapix-dev-db", ports=(PublishedPort("", 55432),))
    text = findings_of(containers).render_prometheus(1700000000.5)
    assert "isolation_audit_up 1\n" in text
    assert "isolation_audit_last_run_timestamp_seconds 1700000000.500\n" in text
    assert 'isolation_audit_findings{project="makapix",kind="overlapping-port"} 1\n' in text
    assert 'isolation_audit_findings{project="makapix",kind="shared-secret"} 0\n' in text
    assert 'isolation_audit_containers{project="makapix",environment="shared-edge"} 1\n' in text
    for textfile in (text, unreadable_prometheus(1700000000.5)):
        linted = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=textfile, capture_output=True, text=True, check=False
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr


# --- the program's own four stacks --------------------------------------------------------------


def _plain(value: Any) -> Any:
    from tools.desired_state import Secret

    if isinstance(value, Secret):
        return _plain(value.value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def facts_from_desired_state(rendering: Any) -> list[ContainerFacts]:
    """The containers a stack declares, as the engine would show them once applied."""
    containers = []
    for resource in rendering.of_type("docker:index/container:Container"):
        inputs = _plain(resource.inputs)
        environment = dict(entry.partition("=")[::2] for entry in inputs.get("envs") or [])
        mounts = [Mount(m["source"], m["target"], m["type"]) for m in inputs.get("mounts") or []]
        for volume in inputs.get("volumes") or []:
            source = volume.get("hostPath") or f"/var/lib/docker/volumes/{volume['volumeName']}/_data"
            mounts.append(Mount(source, volume["containerPath"]))
        containers.append(
            ContainerFacts(
                inputs["name"],
                {label["label"]: label["value"] for label in inputs.get("labels") or []},
                networks=tuple(
                    Attachment(n["name"], tuple(n.get("aliases") or ()))
                    for n in inputs.get("networksAdvanced") or []
                ),
                mounts=tuple(mounts),
                ports=tuple(
                    PublishedPort(p.get("ip", ""), p["external"], p.get("protocol", "tcp"))
                    for p in inputs.get("ports") or []
                ),
                secrets=secret_fingerprints(environment),
                host_references=host_references(environment),
            )
        )
    return containers


def test_the_four_stacks_desired_state_yields_no_finding(render_stack: Any) -> None:
    root = Path(__file__).resolve().parents[2]
    containers = []
    for project_dir in (root, root / "examples" / "clippyfront"):
        for stack in ("prod", "dev"):
            containers += facts_from_desired_state(render_stack(stack, project_dir=project_dir))
    report = audit_state(EngineState(tuple(containers)))
    assert [s.project for s in report.projects] == ["clippyfront", "makapix"]
    assert report.findings == (), report.render_text()
    assert report.other_containers == ()
    # ClippyFront's environments share the database password (one role on the shared server, 000),
    # which the audit accepts only because the URL names the shared server.
    assert any("shared" in name for name in report.projects[0].shared.get("data", ()))


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def engine_state(monkeypatch: pytest.MonkeyPatch) -> list[EngineState]:
    """The CLI audits this state instead of a real engine."""
    holder = [EngineState(tuple(separated()))]
    monkeypatch.setattr(cli, "_docker_client", lambda: _Closable())
    monkeypatch.setattr(cli, "audit", lambda client, projects: audit_state(holder[0], projects))
    return holder


class _Closable:
    def close(self) -> None:
        pass


def test_cli_exits_0_when_clean_and_1_with_findings(
    engine_state: list[EngineState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    textfile = tmp_path / "isolation_audit.prom"
    assert cli.main(["audit", "--textfile", str(textfile)]) == 0
    assert "isolation audit: no findings" in capsys.readouterr().out
    assert 'isolation_audit_findings{project="makapix",kind="shared-network"} 0' in textfile.read_text()

    engine_state[0] = EngineState(
        tuple(replace(separated(), "makapix-dev-db", ports=(PublishedPort("", 55432),)))
    )
    assert cli.main(["audit", "--json", "--textfile", str(textfile)]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["clean"] is False
    assert [f["kind"] for f in document["findings"]] == ["overlapping-port"]
    assert document["findings"][0]["advice"]
    assert 'kind="overlapping-port"} 1' in textfile.read_text()


def test_a_named_project_without_labelled_containers_is_a_finding(
    engine_state: list[EngineState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Stacks deployed before the labels existed must not look clean to the timer (exit 1, metric > 0)."""
    textfile = tmp_path / "isolation_audit.prom"
    assert cli.main(["audit", "--project", "makapx", "--textfile", str(textfile)]) == 1
    assert "no container carries the label makapx.environment" in capsys.readouterr().out
    assert 'isolation_audit_findings{project="makapx",kind="unlabelled-project"} 1' in textfile.read_text()

    from dataclasses import replace as copy

    unlabelled = tuple(copy(c, labels={}) for c in separated() if c.name.startswith("makapix-prod"))
    engine_state[0] = EngineState(unlabelled)
    assert cli.main(["audit", "--project", "makapix", "--json"]) == 1
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["kind"] == "unlabelled-project"
    assert "makapix-prod-api" in finding["message"] and "redeploy" in finding["advice"]


def test_cli_exits_2_when_the_textfile_cannot_be_written(
    engine_state: list[EngineState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["audit", "--textfile", str(tmp_path / "missing" / "audit.prom")]) == 2
    assert "missing" in capsys.readouterr().err


def test_cli_exits_2_with_a_clear_message_when_no_engine_answers(tmp_path: Path) -> None:
    textfile = tmp_path / "audit.prom"
    environment = {**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "ops", "audit", "--textfile", str(textfile)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: cannot connect to the Docker engine")
    assert "tcp://127.0.0.1:1" in done.stderr and "DOCKER_HOST" in done.stderr
    assert "isolation_audit_up 0" in textfile.read_text()


def test_no_secret_value_reaches_any_output(
    engine_state: list[EngineState], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = ["prod-and-dev-share-this-1", "kq9ZtB2wX7mPa4LrV1sYc8NdE3", "url-password-77"]
    shared_env = [
        f"RESEND_API_KEY={values[0]}",
        f"TOKEN_SEED={values[1]}",
        f"REDIS_URL=redis://:{values[2]}@r:6379/0",
    ]

    def inspected(name: str, labels: dict[str, str]) -> ContainerFacts:
        return container_facts({"Name": f"/{name}", "Config": {"Labels": labels, "Env": shared_env}})

    engine_state[0] = EngineState((inspected("makapix-prod-api", PROD), inspected("makapix-dev-api", DEV)))
    textfile = tmp_path / "audit.prom"
    outputs = []
    for arguments in (["audit"], ["audit", "--json", "--textfile", str(textfile)]):
        assert cli.main(arguments) == 1
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    outputs.append(textfile.read_text())
    text = "\n".join(outputs)
    assert text.count("[shared-secret]") == 3  # each value found ...
    for value in values:  # ... and neither it nor its hash printed
        assert value not in text
        assert hashlib.sha256(value.encode()).hexdigest()[:12] not in text
