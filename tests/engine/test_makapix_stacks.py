"""Makapix prod + dev, deployed on the real engine in the README's fresh-machine order, end to end.

The module fixture ``makapix`` deploys both stacks once (dev with prod absent, prod promoted from
dev, production's data, dev again: its sampling run) and yields the ``DeployedPair``; each test
checks one property on the live containers. A further check on the deployed stacks (e.g. the ops
audit) is one more test taking ``makapix``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ops.audit import Kind, audit
from tests.engine.harness import CONTAINER, NETWORK, StackHarness
from tests.engine.probes import exec_in, mqtt_connect, names, postgres_login, through_edge
from tests.engine.stacks import (
    MAKAPIX,
    DeployedPair,
    deploy_pair,
    push_application_images,
    seed_makapix_prod,
    wait_healthy,
)

pytestmark = pytest.mark.engine

EDGE = "makapix-edge-caddy"


@pytest.fixture(scope="module")
def makapix(harness: StackHarness, test_registry: str) -> Iterator[DeployedPair]:
    push_application_images(harness.client, MAKAPIX, MAKAPIX.version)
    pair = deploy_pair(harness, MAKAPIX, seed_prod=seed_makapix_prod)
    try:
        yield pair
    finally:
        for applied in (pair.dev, pair.prod):
            harness.destroy(applied.rendering, keep_protected=False)


def environment_containers(pair: DeployedPair, stack: str) -> list[str]:
    rendering = pair.prod.rendering if stack == "prod" else pair.dev.rendering
    return [name for name in names(rendering) if name != EDGE]


# --- health ----------------------------------------------------------------------------------------


def test_every_container_is_healthy_by_its_own_health_check(makapix: DeployedPair) -> None:
    client = makapix.harness.client
    everything = sorted(set(names(makapix.prod.rendering)) | set(names(makapix.dev.rendering)))
    status = wait_healthy(client, everything)
    with_checks = {
        resource.plain_inputs()["name"]
        for applied in (makapix.prod, makapix.dev)
        for resource in applied.rendering.of_type(CONTAINER)
        if resource.plain_inputs().get("healthcheck")
    }
    assert with_checks >= {"makapix-prod-db", "makapix-prod-api", "makapix-dev-mqtt", "makapix-dev-web"}
    assert {name: status[name] for name in with_checks} == {name: "healthy" for name in with_checks}
    assert all(status[name] == "running" for name in everything if name not in with_checks)


# --- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack,domain", [("prod", "makapix.club"), ("dev", "development.makapix.club")])
def test_the_edge_routes_by_host_to_web_and_api(makapix: DeployedPair, stack: str, domain: str) -> None:
    wait_healthy(makapix.harness.client, [f"makapix-{stack}-api", f"makapix-{stack}-web"])
    client = makapix.harness.client
    api_host = client.containers.get(f"makapix-{stack}-api").attrs["Config"]["Hostname"]
    web_host = client.containers.get(f"makapix-{stack}-web").attrs["Config"]["Hostname"]
    status, headers, body = through_edge(domain, "/api/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["hostname"] == api_host and health["db"]["ok"] and health["redis"]["ok"]
    status, headers, body = through_edge(domain, "/")
    assert status == 200 and body == f"<html>web {web_host}</html>"
    robots_status, _, robots = through_edge(domain, "/robots.txt")
    if stack == "dev":
        assert headers.get("x-robots-tag") == "noindex, nofollow"
        assert robots_status == 200 and "Disallow: /" in robots
    else:
        assert "x-robots-tag" not in headers
        assert "Disallow" not in robots  # prod's robots.txt is the web app's


# --- isolation -------------------------------------------------------------------------------------


def addresses(pair: DeployedPair, container: str) -> list[str]:
    networks = pair.harness.client.containers.get(container).attrs["NetworkSettings"]["Networks"]
    return [network["IPAddress"] for network in networks.values() if network["IPAddress"]]


SERVERS = {"db": 5432, "redis": 6379, "mqtt": 8883}


@pytest.mark.parametrize("stack,other", [("dev", "prod"), ("prod", "dev")])
def test_no_container_reaches_the_other_environments_servers(makapix: DeployedPair, stack: str, other: str) -> None:
    targets = [
        (host, port)
        for server, port in SERVERS.items()
        for host in [f"makapix-{other}-{server}", *addresses(makapix, f"makapix-{other}-{server}")]
    ]
    for container in ("api", "worker", "web"):
        name = f"makapix-{stack}-{container}"
        # Control: its own servers answer (by alias), so a refusal below is isolation, not a dead probe.
        for server, port in SERVERS.items():
            assert exec_in(makapix, name, "probe", "reach", server, str(port))[0] == 0, (name, server)
        for host, port in targets:
            code, output = exec_in(makapix, name, "probe", "reach", host, str(port))
            assert code == 1, f"{name} reaches {host}:{port} of {other}: {output}"


def test_only_the_edge_joins_both_environments(makapix: DeployedPair) -> None:
    client = makapix.harness.client
    prod, dev = set(environment_containers(makapix, "prod")), set(environment_containers(makapix, "dev"))
    networks = {
        resource.plain_inputs()["name"]
        for applied in (makapix.prod, makapix.dev)
        for resource in applied.rendering.of_type(NETWORK)
    }
    for network in sorted(networks):
        members = {container["Name"] for container in client.networks.get(network).attrs["Containers"].values()}
        assert not (members & prod and members & dev), f"{network} joins {sorted(members)}"
    edge_networks = set(client.containers.get(EDGE).attrs["NetworkSettings"]["Networks"])
    assert edge_networks == {"makapix-prod-edge", "makapix-dev-edge"}


def test_each_probe_reports_what_it_reached(makapix: DeployedPair) -> None:
    for stack in ("prod", "dev"):
        code, output = exec_in(makapix, f"makapix-{stack}-api", "probe", "report")
        report = json.loads(output)
        assert code == 0 and report["db"]["ok"] and report["redis"]["ok"] and report["vault"]["ok"], report
        assert report["mqtt"]["ok"], report  # its client certificate, over mTLS, on the internal network
        assert report["db"]["database"] == ("makapix" if stack == "prod" else "makapix_dev")


# --- published ports -------------------------------------------------------------------------------


def test_databases_and_brokers_answer_on_their_host_ports(makapix: DeployedPair) -> None:
    certificates = {}
    for stack, applied in (("prod", makapix.prod), ("dev", makapix.dev)):
        assert postgres_login(applied.rendering.plain_outputs()["database_host_url"]).startswith("ok makapix@")
        envs = dict(
            item.split("=", 1)
            for item in applied.rendering.get(CONTAINER, f"makapix-{stack}-api-container").plain_inputs()["envs"]
        )
        certificates[stack] = (envs["MQTT_CA_CERT"], envs["MQTT_CLIENT_CERT"], envs["MQTT_CLIENT_KEY"])
    assert mqtt_connect("127.0.0.1", 8883, *certificates["prod"]) == "accepted"
    assert mqtt_connect("127.0.0.1", 8884, *certificates["dev"]) == "accepted"
    assert mqtt_connect("127.0.0.1", 8883, certificates["prod"][0], *certificates["dev"][1:]).startswith("refused")


# --- the isolation audit (issue 16) on what actually runs ----------------------------------------


def test_the_isolation_audit_finds_nothing_on_the_deployed_stacks_and_finds_drift(makapix: DeployedPair) -> None:
    client = makapix.harness.client
    report = audit(client, ["makapix"])
    assert report.clean, report.render_text()
    (summary,) = report.projects
    assert set(summary.environments) == {"production", "development"}
    assert set(summary.environments["production"]) == set(environment_containers(makapix, "prod"))
    assert set(summary.environments["development"]) == set(environment_containers(makapix, "dev"))
    assert summary.shared == {"edge": (EDGE,)}
    # Drift made by hand: a dev container attached to production's internal network is found, and named.
    network = client.networks.get("makapix-prod-internal")
    network.connect("makapix-dev-worker")
    try:
        drifted = audit(client, ["makapix"])
    finally:
        network.disconnect("makapix-dev-worker")
    # The network is shared, and through prod's aliases there the worker's "db", "redis"... now name prod's.
    shared = [finding for finding in drifted.findings if finding.kind == Kind.SHARED_NETWORK]
    assert len(shared) == 1 and "makapix-dev-worker" in shared[0].containers
    assert shared[0].networks == ("makapix-prod-internal",)
    crossing = [finding for finding in drifted.findings if finding.kind == Kind.CROSS_ENVIRONMENT_HOST]
    assert crossing and all(finding.containers[0] == "makapix-dev-worker" for finding in crossing)
    assert audit(client, ["makapix"]).clean


# --- limits ----------------------------------------------------------------------------------------


def test_cgroup_limits_equal_the_stacks_numbers(makapix: DeployedPair) -> None:
    checked = 0
    for applied in (makapix.prod, makapix.dev):
        for resource in applied.rendering.of_type(CONTAINER):
            inputs = resource.plain_inputs()
            if "memory" not in inputs or resource.options.get("provider"):
                continue
            name = inputs["name"]
            cgroup: dict[str, Any] = {}
            for key, path in (
                ("memory", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                ("reservation", "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes"),
                ("quota", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                ("period", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
            ):
                code, output = exec_in(makapix, name, "cat", path)
                assert code == 0, (name, path, output)
                cgroup[key] = int(output.strip())
            assert cgroup["memory"] == inputs["memory"] * 1024 * 1024, name
            if "memoryReservation" in inputs:
                assert cgroup["reservation"] == inputs["memoryReservation"] * 1024 * 1024, name
            assert cgroup["quota"] / cgroup["period"] == pytest.approx(float(inputs["cpus"])), name
            checked += 1
    assert checked >= 10


# --- sampling --------------------------------------------------------------------------------------


def test_the_sampling_run_fills_dev_from_prod_through_the_read_only_role(makapix: DeployedPair) -> None:
    summary = json.loads(makapix.dev.command_outputs["makapix-dev-sampling-command"].splitlines()[-1])
    assert summary.get("loaded") is True, summary
    prod_url = makapix.prod.rendering.plain_outputs()["database_host_url"]
    dev_url = makapix.dev.rendering.plain_outputs()["database_host_url"]
    with psycopg.connect(prod_url) as prod, psycopg.connect(dev_url) as dev:
        prod_users = prod.execute("SELECT count(*) FROM users").fetchone()
        dev_users = dev.execute("SELECT count(*) FROM users").fetchone()
        assert prod_users is not None and dev_users is not None
        assert 0 < dev_users[0] < prod_users[0]
        emails = [row[0] for row in dev.execute("SELECT email FROM users").fetchall()]
        assert emails and all(email.endswith("@dev.makapix.local") for email in emails)
        posts = dev.execute("SELECT storage_shard, storage_key::text FROM posts").fetchall()
    assert posts
    vault = makapix.dev.rendering.plain_outputs().get("vault_host_path", "/mnt/vault-dev")
    from pathlib import Path

    assert all(Path(vault, shard, f"{key}.png").is_file() for shard, key in posts)
    # The role the sampler read through is SELECT-only on production.
    reader_url = makapix.prod.rendering.plain_outputs()["sampling_source_url"]
    with psycopg.connect(reader_url, autocommit=True) as reader:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("DELETE FROM users")  # its sessions are read-only by default...
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("BEGIN READ WRITE; DELETE FROM users")  # ...and it holds no write privilege


# --- idempotence, release, rollback, data safety (in this order: each changes the deployed pair) ---


def test_applying_the_same_render_twice_changes_nothing(makapix: DeployedPair) -> None:
    client = makapix.harness.client
    before = {name: client.containers.get(name).id for name in names(makapix.prod.rendering) + names(makapix.dev.rendering)}
    for applied in (makapix.prod, makapix.dev):
        again = makapix.harness.apply(applied.rendering, MAKAPIX.project_dir)
        assert again.changes == [], again.changes
    after = {name: client.containers.get(name).id for name in before}
    assert after == before


def row_count(url: str, where: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT count(*) FROM site_stats_daily WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def newest_backup(directory: str) -> Any:
    from pathlib import Path

    backups = sorted(Path(directory).glob("*.pgdump"), key=lambda path: path.stat().st_mtime)
    assert backups, f"no backup in {directory}"
    return backups[-1]


def test_a_release_backs_up_first_promotes_devs_digest_and_the_runbook_rolls_back(makapix: DeployedPair) -> None:
    harness, client, project_dir = makapix.harness, makapix.harness.client, MAKAPIX.project_dir
    prod_url = makapix.prod.rendering.plain_outputs()["database_host_url"]
    old_digests = makapix.prod.rendering.plain_outputs()["image_digests"]
    with psycopg.connect(prod_url, autocommit=True) as connection:
        connection.execute("INSERT INTO site_stats_daily (date, total_page_views) VALUES ('2030-01-01', 1)")

    # A new version: dev runs it first, then production promotes dev's digests.
    push_application_images(client, MAKAPIX, "1.0.1")
    dev_render = harness.render(
        "dev", project_dir, extra_config=MAKAPIX.overrides("1.0.1"),
        references={"prod": makapix.prod.rendering.plain_outputs()},
    )  # fmt: skip
    harness.apply(dev_render, project_dir)
    new_digests = dev_render.plain_outputs()["image_digests"]
    assert new_digests["api"] != old_digests["api"]
    prod_render = harness.render(
        "prod", project_dir, extra_config={**MAKAPIX.overrides(), "services": MAKAPIX.production_repositories()},
        references={"dev": dev_render.plain_outputs(), "prod": makapix.prod.rendering.plain_outputs()},
    )  # fmt: skip
    released = harness.apply(prod_render, project_dir)
    order = [change.name for change in released.changes]
    assert order.index("makapix-prod-backup-pg-dump") < order.index("makapix-prod-api-container")
    backup = newest_backup("/srv/makapix/backups/prod")
    api = client.containers.get("makapix-prod-api")
    from datetime import datetime

    started = datetime.fromisoformat(api.attrs["State"]["StartedAt"][:26].rstrip("Z") + "+00:00")
    assert backup.stat().st_mtime < started.timestamp(), "the backup must exist before the new api starts"
    assert new_digests["api"] in client.images.get(api.attrs["Config"]["Image"]).attrs["RepoDigests"]
    assert api.attrs["Config"]["Image"] == new_digests["api"]
    assert prod_render.plain_outputs()["previous_image_digests"] == old_digests

    # The release writes; then it goes wrong. The README's rollback runbook, step by step:
    with psycopg.connect(prod_url, autocommit=True) as connection:
        connection.execute("INSERT INTO site_stats_daily (date, total_page_views) VALUES ('2030-01-02', 2)")
    subprocess.run(["docker", "stop", "makapix-prod-api", "makapix-prod-worker"], check=True, capture_output=True)
    import os

    restored = subprocess.run(
        [".venv/bin/python", "-m", "ops", "restore", "--dir", "/srv/makapix/backups/prod", "--json",
         "--pg-bin", "/usr/lib/postgresql/15/bin"],
        cwd=project_dir, env={**os.environ, "OPS_DATABASE_URL": prod_url}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    previous = prod_render.plain_outputs()["previous_image_digests"]
    pinned = {service: {"image": digest} for service, digest in previous.items()}
    rollback_render = harness.render(
        "prod", project_dir, extra_config={**MAKAPIX.overrides(), "services": pinned},
        references={"dev": dev_render.plain_outputs(), "prod": prod_render.plain_outputs()},
    )  # fmt: skip
    makapix.prod = harness.apply(rollback_render, project_dir)  # later tests see the rolled-back prod
    makapix.dev = harness.apply(dev_render, project_dir)
    assert client.containers.get("makapix-prod-api").attrs["Config"]["Image"] == old_digests["api"]
    assert wait_healthy(client, ["makapix-prod-api", "makapix-prod-web"]) == {
        "makapix-prod-api": "healthy", "makapix-prod-web": "healthy",
    }  # fmt: skip
    assert row_count(prod_url, "date = '2030-01-01'") == 1  # written before the release: kept
    assert row_count(prod_url, "date = '2030-01-02'") == 0  # written by the bad release: rolled back


def test_removing_the_containers_keeps_the_protected_volumes_data(makapix: DeployedPair) -> None:
    prod_url = makapix.prod.rendering.plain_outputs()["database_host_url"]
    with psycopg.connect(prod_url) as connection:
        users = connection.execute("SELECT count(*) FROM users").fetchone()
    for applied in (makapix.dev, makapix.prod):
        makapix.harness.destroy(applied.rendering, only=lambda resource: resource.type == CONTAINER)
    assert not [c.name for c in makapix.harness.client.containers.list(all=True) if c.name.startswith("makapix-")]
    volumes = {volume.name for volume in makapix.harness.client.volumes.list()}
    assert {"makapix-prod_pg_data", "makapix-dev_pg_data", "makapix-prod_redis_data", "makapix-prod_mqtt_data"} <= volumes
    for applied in (makapix.prod, makapix.dev):
        makapix.harness.apply(applied.rendering, MAKAPIX.project_dir)
    assert postgres_login(prod_url).startswith("ok")
    with psycopg.connect(prod_url) as connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == users
