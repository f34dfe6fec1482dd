"""ClippyFront (seed 000) on the same program: examples/clippyfront rendered under mocks, exact properties,
its isolation guard, and its Caddy labels run by a real Caddy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.caddy_labels import ROBOTS_TAG, ROBOTS_TXT
from components.isolation import Fingerprint, check_pair, find_collisions, fingerprint
from components.parsing import ConfigurationError, merge_settings, parse_environment
from components.placement import stack_placement
from tools.caddy_docker_proxy import LabelledContainer, caddyfile_from_containers
from tools.desired_state import RenderError, Secret, fake_repo_digest

# The SSH host key of the example worker host 10.8.0.5 (remote workers need it pinned).
GPU1_KNOWN_HOSTS = "10.8.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "clippyfront"
CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
PROVIDER = "pulumi:providers:docker"
PASSWORD = "random:index/randomPassword:RandomPassword"
CADDY_ITSELF = LabelledContainer({"caddy.auto_https": "off", "caddy.admin": "off"}, (), "caddy")


def fingerprint_of(settings, secret_hashes=None):
    """The stack's fingerprint, its placement computed as __main__ does."""
    return fingerprint(settings, stack_placement(settings), secret_hashes)


def stack(stack_name: str, /, **changes: Any):
    config = yaml.safe_load((PROJECT / f"Pulumi.{stack_name}.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in config.items()}
    return parse_environment(merge_settings(values, changes), f"Pulumi.{stack_name}.yaml", "clippyfront")


def render(render_stack, stack_name: str, references: dict[str, Any] | None = None, **overrides: Any):
    return render_stack(stack_name, project_dir=PROJECT, references=references, **overrides)


def envs(container) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in container.plain_inputs()["envs"])


def prod_outputs_with_password(password: str) -> dict[str, Any]:
    """The recorded prod outputs, with a known shared database password instead of "[secret]"."""
    outputs = json.loads((PROJECT / "stack_references" / "prod.json").read_text())
    return {**outputs, "shared_database_password": password}


# --- what each stack declares -------------------------------------------------------------------


def test_stack_files_hold_only_what_differs_from_the_clippyfront_defaults():
    prod, dev = stack("prod"), stack("dev")
    assert (prod.project, prod.database.name, prod.database.table_prefix) == (
        "clippyfront",
        "clippy_front",
        "opt_",
    )
    assert (dev.database.name, dev.database.table_prefix) == ("clippy_front", "dev_")
    assert prod.database.mode == dev.database.mode == prod.redis.mode == dev.redis.mode == "shared"
    assert (prod.redis.db_index, dev.redis.db_index) == (1, 0)
    assert set(prod.services) == set(dev.services) == {"web", "worker"}
    assert prod.mqtt is None and prod.email is None
    for name in ("prod", "dev"):
        config = yaml.safe_load((PROJECT / f"Pulumi.{name}.yaml").read_text())["config"]
        for key in ("clippyfront:database", "clippyfront:redis", "clippyfront:services"):
            assert key not in config, f"Pulumi.{name}.yaml repeats a default: {key}"


@pytest.mark.parametrize(
    ("stack_name", "prefix", "index", "password"),
    [
        ("prod", "opt_", 1, "mock-secret-clippyfront-prod-database-password"),
        ("dev", "dev_", 0, "the-servers-password"),
    ],
)
def test_web_and_worker_get_exactly_000s_settings(render_stack, stack_name, prefix, index, password):
    rendering = render(
        render_stack, stack_name, references={"prod": prod_outputs_with_password("the-servers-password")}
    )
    redis = f"redis://clippyfront-shared-redis:6379/{index}"
    for service in ("web", "worker"):
        container = rendering.get(CONTAINER, f"clippyfront-{stack_name}-{service}-container")
        assert envs(container) == {
            "TABLE_PREFIX": prefix,
            "REDIS_URL": redis,
            "CELERY_BROKER_URL": redis,
            "CELERY_RESULT_BACKEND": redis,
            "DATABASE_URL": f"postgresql://clippyfront:{password}@clippyfront-shared-db:5432/clippy_front",
            "CLIPPY_INSTANCE_PATH": "/app/instance",
            "ADMIN_USERNAME": "admin",
            "ADMIN_EMAIL": "admin@clippyfront.com",
            "ADMIN_PASSWORD": f"mock-secret-clippyfront-{stack_name}-admin-password",
        }
        assert isinstance(container.inputs["envs"], Secret)  # the secrets hide the whole list
        inputs = container.plain_inputs()
        # Both run what the tag resolved to in development (prod through promotion).
        assert inputs["image"] == fake_repo_digest("ghcr.io/clippyfront/clippyfront:1.0.0")
        assert [n["name"] for n in inputs["networksAdvanced"]] == [
            f"clippyfront-{stack_name}-internal",
            f"clippyfront-{stack_name}-edge",
            f"clippyfront-{stack_name}-data",
        ]
        assert inputs["mounts"][0]["target"] == "/app/instance"
    web = rendering.get(CONTAINER, f"clippyfront-{stack_name}-web-container").plain_inputs()
    assert web["command"] == ["gunicorn", "--bind", "0.0.0.0:8000", "main:app"]


@pytest.mark.parametrize(("stack_name", "concurrency"), [("prod", 2), ("dev", 1)])
def test_a_celery_worker_per_environment_on_celery_cpu_gpu(render_stack, stack_name, concurrency):
    worker = render(render_stack, stack_name).get(CONTAINER, f"clippyfront-{stack_name}-worker-container")
    assert worker.plain_inputs()["command"] == [
        "celery",
        "-A",
        "app.tasks.celery_app",
        "worker",
        "--loglevel=info",
        "-Q",
        "celery,cpu,gpu",
        f"--concurrency={concurrency}",
    ]


def test_one_database_and_one_redis_declared_by_production_only(render_stack):
    prod, dev = render(render_stack, "prod"), render(render_stack, "dev")
    db = prod.get(CONTAINER, "clippyfront-prod-db-container").plain_inputs()
    assert db["name"] == "clippyfront-shared-db"
    assert {"POSTGRES_DB=clippy_front", "POSTGRES_USER=clippyfront"} <= set(db["envs"])
    assert db["ports"] == [
        {"external": 55432, "internal": 5432, "ip": "127.0.0.1"},
        {"external": 5432, "internal": 5432, "ip": "10.8.0.1"},
    ]
    redis = prod.get(CONTAINER, "clippyfront-prod-redis-container").plain_inputs()
    assert redis["name"] == "clippyfront-shared-redis"
    assert redis["ports"] == [{"external": 6379, "internal": 6379, "ip": "10.8.0.1"}]
    for server in (db, redis):
        # Each environment's data network, plus the plain bridge its published ports are forwarded from.
        assert [n["name"] for n in server["networksAdvanced"]] == [
            "clippyfront-prod-data",
            "clippyfront-dev-data",
            "clippyfront-prod-published",
        ]
    assert {v.plain_inputs()["name"] for v in prod.of_type(VOLUME)} >= {
        "clippyfront-shared_pg_data",
        "clippyfront-shared_redis_data",
    }
    assert {c.plain_inputs()["name"] for c in dev.of_type(CONTAINER)} == {
        "clippyfront-dev-web",
        "clippyfront-dev-worker",
    }
    assert not dev.of_type(VOLUME)
    assert "database_host_url" not in dev.outputs  # development publishes nothing: the server is production's


def test_no_development_container_shares_a_network_with_a_production_app_container(render_stack):
    def networks(rendering, exclude: tuple[str, ...]) -> set[str]:
        return {
            network["name"]
            for container in rendering.of_type(CONTAINER)
            if container.parent not in exclude
            for network in container.plain_inputs().get("networksAdvanced", [])
        }

    # Caddy and the shared servers are the only containers on both environments' networks.
    prod = networks(
        render(render_stack, "prod"), ("clippyfront-edge", "clippyfront-prod-db", "clippyfront-prod-redis")
    )
    dev = networks(render(render_stack, "dev"), ())
    assert prod.isdisjoint(dev), prod & dev
    for network in render(render_stack, "prod").of_type(NETWORK):
        if network.plain_inputs()["name"].endswith("-data"):
            assert network.plain_inputs()["internal"] is True


def test_each_environment_has_its_own_generated_admin_password(render_stack):
    for stack_name in ("prod", "dev"):
        rendering = render(render_stack, stack_name)
        generated = rendering.get(PASSWORD, f"clippyfront-{stack_name}-admin-password").plain_inputs()
        assert generated["length"] == 32 and generated["special"] is False
        assert rendering.outputs["admin_password"] == Secret(
            f"mock-secret-clippyfront-{stack_name}-admin-password"
        )


# --- remote workers ------------------------------------------------------------------------------


def test_remote_worker_runs_on_its_own_docker_host_bound_to_production(render_stack):
    prod = render(render_stack, "prod")
    provider = prod.get(PROVIDER, "clippyfront-prod-remote-gpu1-docker")
    # Only the host key pinned in the stack file is accepted (ssh options of the Docker provider).
    inputs = provider.plain_inputs()
    # Provider inputs reach the provider JSON-encoded.
    assert {**inputs, "sshOpts": json.loads(inputs["sshOpts"])} == {
        "host": "ssh://deploy@10.8.0.5",
        "sshOpts": [
            *("-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/dev/null"),
            *("-o", "GlobalKnownHostsFile=/dev/null"),
            *(
                "-o",
                f"KnownHostsCommand=/bin/echo {GPU1_KNOWN_HOSTS}",
            ),
        ],
    }
    worker = prod.get(CONTAINER, "clippyfront-prod-remote-gpu1-container")
    assert worker.options["provider"] == "clippyfront-prod-remote-gpu1-docker"
    inputs = worker.plain_inputs()
    assert inputs["name"] == "clippyfront-prod-worker-gpu1"
    assert inputs["gpus"] == "all"
    # Exactly the image the local worker runs: production's promoted digest, never the tag.
    local_worker = prod.get(CONTAINER, "clippyfront-prod-worker-container").plain_inputs()
    assert (
        inputs["image"] == local_worker["image"] == fake_repo_digest("ghcr.io/clippyfront/clippyfront:1.0.0")
    )
    assert inputs["command"][-3:] == ["-Q", "gpu", "--concurrency=1"]
    assert isinstance(worker.inputs["envs"], Secret)
    environment = envs(worker)
    assert environment["TABLE_PREFIX"] == "opt_"
    assert environment["CELERY_BROKER_URL"] == environment["REDIS_URL"] == "redis://10.8.0.1:6379/1"
    assert environment["DATABASE_URL"] == (
        "postgresql://clippyfront:mock-secret-clippyfront-prod-database-password@10.8.0.1:5432/clippy_front"
    )
    # Every local container stays on the local engine.
    local = [c for c in prod.of_type(CONTAINER) if c.parent != "clippyfront-prod-remote"]
    assert local and all("provider" not in c.options for c in local)


def test_a_bad_sampling_file_is_named_under_the_clippyfront_namespace(render_stack):
    with pytest.raises(RenderError) as refused:
        render(render_stack, "dev", sampling={"config_file": "nowhere.yaml"})
    assert "Pulumi.dev.yaml: clippyfront:sampling.config_file 'nowhere.yaml' cannot be read" in str(refused.value)


def test_a_remote_worker_declared_by_development_is_refused(render_stack):
    with pytest.raises(RenderError, match="remote workers join production only"):
        render(
            render_stack,
            "dev",
            remote_workers=[
                {
                    "name": "gpu1",
                    "docker_host": "ssh://deploy@10.8.0.5",
                    "known_hosts": GPU1_KNOWN_HOSTS,
                }
            ],
        )
    with pytest.raises(ConfigurationError, match="remote_access is set on a development stack"):
        stack("dev", remote_access={"address": "10.8.0.1"})


def test_remote_workers_need_an_address_to_reach_production():
    with pytest.raises(ConfigurationError, match=r"remote_workers need remote_access\.address"):
        stack("prod", remote_access=None)


# --- the isolation guard on the shared modes -----------------------------------------------------


def kinds(collisions) -> set[str]:
    return {collision.kind for collision in collisions}


def test_the_clippyfront_stacks_do_not_collide(render_stack):
    assert check_pair(stack("prod"), stack("dev")) == []
    # The dev render ran its IsolationCheck against the recorded prod fingerprint and passed.
    assert render(render_stack, "dev").outputs["isolation_fingerprint"]["database"]["table_prefix"] == "dev_"


REMOTE_TO_DEV = [
    {
        "name": "gpu1",
        "docker_host": "ssh://deploy@10.8.0.5",
        "known_hosts": GPU1_KNOWN_HOSTS,
        "queues": ["gpu"],
    }
]

COLLISIONS = [
    # (name, kind, change to prod, change to dev, words in the collision)
    ("same prefix", "database", {}, {"database": {"table_prefix": "opt_"}}, "same table prefix 'opt_'"),
    ("same redis db", "redis", {}, {"redis": {"db_index": 1}}, "same DB index 1"),
    ("empty prefix", "table prefix", {"database": {"table_prefix": ""}}, {}, "'dev_' starts with ''"),
    (
        "nested prefix",
        "table prefix",
        {},
        {"database": {"table_prefix": "opt_dev_"}},
        "'opt_dev_' starts with 'opt_'",
    ),
    (
        "dev worker on prod tables",
        "bound to the other environment",
        {},
        {"services": {"worker": {"environment": {"TABLE_PREFIX": "opt_"}}}},
        "dev's clippyfront-dev-worker uses table prefix 'opt_', which is prod's",
    ),
    (
        "dev worker on prod redis",
        "bound to the other environment",
        {},
        {
            "services": {
                "worker": {"environment": {"CELERY_BROKER_URL": "redis://clippyfront-shared-redis:6379/1"}}
            }
        },
        "dev's clippyfront-dev-worker uses Redis DB 1, which is prod's",
    ),
    (
        "remote worker on dev redis",
        "bound to the other environment",
        {
            "remote_workers": [
                {**REMOTE_TO_DEV[0], "environment": {"CELERY_BROKER_URL": "redis://10.8.0.1:6379/0"}}
            ]
        },
        {},
        "prod's ssh://deploy@10.8.0.5 gpu1 uses Redis DB 0, which is dev's",
    ),
    (
        "remote worker on dev tables",
        "bound to the other environment",
        {"remote_workers": [{**REMOTE_TO_DEV[0], "environment": {"TABLE_PREFIX": "dev_"}}]},
        {},
        "prod's ssh://deploy@10.8.0.5 gpu1 uses table prefix 'dev_', which is dev's",
    ),
]


@pytest.mark.parametrize(
    ("kind", "prod_change", "dev_change", "words"),
    [c[1:] for c in COLLISIONS],
    ids=[c[0] for c in COLLISIONS],
)
def test_each_shared_mode_collision_is_named(kind, prod_change, dev_change, words):
    collisions = check_pair(stack("prod", **prod_change), stack("dev", **dev_change))
    assert kind in kinds(collisions), collisions
    assert any(words in str(collision) for collision in collisions), collisions


def test_a_fingerprint_of_development_with_remote_workers_is_a_collision():
    """Config refuses it first; the guard also refuses a peer fingerprint that has them (defence in depth)."""
    prod, dev = fingerprint_of(stack("prod")), fingerprint_of(stack("dev"))
    assert find_collisions(dev, prod) == []
    dev = dev.model_copy(update={"remote_workers": ["ssh://deploy@10.8.0.9"]})
    collisions = find_collisions(dev, prod)
    assert [str(c) for c in collisions] == [
        "remote worker: development (dev) declares remote workers on ssh://deploy@10.8.0.9: "
        "remote workers join production only"
    ]


def test_a_fingerprint_without_bindings_or_nulls_is_still_compared():
    """A prod stack exported before bindings existed, or with nulls dropped by the Pulumi output, still works."""
    exported = fingerprint_of(stack("prod")).model_dump(mode="json")
    del exported["bindings"], exported["mqtt"], exported["app_networks"]
    exported["oauth"].pop("client_id")
    prod, dev = Fingerprint.model_validate(exported), fingerprint_of(stack("dev", redis={"db_index": 1}))
    assert kinds(find_collisions(dev, prod)) == {"redis", "bound to the other environment"}


def test_the_dev_stack_refuses_to_deploy_a_worker_bound_to_production(render_stack):
    with pytest.raises(RenderError) as caught:
        render(render_stack, "dev", services={"worker": {"environment": {"TABLE_PREFIX": "opt_"}}})
    message = str(caught.value)
    assert "stack 'dev' collides with stack 'prod'" in message
    assert "bound to the other environment: dev's clippyfront-dev-worker uses table prefix 'opt_'" in message


# --- routing: one gunicorn app at "/", through a real Caddy -------------------------------------


def test_both_stacks_route_everything_to_their_web_in_one_caddy(
    render_stack, caddy, start_upstream, get, unused_port
):
    port = unused_port()
    containers = [CADDY_ITSELF]
    for stack_name, host in (("prod", "127.0.0.2"), ("dev", "127.0.0.3")):
        web = start_upstream(f"{stack_name}-web", host)
        rendering = render(render_stack, stack_name, services={"web": {"port": web.port}})
        labels = {
            label["label"]: label["value"]
            for label in rendering.get(CONTAINER, f"clippyfront-{stack_name}-web-container").plain_inputs()[
                "labels"
            ]
            if label["label"].startswith("caddy")
        }
        assert labels["caddy_ingress_network"] == f"clippyfront-{stack_name}-edge"
        worker_labels = rendering.get(CONTAINER, f"clippyfront-{stack_name}-worker-container").plain_inputs()
        assert [label["label"] for label in worker_labels["labels"]] == ["clippyfront.environment"]
        labels["caddy"] = f"http://{labels['caddy']}:{port}"  # test only: plain HTTP on a loopback port
        containers.append(LabelledContainer(labels, (web.host,), f"{stack_name}-web"))
    caddy.run(caddyfile_from_containers(containers), port)

    for stack_name, domain in (("prod", "clippyfront.com"), ("dev", "dev.clippyfront.com")):
        for path in ("/", "/api/projects", "/login"):
            response = get(port, domain, path)
            assert response.json() == {"upstream": f"{stack_name}-web", "path": path}
            assert response.header("X-Robots-Tag") == ([ROBOTS_TAG] if stack_name == "dev" else [])
    assert get(port, "dev.clippyfront.com", "/robots.txt").body.decode() == ROBOTS_TXT
    assert get(port, "clippyfront.com", "/robots.txt").json()["upstream"] == "prod-web"


def test_the_sampling_configuration_maps_production_prefix_to_development_prefix():
    """The dev stack's sampling config copies opt_* into dev_*: the very prefixes the stacks use."""
    from sampling.config import load_config

    dev = stack("dev")
    config = load_config(PROJECT.parents[1] / dev.sampling.config_file)
    assert (config.mapping.source_prefix, config.mapping.target_prefix) == (
        stack("prod").database.table_prefix,
        dev.database.table_prefix,
    )
    assert dev.sampling.enabled and not stack("prod").sampling.enabled


@pytest.mark.parametrize(
    ("workers", "words"),
    [
        (
            [
                {
                    "name": "gpu1",
                    "docker_host": "ssh://a@10.8.0.5",
                    "known_hosts": GPU1_KNOWN_HOSTS,
                },
                {
                    "name": "gpu1",
                    "docker_host": "ssh://a@10.8.0.6",
                    "known_hosts": "10.8.0.6 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF",
                },
            ],
            "remote worker name 'gpu1' is used twice",
        ),
        (
            [
                {
                    "name": "gpu1",
                    "docker_host": "ssh://a@10.8.0.5",
                    "known_hosts": GPU1_KNOWN_HOSTS,
                    "service": "renderer",
                }
            ],
            "runs service 'renderer', which this stack does not have; one of: web, worker",
        ),
        (
            [{"name": "gpu1", "docker_host": "tcp://10.8.0.5:2375"}],
            "clippyfront:remote_workers.0.docker_host",
        ),
    ],
)
def test_bad_remote_workers_are_named(workers, words):
    with pytest.raises(ConfigurationError) as caught:
        stack("prod", remote_workers=workers)
    assert str(caught.value).startswith("Pulumi.prod.yaml: ")
    assert words in str(caught.value)
