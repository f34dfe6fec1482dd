"""The Caddy labels the prod and dev stacks declare, run together in one real Caddy."""

from __future__ import annotations

import re
import subprocess

import pytest

from components.caddy_labels import ROBOTS_TAG, ROBOTS_TXT
from tools.caddy_docker_proxy import LabelledContainer, caddyfile_from_containers

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
CADDY_ITSELF = LabelledContainer({"caddy.auto_https": "off", "caddy.admin": "off"}, (), "caddy")


def declared_labels(rendering, container: str) -> dict[str, str]:
    inputs = rendering.get(CONTAINER, container).plain_inputs()
    return {
        label["label"]: label["value"]
        for label in inputs.get("labels", [])
        if label["label"].startswith("caddy")
    }


def test_both_stacks_labels_route_and_block_crawlers_in_one_caddy(
    render_stack, caddy, start_upstream, get, unused_port
):
    port = unused_port()
    containers = [CADDY_ITSELF]
    upstreams = {}
    for stack, hosts in (("prod", ("127.0.0.2", "127.0.0.3")), ("dev", ("127.0.0.4", "127.0.0.5"))):
        web = start_upstream(f"{stack}-web", hosts[0])
        api = start_upstream(f"{stack}-api", hosts[1])
        upstreams[stack] = (web, api)
        # The stack declares labels for its configured ports; the upstreams listen on free ones.
        rendering = render_stack(stack, services={"api": {"port": api.port}, "web": {"port": web.port}})
        for service, upstream in (("web", web), ("api", api)):
            labels = declared_labels(rendering, f"makapix-{stack}-{service}-container")
            assert labels["caddy_ingress_network"] == f"makapix-{stack}-edge"
            # Test only: plain HTTP on a loopback port instead of 443 with ACME.
            labels["caddy"] = f"http://{labels['caddy']}:{port}"
            containers.append(LabelledContainer(labels, (upstream.host,), f"{stack}-{service}"))
    caddy.run(caddyfile_from_containers(containers), port)

    for stack, domain in (("prod", "makapix.club"), ("dev", "development.makapix.club")):
        api = get(port, domain, "/api/posts")
        web = get(port, domain, "/")
        assert api.json() == {"upstream": f"{stack}-api", "path": "/api/posts"}
        assert web.json() == {"upstream": f"{stack}-web", "path": "/"}
        robots = get(port, domain, "/robots.txt")
        if stack == "dev":
            assert robots.body.decode() == ROBOTS_TXT
            for response in (api, web, robots):
                assert response.header("X-Robots-Tag") == [ROBOTS_TAG]
        else:
            assert robots.json()["upstream"] == "prod-web"
            for response in (api, web, robots):
                assert response.header("X-Robots-Tag") == []


def test_caddy_is_owned_by_prod_and_joins_each_edge_network(render_stack):
    prod = render_stack("prod")
    caddy = prod.get(CONTAINER, "makapix-edge-container").plain_inputs()
    assert [network["name"] for network in caddy["networksAdvanced"]] == [
        "makapix-prod-edge",
        "makapix-dev-edge",
    ]
    assert caddy["envs"] == ["CADDY_INGRESS_NETWORKS=makapix-prod-edge,makapix-dev-edge"]
    docker_socket = [v for v in caddy["volumes"] if v.get("hostPath") == "/var/run/docker.sock"]
    assert docker_socket and docker_socket[0]["readOnly"] is True
    assert {n.plain_inputs()["name"] for n in prod.of_type(NETWORK)} >= {
        "makapix-prod-edge",
        "makapix-dev-edge",
    }
    dev = render_stack("dev")
    assert not [c for c in dev.of_type(CONTAINER) if "caddy" in c.name]
    assert "makapix-dev-edge" not in {n.plain_inputs()["name"] for n in dev.of_type(NETWORK)}


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_only_web_and_api_carry_routes(stack, render_stack):
    rendering = render_stack(stack)
    assert declared_labels(rendering, f"makapix-{stack}-worker-container") == {}
    assert declared_labels(rendering, f"makapix-{stack}-db-container") == {}


def test_caddy_declares_per_host_metrics_as_a_global_option(render_stack):
    caddy = render_stack("prod").get(CONTAINER, "makapix-edge-container").plain_inputs()
    labels = {label["label"]: label["value"] for label in caddy["labels"]}
    # The ownership label is for `python -m ops audit`; caddy-docker-proxy reads only caddy* labels.
    assert labels == {"caddy.metrics.per_host": "", "makapix.shared": "edge"}
    # caddy-docker-proxy reads the Caddy container's own labels: a top-level label is a global option.
    assert caddyfile_from_containers([LabelledContainer(labels, (), "caddy")]) == (
        "{\n\tmetrics {\n\t\tper_host\n\t}\n}\n"
    )
    assert caddy["image"] == "lucaslorentz/caddy-docker-proxy:2.10.0-alpine"  # built with Caddy 2.10


def caddy_version(caddy) -> tuple[int, int]:
    output = subprocess.run([caddy.caddy, "version"], capture_output=True, text=True, check=True).stdout
    major, minor = re.match(r"v?(\d+)\.(\d+)", output).groups()
    return int(major), int(minor)


def test_caddy_metrics_by_host_or_what_the_installed_caddy_can_prove(
    render_stack, caddy, start_upstream, get, unused_port
):
    """Caddy >= 2.9 runs the declared labels and labels each environment's latency by host.

    Debian's Caddy 2.6 predates `metrics { per_host }`: there the test proves that this global option is
    the only thing 2.6 refuses in the stacks' Caddyfile, and that the same label path with 2.6's syntax
    (`servers { metrics }`) yields request-duration metrics from a real Caddy (without host label).
    """
    port, admin = unused_port(), unused_port()
    declared = {
        label["label"]: label["value"]
        for label in render_stack("prod").get(CONTAINER, "makapix-edge-container").plain_inputs()["labels"]
    }
    test_only = {"caddy.auto_https": "off", "caddy.admin": f"127.0.0.1:{admin}"}
    sites = []
    for stack, host in (("prod", "127.0.0.2"), ("dev", "127.0.0.4")):
        upstream = start_upstream(f"{stack}-web", host)
        ports = {"web": {"port": upstream.port}, "api": {"port": upstream.port}}
        rendering = render_stack(stack, services=ports)
        for service in ("web", "api"):
            labels = declared_labels(rendering, f"makapix-{stack}-{service}-container")
            labels["caddy"] = f"http://{labels['caddy']}:{port}"
            sites.append(LabelledContainer(labels, (upstream.host,), f"{stack}-{service}"))

    def scrape(caddy_labels: dict[str, str]) -> str:
        caddy.run(caddyfile_from_containers([LabelledContainer(caddy_labels, (), "caddy"), *sites]), port)
        for domain in ("makapix.club", "development.makapix.club"):
            assert get(port, domain, "/").status == 200
        metrics = get(admin, f"127.0.0.1:{admin}", "/metrics")
        assert metrics.status == 200
        return metrics.body.decode()

    if caddy_version(caddy) >= (2, 9):
        metrics = scrape({**declared, **test_only})
        for domain in ("makapix.club", "development.makapix.club"):
            series = rf'caddy_http_request_duration_seconds_count\{{[^}}]*host="{re.escape(domain)}"'
            assert re.search(series, metrics), domain
        return
    as_declared = [LabelledContainer({**declared, **test_only}, ()), *sites]
    refused = caddy.validate(caddyfile_from_containers(as_declared))
    assert refused.returncode != 0 and "unrecognized global option: metrics" in refused.stderr
    older = {"caddy.servers.metrics": "", **test_only}
    metrics = scrape(older)
    series = r"^caddy_http_request_duration_seconds_count\{([^}]*)\} (\d+)"
    samples = re.findall(series, metrics, re.MULTILINE)
    assert samples and sum(int(count) for _, count in samples) >= 2
    assert all("host=" not in labels for labels, _ in samples)  # why the stacks need Caddy 2.9+


def test_a_first_dev_deploy_joins_only_networks_that_exist(monkeypatch):
    """Fresh machine, prod absent: dev's containers cannot join the edge network prod creates.

    Found on the real engine (issue 12): Docker refuses to start a container on a network that does
    not exist ("network makapix-dev-edge not found"), so `scripts/up dev` failed on a fresh machine.
    """
    from pathlib import Path

    from tools.desired_state import render

    monkeypatch.setenv("MAKAPIX_ABSENT_STACKS", "prod")
    rendering = render("dev", Path(__file__).parents[2])
    declared = {network.plain_inputs()["name"] for network in rendering.of_type(NETWORK)}
    for container in rendering.of_type(CONTAINER):
        joined = {network["name"] for network in container.plain_inputs().get("networksAdvanced") or []}
        assert joined <= declared, f"{container.name} joins {sorted(joined - declared)}, which no existing stack makes"
