"""Docker labels that route one environment through the shared Caddy (caddy-docker-proxy).

Each environment's web and api containers carry labels naming the same site (the environment's
domain); caddy-docker-proxy merges them into one site block:

    development.makapix.club {
        header X-Robots-Tag "noindex, nofollow"          # development only
        handle /robots.txt {                             # development only
            respond `User-agent: *
    Disallow: /
    ` 200
        }
        handle /api/* {                                  # handle_path when the prefix is stripped
            reverse_proxy 172.18.0.7:8000 {
                header_down -X-Robots-Tag                # development only: the app's own value goes
            }
        }
        handle {
            reverse_proxy 172.18.0.6:3000 {
                header_down -X-Robots-Tag                # development only
            }
        }
    }

``handle`` blocks are mutually exclusive and Caddy tries the most specific path first, so
/robots.txt never reaches the web app on development and everything not under the api prefix goes to
web.  ``header`` runs before every handler, so each development response carries the tag, including
Caddy's own error responses (502 when an upstream is down).

The crawler-blocking labels sit on BOTH containers: caddy-docker-proxy merges identical blocks, and if
one container is stopped (its labels vanish) the other still keeps development unindexable.

004 §6's snippet is wrong in three ways, each avoided here: ``handle_path`` takes a path (not a
named matcher defined elsewhere); a multi-line ``respond`` body must be ONE token, so it is quoted
inside the label value; a header value with a comma and a space must be quoted inside the label
value, since ``header Name a, b`` is a search-and-replace of "a," by "b".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROBOTS_TXT = "User-agent: *\nDisallow: /\n"
ROBOTS_TAG = "noindex, nofollow"

# Global options, as labels on the Caddy container itself (caddy-docker-proxy reads its labels too):
# HTTP metrics labelled by site host, so that the latency alert (ops/alerts.py) can tell the
# environments apart.  `metrics { per_host }` is Caddy 2.9+ syntax (caddy-docker-proxy 2.10+); Caddy
# 2.6-2.8 only know `servers { metrics }`, whose series carry no host label.
CADDY_GLOBAL_LABELS = {"caddy.metrics.per_host": ""}

_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
_PATH_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServiceRoute:
    """One routed service: requests under ``path`` go to its ``port``; ``"/"`` is everything else."""

    service: str
    path: str
    port: int


@dataclass(frozen=True)
class SiteSettings:
    """How the shared Caddy reaches every routed service of one environment, whatever the services are."""

    domain: str
    ingress_network: str
    routes: tuple[ServiceRoute, ...]
    # Remove a service's path prefix before passing the request on (never for the "/" service).
    strip_prefixes: bool = False
    block_crawlers: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not _DOMAIN.match(self.domain):
            problems.append(f"domain {self.domain!r} is not a DNS name (e.g. 'development.makapix.club')")
        if not _NETWORK.match(self.ingress_network):
            problems.append(f"ingress_network {self.ingress_network!r} is not a Docker network name")
        for route in self.routes:
            if route.path != "/" and not _PATH_PREFIX.match(route.path):
                problems.append(
                    f"route of {route.service!r}: {route.path!r} is not '/' or a URL path without "
                    "trailing slash (e.g. '/api')"
                )
            if not isinstance(route.port, int) or not 1 <= route.port <= 65535:
                problems.append(f"port of {route.service!r}: {route.port!r} is not a TCP port (1-65535)")
        for what, values in (
            ("service", [route.service for route in self.routes]),
            ("path", [route.path for route in self.routes]),
        ):
            for value in sorted({v for v in values if values.count(v) > 1}):
                problems.append(f"{what} {value!r} is routed more than once")
        if problems:
            raise ValueError("invalid Caddy route settings: " + "; ".join(problems))


def _site_wide_labels(domain: str, ingress_network: str, block_crawlers: bool) -> dict[str, str]:
    labels = {"caddy": domain, "caddy_ingress_network": ingress_network}
    if block_crawlers:
        # Quoted so that the value stays one token: unquoted it would be a search-and-replace.
        labels["caddy.0_header"] = f'X-Robots-Tag "{ROBOTS_TAG}"'
        labels["caddy.1_handle"] = "/robots.txt"
        # Quoted so that the multi-line body stays one token; caddy-docker-proxy writes it in backticks.
        labels["caddy.1_handle.respond"] = f'"{ROBOTS_TXT}" 200'
    return labels


def site_labels(site: SiteSettings) -> dict[str, dict[str, str]]:
    """Labels per routed service: a ``handle <path>/*`` block each, then the ``"/"`` service's ``handle``.

    Each block has its own order number (from 2; 0 and 1 are the crawler blocking), so that
    caddy-docker-proxy keeps them apart; the catch-all comes last.
    """
    prefixed = sorted((r for r in site.routes if r.path != "/"), key=lambda r: (-len(r.path), r.path))
    catch_all = [r for r in site.routes if r.path == "/"]
    handle = "handle_path" if site.strip_prefixes else "handle"
    labels: dict[str, dict[str, str]] = {}
    for order, route in enumerate(prefixed, start=2):
        block = f"caddy.{order}_{handle}"
        labels[route.service] = {
            **_site_wide_labels(site.domain, site.ingress_network, site.block_crawlers),
            block: f"{route.path}/*",
            f"{block}.reverse_proxy": f"{{{{upstreams {route.port}}}}}",
        }
    for route in catch_all:
        block = f"caddy.{2 + len(prefixed)}_handle"
        labels[route.service] = {
            **_site_wide_labels(site.domain, site.ingress_network, site.block_crawlers),
            f"{block}.reverse_proxy": f"{{{{upstreams {route.port}}}}}",
        }
    if site.block_crawlers:
        # An app that sets its own X-Robots-Tag must not add an indexable value next to ours.
        for service_labels in labels.values():
            proxy = next(label for label in service_labels if label.endswith(".reverse_proxy"))
            service_labels[f"{proxy}.header_down"] = "-X-Robots-Tag"
    return labels
