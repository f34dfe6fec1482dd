"""ClippyFront prod + dev on the real engine: one shared database and Redis, prefixes opt_/dev_.

Deployed in docs/clippyfront.md's first-deploy order (prod with pinned digests, dev on production's
servers, prod promoted from dev). The shared servers publish on the WireGuard address 10.8.0.1 for
the remote workers; an empty bridge interface carries that address on the test machine, as WireGuard does
on the real host. The remote GPU worker runs on another Docker host (SSH) and is not applied here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from ops.audit import audit
from tests.engine.harness import CONTAINER, NETWORK, StackHarness
from tests.engine.probes import exec_in, names, postgres_login, through_edge
from tests.engine.stacks import (
    CLIPPYFRONT,
    DeployedPair,
    deploy_shared_pair,
    push_application_images,
    seed_clippyfront_prod,
    wait_healthy,
)

pytestmark = pytest.mark.engine

EDGE = "clippyfront-edge-caddy"
SHARED = {"clippyfront-shared-db", "clippyfront-shared-redis"}
WIREGUARD_ADDRESS = "10.8.0.1"
DUMMY_INTERFACE = "mkpx-test-wg0"


@pytest.fixture(scope="module")
def wireguard_address() -> Iterator[str]:
    """10.8.0.1 on an empty bridge interface (no dummy module here) (the remote_access address the shared servers publish on)."""
    present = WIREGUARD_ADDRESS in subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    if not present:
        for command in (
            ["ip", "link", "add", DUMMY_INTERFACE, "type", "bridge"],
            ["ip", "addr", "add", f"{WIREGUARD_ADDRESS}/32", "dev", DUMMY_INTERFACE],
            ["ip", "link", "set", DUMMY_INTERFACE, "up"],
        ):
            subprocess.run(command, check=True, capture_output=True)
    try:
        yield WIREGUARD_ADDRESS
    finally:
        if not present:
            subprocess.run(["ip", "link", "del", DUMMY_INTERFACE], check=False, capture_output=True)


@pytest.fixture(scope="module")
def clippyfront(harness: StackHarness, test_registry: str, wireguard_address: str) -> Iterator[DeployedPair]:
    push_application_images(harness.client, CLIPPYFRONT, CLIPPYFRONT.version)
    pair = deploy_shared_pair(harness, CLIPPYFRONT, seed_prod=seed_clippyfront_prod)
    try:
        yield pair
    finally:
        for applied in (pair.dev, pair.prod):
            harness.destroy(applied.rendering, keep_protected=False)


def test_every_container_is_healthy_and_the_remote_worker_is_left_to_its_host(clippyfront: DeployedPair) -> None:
    everything = sorted(set(names(clippyfront.prod.rendering)) | set(names(clippyfront.dev.rendering)))
    status = wait_healthy(clippyfront.harness.client, everything)
    assert {name for name, value in status.items() if value == "healthy"} >= {
        "clippyfront-shared-db", "clippyfront-shared-redis", "clippyfront-prod-web", "clippyfront-dev-web",
    }  # fmt: skip
    assert all(value in ("healthy", "running") for value in status.values()), status
    assert clippyfront.prod.not_applied == ["clippyfront-prod-remote-gpu1-container"]


@pytest.mark.parametrize("stack,domain", [("prod", "clippyfront.com"), ("dev", "dev.clippyfront.com")])
def test_the_edge_routes_each_domain_to_its_web(clippyfront: DeployedPair, stack: str, domain: str) -> None:
    client = clippyfront.harness.client
    wait_healthy(client, [f"clippyfront-{stack}-web"])
    web_host = client.containers.get(f"clippyfront-{stack}-web").attrs["Config"]["Hostname"]
    status, headers, body = through_edge(domain, "/")
    assert status == 200 and body == f"<html>web {web_host}</html>"
    robots_status, _, robots = through_edge(domain, "/robots.txt")
    if stack == "dev":
        assert headers.get("x-robots-tag") == "noindex, nofollow"
        assert robots_status == 200 and "Disallow: /" in robots
    else:
        assert "x-robots-tag" not in headers and "Disallow" not in robots


def test_only_the_edge_and_the_shared_servers_join_both_environments(clippyfront: DeployedPair) -> None:
    client = clippyfront.harness.client
    prod = set(names(clippyfront.prod.rendering)) - SHARED - {EDGE}
    dev = set(names(clippyfront.dev.rendering))
    networks = {
        r.plain_inputs()["name"] for a in (clippyfront.prod, clippyfront.dev) for r in a.rendering.of_type(NETWORK)
    }
    for network in sorted(networks):
        members = {c["Name"] for c in client.networks.get(network).attrs["Containers"].values()}
        assert not (members & prod and members & dev), f"{network} joins {sorted(members)}"
    # No dev app container reaches a prod app container, by name or by address, and back.
    for stack, other in (("dev", "prod"), ("prod", "dev")):
        target = client.containers.get(f"clippyfront-{other}-web")
        hosts = [target.name, *(n["IPAddress"] for n in target.attrs["NetworkSettings"]["Networks"].values())]
        for host in hosts:
            code, output = exec_in(clippyfront, f"clippyfront-{stack}-worker", "probe", "reach", host, "8000")
            assert code == 1, f"clippyfront-{stack}-worker reaches {host}: {output}"
        assert exec_in(clippyfront, f"clippyfront-{stack}-worker", "probe", "reach", "web", "8000")[0] == 0


def test_the_shared_servers_answer_on_loopback_and_the_wireguard_address(clippyfront: DeployedPair) -> None:
    url = clippyfront.prod.rendering.plain_outputs()["database_host_url"]
    assert postgres_login(url).startswith("ok clippyfront@clippy_front")
    assert postgres_login(url.replace("127.0.0.1:55432", f"{WIREGUARD_ADDRESS}:5432")).startswith("ok clippyfront@")
    import socket

    with socket.create_connection((WIREGUARD_ADDRESS, 6379), timeout=5) as redis:
        redis.sendall(b"PING\r\n")
        assert redis.recv(16) == b"+PONG\r\n"


def test_the_isolation_audit_finds_nothing_on_the_deployed_stacks(clippyfront: DeployedPair) -> None:
    report = audit(clippyfront.harness.client, ["clippyfront"])
    assert report.clean, report.render_text()
    (summary,) = report.projects
    assert set(summary.environments) == {"production", "development"}
    assert summary.shared == {"data": tuple(sorted(SHARED)), "edge": (EDGE,)}


def test_cgroup_limits_equal_the_stacks_numbers(clippyfront: DeployedPair) -> None:
    checked = 0
    for applied in (clippyfront.prod, clippyfront.dev):
        for resource in applied.rendering.of_type(CONTAINER):
            inputs = resource.plain_inputs()
            if "memory" not in inputs or resource.options.get("provider"):
                continue
            code, memory = exec_in(clippyfront, inputs["name"], "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
            _, quota = exec_in(clippyfront, inputs["name"], "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
            assert code == 0 and int(memory) == inputs["memory"] * 1024 * 1024, inputs["name"]
            assert int(quota) == int(float(inputs["cpus"]) * 100000), inputs["name"]
            checked += 1
    assert checked >= 5


def test_the_sampling_run_fills_dev_prefix_from_opt_through_the_read_only_role(clippyfront: DeployedPair) -> None:
    summary = json.loads(clippyfront.dev.command_outputs["clippyfront-dev-sampling-command"].splitlines()[-1])
    assert summary.get("loaded") is True and summary.get("vault") is None, summary
    url = clippyfront.prod.rendering.plain_outputs()["database_host_url"]
    with psycopg.connect(url) as connection:
        emails = [row[0] for row in connection.execute("SELECT email FROM dev_users").fetchall()]
        invitations = connection.execute("SELECT count(*) FROM dev_team_invitations").fetchone()
        source = connection.execute("SELECT count(*) FROM opt_users").fetchone()
    assert 0 < len(emails) < 60 and all(email.endswith("@dev.clippyfront.local") for email in emails)
    assert invitations == (0,) and source == (60,)


def test_applying_the_same_render_twice_changes_nothing(clippyfront: DeployedPair) -> None:
    for applied in (clippyfront.prod, clippyfront.dev):
        again = clippyfront.harness.apply(applied.rendering, CLIPPYFRONT.project_dir)
        assert again.changes == [], again.changes


