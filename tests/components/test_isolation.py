"""The isolation guard names every kind of collision; the real stacks have none; dev refuses to deploy."""

from pathlib import Path

import pytest
import yaml

from components.isolation import check_pair, find_collisions, fingerprint, secret_hash
from components.parsing import merge_settings, parse_environment
from components.placement import stack_placement
from tools.desired_state import RenderError

# The SSH host key of the example worker host 10.8.0.5 (remote workers need it pinned).
GPU1_KNOWN_HOSTS = "10.8.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF"

ROOT = Path(__file__).resolve().parents[2]


def fingerprint_of(settings, secret_hashes=None):
    """The stack's fingerprint, its placement computed as __main__ does."""
    return fingerprint(settings, stack_placement(settings), secret_hashes)


def stack(stack_name: str, /, **changes):
    config = yaml.safe_load((ROOT / f"Pulumi.{stack_name}.yaml").read_text())["config"]
    values = {key.split(":", 1)[1]: value for key, value in config.items()}
    return parse_environment(merge_settings(values, changes), f"Pulumi.{stack_name}.yaml", "makapix")


def kinds(collisions):
    return {collision.kind for collision in collisions}


def test_the_real_stack_files_do_not_collide():
    assert check_pair(stack("prod"), stack("dev")) == []


SHARED = {"database": {"mode": "shared"}, "redis": {"mode": "shared"}, "mqtt": {"mode": "shared"}}

# Makapix without its broker (remote workers cannot reach it): no MQTT variables either.
NO_MQTT = {
    "mqtt": None,
    "application": {
        "variables": {
            f"MQTT_{name}": None
            for name in ("HOST", "PORT", "TLS_ENABLED", "PUBLIC_PORT", "TOPIC_PREFIX", "USERNAME")
        }
    },
}

COLLISIONS = [
    # (kind the guard must name, change to dev, change to prod)
    ("container name", {"name": "prod", "mqtt": {"public_port": 8884}}, {}),
    ("volume name", {"name": "prod"}, {}),
    ("network name", {"name": "prod"}, {}),
    ("database", {"database": {"mode": "shared", "name": "makapix"}}, {"database": {"mode": "shared"}}),
    (
        "database",
        {"database": {"mode": "shared", "name": "clippy_front", "table_prefix": "opt_"}},
        {"database": {"mode": "shared", "name": "clippy_front", "table_prefix": "opt_"}},
    ),
    ("redis", {"redis": {"mode": "shared", "db_index": 1}}, {"redis": {"mode": "shared"}}),
    (
        "mqtt topic prefix",
        {"mqtt": {"mode": "shared", "topic_prefix": "makapix"}},
        {"mqtt": {"mode": "shared"}},
    ),
    ("host port", {"mqtt": {"public_port": 8883}}, {}),
    ("host port", {"database": {"host_port": 55432}}, {}),
    ("vault path", {"vault": {"host_path": "/mnt/vault-1"}}, {}),
    ("vault path", {"vault": {"host_path": "/mnt/vault-1/dev"}}, {}),
    ("backup directory", {"release": {"backup": True, "backup_dir": "/srv/makapix/backups/prod"}}, {}),
    ("backup directory", {"release": {"backup": True, "backup_dir": "/mnt/vault-1/backups"}}, {}),
    ("backup directory", {}, {"release": {"backup_dir": "/mnt/vault-dev"}}),
    ("domain", {"domain": {"root": "makapix.club"}}, {}),
    ("domain", {"domain": {"vault": "vault.makapix.club"}}, {}),
    ("oauth client id", {"oauth": {"github_client_id": "Ov23liPRODUCTION"}}, {}),
    ("oauth callback", {"domain": {"root": "development.makapix.club", "web": "makapix.club"}}, {}),
    ("environment", {"environment": "production", "remote_workers": []}, {}),
    (
        "remote worker",
        {"environment": "production", "remote_access": {"address": "10.8.0.2"}, **NO_MQTT},
        {
            "remote_workers": [
                {
                    "name": "gpu1",
                    "docker_host": "ssh://deploy@10.8.0.5",
                    "known_hosts": GPU1_KNOWN_HOSTS,
                }
            ],
            "remote_access": {"address": "10.8.0.1"},
            **NO_MQTT,
        },
    ),
]


@pytest.mark.parametrize(("kind", "dev_change", "prod_change"), COLLISIONS, ids=[c[0] for c in COLLISIONS])
def test_each_kind_of_collision_is_named(kind, dev_change, prod_change):
    if kind == "remote worker":
        dev_change = {**dev_change, "remote_workers": prod_change["remote_workers"]}
    collisions = check_pair(stack("prod", **prod_change), stack("dev", **dev_change))
    assert kind in kinds(collisions), collisions


def test_shared_servers_with_distinct_databases_prefixes_and_indexes_pass():
    prod = stack(
        "prod",
        database={"mode": "shared", "name": "clippy_front", "table_prefix": "opt_", "user": "opt"},
        redis={"mode": "shared", "db_index": 1},
        mqtt={"mode": "shared"},
    )
    dev = stack(
        "dev",
        database={"mode": "shared", "name": "clippy_front", "table_prefix": "dev_", "user": "dev"},
        redis={"mode": "shared", "db_index": 0},
        mqtt={"mode": "shared"},
    )
    assert check_pair(prod, dev) == []


def test_same_secret_is_a_collision_only_through_its_hash():
    prod, dev = stack("prod"), stack("dev")
    same = {"jwt_secret": secret_hash("s3cret")}
    found = find_collisions(fingerprint_of(prod, same), fingerprint_of(dev, same))
    assert [str(c) for c in found] == ["secret: both environments use the same jwt_secret"]
    assert "s3cret" not in str(fingerprint_of(prod, same))
    assert (
        find_collisions(fingerprint_of(prod, same), fingerprint_of(dev, {"jwt_secret": secret_hash("other")})) == []
    )


def test_every_collision_is_listed_not_just_the_first():
    collisions = check_pair(
        stack("prod"),
        stack(
            "dev",
            vault={"host_path": "/mnt/vault-1"},
            domain={"root": "makapix.club"},
            mqtt={"public_port": 8883},
        ),
    )
    assert {"vault path", "domain", "host port", "oauth callback"} <= kinds(collisions)


def test_dev_stack_refuses_to_deploy_with_the_full_list(render_stack):
    with pytest.raises(RenderError) as caught:
        render_stack("dev", vault={"host_path": "/mnt/vault-1"}, mqtt={"public_port": 8883})
    message = str(caught.value)
    assert "stack 'dev' collides with stack 'prod'" in message
    assert "vault path: '/mnt/vault-1' and '/mnt/vault-1' overlap on the host" in message
    assert "host port: both environments publish host port 8883" in message


def test_dev_stack_deploys_when_nothing_collides(render_stack):
    outputs = render_stack("dev").outputs
    assert outputs["isolation_fingerprint"]["name"] == "dev"


def test_secret_given_in_plain_text_is_refused(render_stack):
    with pytest.raises(RenderError, match="makapix:jwt_secret is stored in plain text"):
        render_stack("dev", jwt_secret="not-so-secret")


@pytest.mark.parametrize("project_dir", [".", "examples/clippyfront"])
def test_a_server_that_publishes_a_port_sits_on_a_plain_network_of_its_own_environment(project_dir):
    """Docker forwards no published port of a container on internal networks only (moby/moby#36174).

    Found on the real engine (issue 12): the database (55432/55433) and the broker (8883/8884) sat
    only on `<project>-<env>-internal` and none of those ports answered.
    """
    from tools.desired_state import render

    directory = Path(__file__).parents[2] / project_dir
    renders = {stack_name: render(stack_name, directory) for stack_name in ("prod", "dev")}
    internal = {
        network.plain_inputs()["name"]: bool(network.plain_inputs().get("internal"))
        for rendering in renders.values()
        for network in rendering.of_type("docker:index/network:Network")
    }

    def joined(container):
        return [network["name"] for network in container.plain_inputs().get("networksAdvanced") or []]

    checked = 0
    for stack_name, rendering in renders.items():
        other = renders["dev" if stack_name == "prod" else "prod"]
        taken_by_other = {
            name for c in other.of_type("docker:index/container:Container") for name in joined(c)
        }
        for container in rendering.of_type("docker:index/container:Container"):
            inputs = container.plain_inputs()
            if not inputs.get("ports") or "edge" in container.name or container.options.get("provider"):
                continue  # the edge joins both environments by design; remote workers run elsewhere
            plain = [name for name in joined(container) if internal.get(name) is False]
            assert plain, f"{inputs['name']} publishes {inputs['ports']} but sits only on internal networks"
            assert not set(plain) & taken_by_other, (
                f"{inputs['name']}: {plain} is joined by the other environment"
            )
            checked += 1
    assert checked >= 1


def test_a_network_both_environments_declare_or_their_apps_join_is_a_collision():
    prod, dev = fingerprint_of(stack("prod")), fingerprint_of(stack("dev"))
    assert find_collisions(prod, dev) == []
    # Both stacks owning the edge: both would declare every edge network and the Caddy container.
    both_edges = check_pair(
        stack("prod"), stack("dev", edge={"caddy": "own", "http_port": 8080, "https_port": 8443})
    )
    assert {"network name", "container name", "volume name"} <= kinds(both_edges), both_edges
    assert "both environments use 'makapix-dev-edge'" in str(both_edges)
    # A dev whose app containers joined production's internal network.
    leaking = dev.model_copy(update={"app_networks": [*dev.app_networks, "makapix-prod-internal"]})
    assert [str(c) for c in find_collisions(prod, leaking)] == [
        "shared network: app containers of both environments join 'makapix-prod-internal'"
    ]


def test_a_peer_fingerprint_this_program_cannot_read_is_refused_with_what_to_do():
    from components.isolation_check import IsolationError, check_against_peer

    mine = fingerprint_of(stack("dev")).model_dump(mode="json")
    with pytest.raises(IsolationError, match=r"cannot read.*deploy that stack with this version"):
        check_against_peer("dev", "prod", mine, {"project": "makapix"})
