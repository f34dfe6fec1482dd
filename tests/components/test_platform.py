"""What each stack declares for its containers, volumes and networks (mock render, exact properties)."""

import pytest

from components.config import memory_bytes

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_every_name_carries_its_environment(stack, render_stack):
    rendering = render_stack(stack)
    # The shared Caddy and the edge networks it creates for every environment are the edge's own.
    named = [
        r
        for r in rendering.resources
        if r.type in (CONTAINER, VOLUME, NETWORK) and r.parent != "makapix-edge"
    ]
    assert len(named) >= 8
    for resource in named:
        assert resource.plain_inputs()["name"].startswith(f"makapix-{stack}"), resource.name


def test_no_network_is_shared_between_environments(render_stack):
    def networks(stack):
        # Caddy (prod-owned) is the one container on both edge networks: it routes, it is no app container.
        return {
            network["name"]
            for container in render_stack(stack).of_type(CONTAINER)
            if container.parent != "makapix-edge"
            for network in container.plain_inputs().get("networksAdvanced", [])
        }

    assert networks("prod").isdisjoint(networks("dev"))
    internal = render_stack("dev").get(NETWORK, "makapix-dev-internal").plain_inputs()
    assert internal["internal"] is True


@pytest.mark.parametrize(
    ("stack", "container", "cpus", "memory", "reservation"),
    [
        ("dev", "api", "1", "512M", "256M"),
        ("dev", "db", "1", "1G", None),
        ("dev", "web", "0.5", "256M", None),
        ("prod", "api", "2", "2G", "512M"),
        ("prod", "db", "2", "4G", "1G"),
    ],
)
def test_limits_reach_their_container(stack, container, cpus, memory, reservation, render_stack):
    inputs = render_stack(stack).get(CONTAINER, f"makapix-{stack}-{container}-container").plain_inputs()
    assert inputs["cpus"] == cpus
    assert inputs["memory"] == memory_bytes(memory) // 2**20  # the provider takes MiB
    assert inputs.get("memoryReservation") == (memory_bytes(reservation) // 2**20 if reservation else None)


def test_configured_limit_overrides_reach_docker(render_stack):
    inputs = (
        render_stack("dev", services={"worker": {"resources": {"cpus": 3, "memory": "3G"}}})
        .get(CONTAINER, "makapix-dev-worker-container")
        .plain_inputs()
    )
    assert (inputs["cpus"], inputs["memory"]) == ("3", 3072)


def test_development_tuning_reaches_postgres(render_stack):
    command = render_stack("dev").get(CONTAINER, "makapix-dev-db-container").plain_inputs()["command"]
    assert command == [
        "postgres",
        "-c",
        "max_connections=50",
        "-c",
        "shared_buffers=128MB",
        "-c",
        "work_mem=4MB",
    ]
    assert render_stack("prod").get(CONTAINER, "makapix-prod-db-container").plain_inputs()["command"] == [
        "postgres"
    ]


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_data_volumes_survive_replace_and_destroy(stack, render_stack):
    volumes = render_stack(stack).of_type(VOLUME)
    assert {v.plain_inputs()["name"] for v in volumes} >= {
        f"makapix-{stack}_pg_data",
        f"makapix-{stack}_redis_data",
    }
    for volume in volumes:
        assert volume.options.get("protect") is True, volume.name
        assert volume.options.get("retain_on_delete") is True, volume.name


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_fixed_names_are_deleted_before_replacement(stack, render_stack):
    for resource in render_stack(stack).of_type(CONTAINER) + render_stack(stack).of_type(NETWORK):
        assert resource.options.get("delete_before_replace") is True, resource.name


def test_healthcheck_change_replaces_the_container(render_stack):
    """pulumi-docker 5.2 never applies an in-place healthcheck change: the trigger must change instead."""
    before = render_stack("dev").get(CONTAINER, "makapix-dev-api-container")
    after = render_stack("dev", services={"api": {"healthcheck": ["CMD", "true"]}}).get(
        CONTAINER, "makapix-dev-api-container"
    )
    assert after.plain_inputs()["healthcheck"]["tests"] == ["CMD", "true"]
    assert before.options["replacement_trigger"] != after.options["replacement_trigger"]
    unchanged = render_stack("dev", services={"api": {"resources": {"cpus": 0.75}}}).get(
        CONTAINER, "makapix-dev-api-container"
    )
    assert unchanged.options["replacement_trigger"] == before.options["replacement_trigger"]


def test_postgres_health_check_and_loopback_only_port(render_stack):
    inputs = render_stack("dev").get(CONTAINER, "makapix-dev-db-container").plain_inputs()
    assert inputs["healthcheck"]["tests"] == ["CMD-SHELL", "pg_isready -U makapix -d makapix_dev"]
    assert inputs["ports"] == [{"external": 55433, "internal": 5432, "ip": "127.0.0.1"}]


def test_worker_runs_its_queues_with_configured_concurrency(render_stack):
    command = render_stack("prod").get(CONTAINER, "makapix-prod-worker-container").plain_inputs()["command"]
    assert command[-3:] == ["-Q", "celery,cpu,gpu", "--concurrency=4"]


def test_app_settings_per_environment_and_secrets_secret(render_stack):
    api = render_stack("dev").get(CONTAINER, "makapix-dev-api-container")
    envs = dict(entry.split("=", 1) for entry in api.plain_inputs()["envs"])
    assert envs["ENVIRONMENT"] == "development"
    assert envs["BASE_URL"] == "https://development.makapix.club"
    assert (
        envs["REDIS_URL"]
        == envs["CELERY_BROKER_URL"]
        == envs["CELERY_RESULT_BACKEND"]
        == "redis://redis:6379/0"
    )
    assert (
        envs["DATABASE_URL"]
        == "postgresql://makapix:mock-secret-makapix-dev-database-password@db:5432/makapix_dev"
    )
    assert envs["MQTT_TOPIC_PREFIX"] == "makapix-dev"
    assert envs["RESEND_FROM_EMAIL"] == "noreply@dev-notification.makapix.club"
    assert envs["JWT_SECRET_KEY"] == "mock-secret-makapix-dev-jwt-secret"
    from tools.desired_state import Secret

    # One secret entry makes Pulumi treat the whole list as secret: state and previews hide all of it.
    assert isinstance(api.inputs["envs"], Secret)


def test_plain_settings_are_exported_for_reviewers_without_secrets(render_stack):
    exported = render_stack("dev").outputs["services"]["api"]["environment"]
    assert exported["ENVIRONMENT"] == "development"
    assert "DATABASE_URL" not in exported and "JWT_SECRET_KEY" not in exported


SHARED = {"database": {"mode": "shared", "name": "makapix"}, "redis": {"mode": "shared"}}


def test_shared_servers_are_declared_once_by_production(render_stack):
    prod = render_stack("prod", **SHARED)
    db = prod.get(CONTAINER, "makapix-prod-db-container").plain_inputs()
    redis = prod.get(CONTAINER, "makapix-prod-redis-container").plain_inputs()
    assert (db["name"], redis["name"]) == ("makapix-shared-db", "makapix-shared-redis")
    # A data network per environment: the servers join both, each environment's containers only their own.
    # The database publishes 55432: it also joins the plain bridge its port is forwarded from.
    assert [n["name"] for n in db["networksAdvanced"]] == ["makapix-prod-data", "makapix-dev-data", "makapix-prod-published"]
    assert [n["name"] for n in redis["networksAdvanced"]] == ["makapix-prod-data", "makapix-dev-data"]
    for served in ("prod", "dev"):
        assert prod.get(NETWORK, f"makapix-prod-data-{served}").plain_inputs()["internal"] is True
    api = prod.get(CONTAINER, "makapix-prod-api-container").plain_inputs()
    assert [n["name"] for n in api["networksAdvanced"]][-1] == "makapix-prod-data"
    assert "makapix-dev-data" not in [n["name"] for n in api["networksAdvanced"]]
    # The containers wait for the networks they join (the names come from the network resources).
    assert {"makapix-prod-data-prod", "makapix-prod-data-dev"} <= set(
        prod.get(CONTAINER, "makapix-prod-db-container").options.get("depends_on", [])
    )
    from tools.desired_state import Secret

    assert prod.outputs["shared_database_password"] == Secret("mock-secret-makapix-prod-database-password")


def test_development_joins_the_shared_servers_with_its_own_database_and_index(render_stack):
    prod_outputs = {
        "shared_database_password": "the-servers-password",
        "shared_mqtt_passwords": {"dev": "the-brokers-dev-password"},
        "isolation_fingerprint": None,
    }
    dev = render_stack(
        "dev",
        references={"prod": prod_outputs},
        isolation={"peer_stack": None},
        database={"mode": "shared", "name": "makapix_dev"},
        redis={"mode": "shared"},
        mqtt={"mode": "shared"},
    )
    names = {c.plain_inputs()["name"] for c in dev.of_type(CONTAINER)}
    assert names == {"makapix-dev-api", "makapix-dev-web", "makapix-dev-worker"}
    # A guest of production's server publishes nothing: no host URL pointing at a port nobody listens on.
    assert "database_host_url" not in dev.outputs
    assert 55433 not in dev.outputs["isolation_fingerprint"]["host_ports"]
    api = dev.get(CONTAINER, "makapix-dev-api-container").plain_inputs()
    envs = dict(entry.split("=", 1) for entry in api["envs"])
    assert (
        envs["DATABASE_URL"] == "postgresql://makapix:the-servers-password@makapix-shared-db:5432/makapix_dev"
    )
    assert envs["REDIS_URL"] == "redis://makapix-shared-redis:6379/0"
    assert (envs["MQTT_HOST"], envs["MQTT_PASSWORD"]) == ("makapix-shared-mqtt", "the-brokers-dev-password")
    assert [n["name"] for n in api["networksAdvanced"]] == [
        "makapix-dev-internal",
        "makapix-dev-edge",
        "makapix-dev-data",
    ]
    assert not dev.of_type(VOLUME)


def test_each_service_exports_name_networks_limits_and_endpoint(render_stack):
    api = render_stack("dev").outputs["services"]["api"]
    assert api["container"] == "makapix-dev-api"
    assert api["networks"] == ["makapix-dev-internal", "makapix-dev-edge"]
    assert api["limits"] == {"cpus": 1.0, "memory": "512M", "memory_reservation": "256M"}
    assert api["internal_endpoint"] == "http://api:8000"
    assert render_stack("dev").outputs["services"]["worker"].get("internal_endpoint") is None


def test_a_guest_of_the_shared_server_refuses_to_back_it_up(render_stack):
    from tools.desired_state import RenderError

    with pytest.raises(RenderError, match="the production stack backs that server up"):
        render_stack(
            "dev",
            isolation={"peer_stack": None},
            database={"mode": "shared", "name": "makapix_dev"},
            release={"backup": True},
        )
