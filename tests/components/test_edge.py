"""The Caddy labels the prod and dev stacks declare, run together in one real Caddy."""

from __future__ import annotations

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
