"""The shared Caddy (caddy-docker-proxy) that routes both environments by domain (004 §2 option B, §6).

Design: one stack owns Caddy (``edge.caddy: own``, production by default) and creates an edge
network for every environment it serves (``edge.serves``).  Caddy joins each of those networks;
an environment's web and api join only their own edge network and carry labels that tell Caddy
their domain.  So Caddy can reach every environment, but no development container shares a
network with a production container.  The other stack (``edge.caddy: attach``) only labels its
containers and joins the edge network named after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.caddy_labels import CADDY_GLOBAL_LABELS, ServiceRoute, SiteSettings, site_labels
from components.config import EdgeSettings, ServiceSettings
from components.container import LOG_OPTIONS, container_options, labels, port_args, replace_when_changed
from components.placement import ServerPlacement


def caddy_labels(
    services: Mapping[str, ServiceSettings], web_domain: str, edge: EdgeSettings, ingress_network: str
) -> dict[str, dict[str, str]]:
    """The labels each routed service (one with a ``route``) carries for the shared Caddy, by service;
    ``ingress_network`` is the edge network the services join (``StackPlacement.edge_network``)."""
    routes = []
    for service, config in services.items():
        if config.route is not None:
            assert config.port is not None  # validated in config: a route needs a port
            routes.append(ServiceRoute(service, config.route, config.port))
    return site_labels(
        SiteSettings(
            domain=web_domain,
            ingress_network=ingress_network,
            routes=tuple(routes),
            strip_prefixes=edge.strip_api_prefix,
            block_crawlers=edge.block_crawlers,
        )
    )


@dataclass(frozen=True)
class EdgeArgs:
    placement: ServerPlacement
    # The edge network of every served environment, by environment name (StackPlacement).
    networks: Mapping[str, str]
    edge: EdgeSettings


class Edge(pulumi.ComponentResource):
    """Caddy and the edge networks of every environment it serves (only in the owning stack)."""

    networks: dict[str, docker.Network]
    container: docker.Container

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:edge:Caddy", name, None, opts)
        placement = args.placement
        assert placement.declared and placement.volume is not None, "only the edge's owner declares Caddy"
        self.networks = {
            served: docker.Network(
                f"{name}-{served}",
                name=network,
                driver="bridge",
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            for served, network in args.networks.items()
        }
        data = docker.Volume(
            f"{name}-data",
            name=placement.volume,
            # Certificates and ACME account: losing them means re-issuing against rate limits.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        network_names = [network.name for network in self.networks.values()]
        self.container = docker.Container(
            f"{name}-container",
            name=placement.container,
            image=args.edge.image,
            envs=[
                pulumi.Output.all(*network_names).apply(
                    lambda names: "CADDY_INGRESS_NETWORKS=" + ",".join(names)
                )
            ],
            ports=port_args(placement),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=data.name, container_path="/data"),
                # caddy-docker-proxy reads container labels from the Docker API; it never needs to write.
                docker.ContainerVolumeArgs(
                    host_path="/var/run/docker.sock", container_path="/var/run/docker.sock", read_only=True
                ),
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=network) for network in network_names
            ],
            labels=labels({**CADDY_GLOBAL_LABELS, **placement.labels}),
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            opts=container_options(self, replace_when_changed()),
        )
        self.register_outputs({"container": self.container.name, "networks": network_names})
