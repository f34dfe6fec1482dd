"""The labels each environment declares, turned into caddy-docker-proxy's Caddyfile and run by real Caddy.

Only this harness rewrites a site address (``domain`` -> ``http://domain:<free port>``) and adds the
global options ``auto_https off`` / ``admin off``; it does so through labels, as an operator would
on the Caddy container, so the label generator itself is what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from components.caddy_labels import (
    ROBOTS_TAG,
    ROBOTS_TXT,
    ServiceRoute,
    SiteSettings,
    site_labels,
)
from tools.caddy_docker_proxy import LabelledContainer, caddyfile_from_containers

if TYPE_CHECKING:  # fixtures' types only; conftest is not imported at run time
    from tests.components.conftest import CaddyHarness, Response, Upstream

PROD_DOMAIN = "makapix.club"
DEV_DOMAIN = "development.makapix.club"
# Global options as labels on the Caddy container itself (a block without site address).
CADDY_ITSELF = LabelledContainer({"caddy.auto_https": "off", "caddy.admin": "off"}, (), "caddy")

Get = Callable[[int, str, str], "Response"]
StartUpstream = Callable[[str, str], "Upstream"]
Port = Callable[[], int]


def makapix_labels(
    domain: str,
    ingress_network: str,
    *,
    api_port: int = 8000,
    web_port: int = 3000,
    strip_api_prefix: bool = False,
    block_crawlers: bool = False,
) -> dict[str, dict[str, str]]:
    """Makapix's two routes: ``/api/*`` to the api, everything else to web."""
    return site_labels(
        SiteSettings(
            domain=domain,
            ingress_network=ingress_network,
            routes=(ServiceRoute("api", "/api", api_port), ServiceRoute("web", "/", web_port)),
            strip_prefixes=strip_api_prefix,
            block_crawlers=block_crawlers,
        )
    )


def served_on(labels: dict[str, str], port: int) -> dict[str, str]:
    """Test-only: serve the site over plain HTTP on a loopback port instead of 443 with ACME."""
    return {**labels, "caddy": f"http://{labels['caddy']}:{port}"}


@dataclass
class Environment:
    domain: str
    web: Upstream
    api: Upstream
    containers: list[LabelledContainer]


def environment(
    start_upstream: StartUpstream,
    name: str,
    domain: str,
    hosts: tuple[str, str],
    port: int,
    *,
    block_crawlers: bool,
    strip_api_prefix: bool = False,
) -> Environment:
    web = start_upstream(f"{name}-web", hosts[0])
    api = start_upstream(f"{name}-api", hosts[1])
    labels = makapix_labels(
        domain,
        f"makapix-{name}-edge",
        api_port=api.port,
        web_port=web.port,
        strip_api_prefix=strip_api_prefix,
        block_crawlers=block_crawlers,
    )
    containers = [
        LabelledContainer(served_on(labels["web"], port), (web.host,), f"{name}-web"),
        LabelledContainer(served_on(labels["api"], port), (api.host,), f"{name}-api"),
    ]
    return Environment(domain, web, api, containers)


def answered_by(response: Response) -> tuple[str, str]:
    assert response.status == 200, response
    body = response.json()
    return body["upstream"], body["path"]


@pytest.mark.parametrize("strip", [False, True], ids=["keep-prefix", "strip-prefix"])
def test_production_routes_api_and_web_and_does_not_block_crawlers(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port, strip: bool
) -> None:
    port = unused_port()
    prod = environment(
        start_upstream,
        "prod",
        PROD_DOMAIN,
        ("127.0.0.2", "127.0.0.3"),
        port,
        block_crawlers=False,
        strip_api_prefix=strip,
    )
    caddy.run(caddyfile_from_containers([CADDY_ITSELF, *prod.containers]), port)

    assert answered_by(get(port, PROD_DOMAIN, "/api/posts?page=2")) == (
        "prod-api",
        "/posts?page=2" if strip else "/api/posts?page=2",
    )
    assert answered_by(get(port, PROD_DOMAIN, "/")) == ("prod-web", "/")
    assert answered_by(get(port, PROD_DOMAIN, "/robots.txt")) == ("prod-web", "/robots.txt")
    assert answered_by(get(port, PROD_DOMAIN, "/apiary")) == ("prod-web", "/apiary")
    assert answered_by(get(port, PROD_DOMAIN, "/api")) == ("prod-web", "/api")
    for path in ("/", "/api/x", "/robots.txt", "/missing"):
        assert get(port, PROD_DOMAIN, path).header("X-Robots-Tag") == [], path
    assert get(port, PROD_DOMAIN, "/indexable").header("X-Robots-Tag") == [
        "all"
    ]  # production leaves the app be


@pytest.mark.parametrize("strip", [False, True], ids=["keep-prefix", "strip-prefix"])
def test_development_routes_and_blocks_crawlers_on_every_response(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port, strip: bool
) -> None:
    port = unused_port()
    dev = environment(
        start_upstream,
        "dev",
        DEV_DOMAIN,
        ("127.0.0.4", "127.0.0.5"),
        port,
        block_crawlers=True,
        strip_api_prefix=strip,
    )
    caddy.run(caddyfile_from_containers([CADDY_ITSELF, *dev.containers]), port)

    api = get(port, DEV_DOMAIN, "/api/x")
    assert answered_by(api) == ("dev-api", "/x" if strip else "/api/x")
    web = get(port, DEV_DOMAIN, "/gallery")
    assert answered_by(web) == ("dev-web", "/gallery")
    robots = get(port, DEV_DOMAIN, "/robots.txt")
    assert robots.status == 200
    assert robots.body.decode() == ROBOTS_TXT == "User-agent: *\nDisallow: /\n"
    web_asks_for_indexing = get(port, DEV_DOMAIN, "/indexable")
    api_asks_for_indexing = get(port, DEV_DOMAIN, "/api/indexable")
    not_found = get(port, DEV_DOMAIN, "/missing")
    assert not_found.status == 404 and not_found.json()["upstream"] == "dev-web"

    dev.api.stop()  # Caddy's own error response when the api is down
    bad_gateway = get(port, DEV_DOMAIN, "/api/x")
    assert bad_gateway.status == 502

    responses = (api, web, web_asks_for_indexing, api_asks_for_indexing, robots, not_found, bad_gateway)
    for response in responses:
        assert response.header("X-Robots-Tag") == [ROBOTS_TAG], response


def test_both_environments_in_one_caddy_do_not_cross_route(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port
) -> None:
    port = unused_port()
    prod = environment(
        start_upstream, "prod", PROD_DOMAIN, ("127.0.0.2", "127.0.0.3"), port, block_crawlers=False
    )
    dev = environment(
        start_upstream, "dev", DEV_DOMAIN, ("127.0.0.4", "127.0.0.5"), port, block_crawlers=True
    )
    # Containers arrive in any order; caddy-docker-proxy merges them per site.
    caddyfile = caddyfile_from_containers(
        [CADDY_ITSELF, dev.containers[1], prod.containers[0], *dev.containers[:1], prod.containers[1]]
    )
    caddy.run(caddyfile, port)

    assert caddyfile.count("handle /api/* {") == 2
    for domain, name in ((PROD_DOMAIN, "prod"), (DEV_DOMAIN, "dev")):
        assert answered_by(get(port, domain, "/api/x")) == (f"{name}-api", "/api/x")
        assert answered_by(get(port, domain, "/")) == (f"{name}-web", "/")
    assert answered_by(get(port, PROD_DOMAIN, "/robots.txt")) == ("prod-web", "/robots.txt")
    assert get(port, DEV_DOMAIN, "/robots.txt").body.decode() == ROBOTS_TXT
    assert get(port, PROD_DOMAIN, "/api/x").header("X-Robots-Tag") == []
    assert get(port, DEV_DOMAIN, "/api/x").header("X-Robots-Tag") == [ROBOTS_TAG]
    # A host name that is neither environment reaches no upstream at all.
    stranger = get(port, "other.makapix.club", "/api/x")
    assert b"upstream" not in stranger.body


def test_development_blocks_crawlers_even_when_web_container_is_gone(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port
) -> None:
    port = unused_port()
    dev = environment(
        start_upstream, "dev", DEV_DOMAIN, ("127.0.0.4", "127.0.0.5"), port, block_crawlers=True
    )
    caddy.run(caddyfile_from_containers([CADDY_ITSELF, dev.containers[1]]), port)  # only the api's labels

    api = get(port, DEV_DOMAIN, "/api/x")
    assert answered_by(api) == ("dev-api", "/api/x")
    assert api.header("X-Robots-Tag") == [ROBOTS_TAG]
    assert get(port, DEV_DOMAIN, "/robots.txt").body.decode() == ROBOTS_TXT


# --- 004 §6 as written does not work; the harness notices ----------------------------------------

WEB_004 = {  # 004 §6 web-dev, subdomain routing and crawler blocking merged as one container
    "caddy": DEV_DOMAIN,
    "caddy.reverse_proxy": "{{upstreams 3000}}",
    "caddy.@robots.path": "/robots.txt",
    "caddy.handle_0.respond": "User-agent: *\nDisallow: /\n",  # YAML "|" block scalar
    "caddy.header.X-Robots-Tag": "noindex, nofollow",  # YAML quotes are gone by the time Docker has it
}
API_004 = {
    "caddy": DEV_DOMAIN,
    "caddy.@api.path": "/api/*",
    "caddy.handle_0.handle_path.reverse_proxy": "{{upstreams 8000}}",
}


def test_004_snippet_verbatim_is_rejected_by_caddy(caddy: CaddyHarness) -> None:
    caddyfile = caddyfile_from_containers(
        [CADDY_ITSELF, LabelledContainer(WEB_004, ("127.0.0.4",)), LabelledContainer(API_004, ("127.0.0.5",))]
    )
    checked = caddy.validate(caddyfile)
    assert checked.returncode != 0
    assert "handle_path" in checked.stderr
    # caddy-docker-proxy drops a site block that does not adapt: development would not be served at all.


def test_004_handle_path_with_named_matcher_is_rejected(caddy: CaddyHarness) -> None:
    labels = {
        "caddy": DEV_DOMAIN,
        "caddy.@api.path": "/api/*",
        "caddy.handle_path": "@api",
        "caddy.handle_path.reverse_proxy": "{{upstreams 8000}}",
    }
    checked = caddy.validate(
        caddyfile_from_containers([CADDY_ITSELF, LabelledContainer(labels, ("127.0.0.5",))])
    )
    assert checked.returncode != 0
    assert "path matcher must begin with '/'" in checked.stderr


def test_004_unquoted_multiline_respond_is_rejected(caddy: CaddyHarness) -> None:
    labels = {
        "caddy": DEV_DOMAIN,
        "caddy.@robots.path": "/robots.txt",
        "caddy.respond": "@robots User-agent: *\nDisallow: /\n",
    }
    checked = caddy.validate(caddyfile_from_containers([CADDY_ITSELF, LabelledContainer(labels, ())]))
    assert checked.returncode != 0
    assert "respond" in checked.stderr


def test_004_unquoted_header_value_with_comma_sets_no_header(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port
) -> None:
    port = unused_port()
    web = start_upstream("dev-web", "127.0.0.4")
    labels = {
        "caddy": f"http://{DEV_DOMAIN}:{port}",
        "caddy.header.X-Robots-Tag": "noindex, nofollow",
        "caddy.reverse_proxy": f"{{{{upstreams {web.port}}}}}",
    }
    caddy.run(caddyfile_from_containers([CADDY_ITSELF, LabelledContainer(labels, (web.host,))]), port)

    response = get(port, DEV_DOMAIN, "/")
    assert answered_by(response) == ("dev-web", "/")
    assert response.header("X-Robots-Tag") == []  # "replace 'noindex,' by 'nofollow'" in a header nobody set


# --- the generator's contract ----------------------------------------------------------------------


def test_default_labels_route_to_api_8000_and_web_3000_on_the_ingress_network() -> None:
    labels = makapix_labels(PROD_DOMAIN, "makapix-prod-edge")
    for container in (labels["web"], labels["api"]):
        assert container["caddy"] == PROD_DOMAIN
        assert container["caddy_ingress_network"] == "makapix-prod-edge"
        assert not any("X-Robots-Tag" in value or "robots" in value for value in container.values())
    caddyfile = caddyfile_from_containers(
        [LabelledContainer(labels["web"], ("172.18.0.6",)), LabelledContainer(labels["api"], ("172.18.0.7",))]
    )
    assert "handle /api/* {\n\t\treverse_proxy 172.18.0.7:8000\n\t}" in caddyfile
    assert "handle {\n\t\treverse_proxy 172.18.0.6:3000\n\t}" in caddyfile


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("domain", "https://makapix.club", "domain 'https://makapix.club' is not a DNS name"),
        ("domain", "makapix.club dev.makapix.club", "is not a DNS name"),
        ("ingress_network", "edge net", "ingress_network 'edge net'"),
    ],
)
def test_site_settings_reject_a_bad_site_naming_the_field(field: str, value: str, message: str) -> None:
    arguments = {"domain": DEV_DOMAIN, "ingress_network": "makapix-dev-edge", field: value}
    with pytest.raises(ValueError, match="invalid Caddy route settings") as error:
        SiteSettings(**arguments, routes=(ServiceRoute("web", "/", 3000),))
    assert message in str(error.value)


# --- any set of services: routes derive from each service's route and port ----------------------


def test_three_routed_services_each_reach_their_own_upstream(
    caddy: CaddyHarness, start_upstream: StartUpstream, get: Get, unused_port: Port
) -> None:
    port = unused_port()
    upstreams = {
        name: start_upstream(name, host)
        for name, host in (("app", "127.0.0.2"), ("api", "127.0.0.3"), ("admin", "127.0.0.4"))
    }
    labels = site_labels(
        SiteSettings(
            domain=DEV_DOMAIN,
            ingress_network="clippyfront-dev-edge",
            routes=(
                ServiceRoute("app", "/", upstreams["app"].port),
                ServiceRoute("api", "/api", upstreams["api"].port),
                ServiceRoute("admin", "/api/admin", upstreams["admin"].port),
            ),
            block_crawlers=True,
        )
    )
    assert set(labels) == {"app", "api", "admin"}
    containers = [
        LabelledContainer(served_on(labels[name], port), (upstream.host,), name)
        for name, upstream in upstreams.items()
    ]
    caddy.run(caddyfile_from_containers([CADDY_ITSELF, *containers]), port)

    assert answered_by(get(port, DEV_DOMAIN, "/")) == ("app", "/")
    assert answered_by(get(port, DEV_DOMAIN, "/api/x")) == ("api", "/api/x")
    assert answered_by(get(port, DEV_DOMAIN, "/api/admin/users")) == ("admin", "/api/admin/users")
    assert get(port, DEV_DOMAIN, "/robots.txt").body.decode() == ROBOTS_TXT
    assert get(port, DEV_DOMAIN, "/api/admin/users").header("X-Robots-Tag") == [ROBOTS_TAG]


def test_one_service_at_the_root_is_the_whole_site() -> None:
    labels = site_labels(
        SiteSettings(
            domain=PROD_DOMAIN,
            ingress_network="clippyfront-prod-edge",
            routes=(ServiceRoute("web", "/", 8000),),
        )
    )
    assert labels == {
        "web": {
            "caddy": PROD_DOMAIN,
            "caddy_ingress_network": "clippyfront-prod-edge",
            "caddy.2_handle.reverse_proxy": "{{upstreams 8000}}",
        }
    }


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ((ServiceRoute("a", "/", 1), ServiceRoute("b", "/", 2)), "path '/' is routed more than once"),
        ((ServiceRoute("a", "/", 1), ServiceRoute("a", "/x", 2)), "service 'a' is routed more than once"),
        ((ServiceRoute("a", "/x/", 1),), "route of 'a': '/x/' is not '/' or a URL path"),
        ((ServiceRoute("a", "/", 0),), "port of 'a': 0 is not a TCP port"),
    ],
)
def test_site_settings_reject_ambiguous_or_bad_routes(routes: tuple[ServiceRoute, ...], message: str) -> None:
    with pytest.raises(ValueError, match="invalid Caddy route settings") as error:
        SiteSettings(domain=DEV_DOMAIN, ingress_network="x-dev-edge", routes=routes)
    assert message in str(error.value)
