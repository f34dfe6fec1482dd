"""Promotion by digest: what dev runs is what it exports, and production runs only digests (mock renders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.images import Resolution, digest_reference, previous_digests, production_resolution
from components.parsing import ConfigurationError, parse_environment
from tools.desired_state import RenderError, fake_repo_digest

CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
SERVICES = ("api", "web", "worker")


def digest(repository: str, fill: str) -> str:
    return f"ghcr.io/makapix/{repository}@sha256:{fill * 64}"


DEV = {"api": digest("api", "a"), "web": digest("web", "b"), "worker": digest("api", "a")}
OLD = {"api": digest("api", "0"), "web": digest("web", "1"), "worker": digest("api", "0")}
OLDER = {"api": digest("api", "2"), "web": digest("web", "3"), "worker": digest("api", "2")}
ROOT = Path(__file__).resolve().parents[2]
PIN = "ghcr.io/makapix/api:1.3.9@sha256:" + "c" * 64


def stack_values(stack: str) -> dict:
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in config.items()}


def container_image(rendering, stack: str, service: str) -> str:
    image: str = rendering.get(CONTAINER, f"makapix-{stack}-{service}-container").plain_inputs()["image"]
    return image


def render_prod(render_stack, dev_digests=DEV, last_deploy=None, **overrides):
    references = {"dev": {"image_digests": dev_digests} if dev_digests is not None else {}}
    references["prod"] = last_deploy or {}
    return render_stack("prod", references=references, **overrides)


def test_dev_runs_by_digest_exactly_what_it_exports(render_stack):
    rendering = render_stack("dev")
    exported = rendering.outputs["image_digests"]
    assert set(exported) == set(SERVICES)
    for service in SERVICES:
        configured = f"ghcr.io/makapix/{'web' if service == 'web' else 'api'}:1.0.0"
        pulled = rendering.get(REMOTE_IMAGE, f"makapix-dev-images-{service}").plain_inputs()
        assert pulled == {"name": configured, "keepLocally": True}
        # The mock stands in for Docker's answer after the pull: repo@sha256:<hex> of that tag.
        assert container_image(rendering, "dev", service) == exported[service] == fake_repo_digest(configured)
        container = rendering.get(CONTAINER, f"makapix-dev-{service}-container")
        assert f"makapix-dev-images-{service}" in container.options["depends_on"]
    assert exported["api"] == exported["worker"] != exported["web"]
    assert "previous_image_digests" not in rendering.outputs


def test_a_new_dev_tag_is_a_new_digest(render_stack):
    rendering = render_stack("dev", services={"web": {"image": "ghcr.io/makapix/web:1.0.1"}})
    assert rendering.outputs["image_digests"]["web"] != render_stack("dev").outputs["image_digests"]["web"]
    assert rendering.outputs["image_digests"]["api"] == render_stack("dev").outputs["image_digests"]["api"]


def test_prod_runs_the_digests_dev_exports(render_stack):
    rendering = render_prod(render_stack)
    for service in SERVICES:
        assert container_image(rendering, "prod", service) == DEV[service]
        assert rendering.get(REMOTE_IMAGE, f"makapix-prod-images-{service}").plain_inputs() == {
            "name": DEV[service],
            "keepLocally": True,
        }
    assert rendering.outputs["image_digests"] == DEV


def test_the_committed_dev_outputs_are_what_prod_promotes(render_stack):
    """stack_references/dev.json is the dev render's output; the prod snapshot runs exactly those digests."""
    dev = render_stack("dev").outputs["image_digests"]
    prod = render_stack("prod")
    assert {service: container_image(prod, "prod", service) for service in SERVICES} == dev


def test_a_digest_pinned_in_the_stack_file_wins_over_promotion(render_stack):
    rendering = render_prod(render_stack, services={"api": {"image": PIN}})
    assert container_image(rendering, "prod", "api") == "ghcr.io/makapix/api@sha256:" + "c" * 64
    assert container_image(rendering, "prod", "web") == DEV["web"]
    assert container_image(rendering, "prod", "worker") == DEV["worker"]


def test_every_service_pinned_needs_no_dev_stack(render_stack):
    pins = {service: {"image": OLD[service]} for service in SERVICES}
    rendering = render_stack(
        "prod", references={"dev": {}, "prod": {}}, services=pins, promotion={"from_stack": None}
    )
    assert rendering.outputs["image_digests"] == OLD
    # With promotion on, full pins take nothing from dev: a fresh machine can deploy prod first.
    assert render_prod(render_stack, dev_digests=None, services=pins).outputs["image_digests"] == OLD
    settings = parse_environment({**stack_values("prod"), "services": pins}, "Pulumi.prod.yaml", "makapix")
    configured = {service: config.image for service, config in settings.services.items()}
    assert production_resolution(configured, settings.promotion, "Pulumi.prod.yaml", "makapix") == Resolution(
        pinned=OLD, promoted=[]
    )


@pytest.mark.parametrize(
    ("dev_digests", "overrides", "expected", "not_expected"),
    [
        pytest.param(
            DEV,
            {"promotion": {"from_stack": None}},
            [
                "Pulumi.prod.yaml: production runs application images by digest only (3 problem(s))",
                "makapix:services.api.image: 'ghcr.io/makapix/api:1.0.0' is a tag, not a digest",
                "makapix:services.web.image: 'ghcr.io/makapix/web:1.0.0' is a tag, not a digest",
                "makapix:services.worker.image: 'ghcr.io/makapix/api:1.0.0' is a tag, not a digest",
                "pin the digest in Pulumi.prod.yaml: "
                "`makapix:services: {api: {image: 'ghcr.io/makapix/api@sha256:<64 hex digits>'}}`",
            ],
            [],
            id="no promotion, tags",
        ),
        pytest.param(
            DEV,
            {"promotion": {"from_stack": None}, "services": {"api": {"image": PIN}}},
            [
                "(2 problem(s))",
                "makapix:services.web.image",
                "makapix:services.worker.image",
                "{web: {image: 'ghcr.io/makapix/web@sha256:<64 hex digits>'}}",
            ],
            ["makapix:services.api.image"],
            id="no promotion, one pinned",
        ),
        pytest.param(
            None,
            {},
            ["makapix:promotion.from_stack: stack 'dev' exports no image_digests output", "scripts/up dev"],
            [],
            id="dev exports nothing",
        ),
        pytest.param(
            {**DEV, "web": "ghcr.io/makapix/web:1.0.0"},
            {},
            [
                "(1 problem(s))",
                "makapix:services.web.image: 'ghcr.io/makapix/web:1.0.0' is a tag, and stack 'dev' "
                "(makapix:promotion.from_stack) exports 'ghcr.io/makapix/web:1.0.0', which is not "
                "repo@sha256:<64 hex digits>",
            ],
            ["services.api.image"],
            id="dev exports a tag",
        ),
        pytest.param(
            {"api": DEV["api"], "web": DEV["web"]},
            {},
            ["makapix:services.worker.image", "exports no digest for 'worker' in image_digests"],
            ["services.web.image"],
            id="dev lacks a service",
        ),
        pytest.param(
            {**DEV, "api": "ghcr.io/makapix/api@sha256:abc"},
            {},
            ["makapix:services.api.image", "'ghcr.io/makapix/api@sha256:abc', which is not repo@sha256"],
            [],
            id="dev exports a short digest",
        ),
    ],
)
def test_production_image_without_a_digest_is_refused(
    render_stack, dev_digests, overrides, expected, not_expected
):
    with pytest.raises(RenderError) as refused:
        render_prod(render_stack, dev_digests=dev_digests, **overrides)
    message = str(refused.value)
    for fragment in expected:
        assert fragment in message
    for fragment in not_expected:
        assert fragment not in message
    # Both ways out are named.
    assert "makapix:promotion: {from_stack: dev}" in message
    assert "makapix:services: {" in message and "@sha256:<64 hex digits>" in message


@pytest.mark.parametrize(
    ("last_deploy", "dev_digests", "previous"),
    [
        pytest.param({}, DEV, {}, id="first deploy"),
        pytest.param({"image_digests": OLD, "previous_image_digests": OLDER}, DEV, OLD, id="new release"),
        pytest.param(
            {"image_digests": DEV, "previous_image_digests": OLD}, DEV, OLD, id="same release again"
        ),
        pytest.param({"image_digests": OLD}, DEV, OLD, id="older stack without previous"),
    ],
)
def test_prod_exports_the_last_different_digests(render_stack, last_deploy, dev_digests, previous):
    rendering = render_prod(render_stack, dev_digests=dev_digests, last_deploy=last_deploy)
    assert rendering.outputs["previous_image_digests"] == previous
    assert rendering.outputs["image_digests"] == dev_digests


def test_pinning_the_previous_digests_back_is_one_config_change(render_stack):
    """The runbook's rollback: the previous digests, set as services.<name>.image, are what prod runs."""
    released = render_prod(render_stack, last_deploy={"image_digests": OLD})
    pins = {
        service: {"image": image} for service, image in released.outputs["previous_image_digests"].items()
    }
    rolled_back = render_prod(
        render_stack, last_deploy={"image_digests": released.outputs["image_digests"]}, services=pins
    )
    assert rolled_back.outputs["image_digests"] == OLD
    assert {service: container_image(rolled_back, "prod", service) for service in SERVICES} == OLD
    # ...and the release just rolled back becomes the previous set: rolling forward is one change too.
    assert rolled_back.outputs["previous_image_digests"] == DEV


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        ("ghcr.io/makapix/api@sha256:" + "a" * 64, "ghcr.io/makapix/api@sha256:" + "a" * 64),
        ("ghcr.io/makapix/api:1.2@sha256:" + "a" * 64, "ghcr.io/makapix/api@sha256:" + "a" * 64),
        ("postgres@sha256:" + "f" * 64, "postgres@sha256:" + "f" * 64),
        ("ghcr.io/makapix/api:1.2", None),
        ("ghcr.io/makapix/api@sha256:" + "A" * 64, None),
        ("ghcr.io/makapix/api@sha512:" + "a" * 128, None),
        ("ghcr.io/makapix/api@sha256:" + "a" * 63, None),
        ("", None),
    ],
)
def test_digest_reference(image, reference):
    assert digest_reference(image) == reference


def test_previous_digests_keeps_the_last_different_set():
    assert previous_digests(DEV, None, None) == {}
    assert previous_digests(DEV, OLD, OLDER) == OLD
    assert previous_digests(DEV, DEV, OLDER) == OLDER
    assert previous_digests(DEV, {}, OLDER) == OLDER
    assert previous_digests(DEV, "garbage", ["garbage"]) == {}


def test_a_production_tag_pin_is_refused_not_replaced_by_the_promoted_digest(render_stack):
    """Issue 15: a tag in the prod stack file was dropped and dev's digest ran in its place."""
    with pytest.raises(RenderError) as refused:
        render_prod(render_stack, services={"api": {"image": "ghcr.io/makapix/api:1.2.3"}})
    message = str(refused.value)
    assert "Pulumi.prod.yaml: makapix:services.api.image is 'ghcr.io/makapix/api:1.2.3', a tag" in message
    assert "production runs images by digest only" in message
    assert "repo@sha256:<64 hex digits>" in message and "remove the key" in message


def test_a_promoted_digest_of_another_repository_is_refused(render_stack):
    foreign = {**DEV, "web": "ghcr.io/somebody-else/web@sha256:" + "f" * 64}
    with pytest.raises(RenderError) as refused:
        render_prod(render_stack, dev_digests=foreign)
    message = str(refused.value)
    assert (
        "makapix:services.web.image: stack 'dev' (makapix:promotion.from_stack) runs "
        "'ghcr.io/somebody-else/web@sha256:" in message
    )
    assert (
        "from repository 'ghcr.io/somebody-else/web', but this stack names repository 'ghcr.io/makapix/web'"
        in message
    )
    assert "name the same repository in both stacks" in message
    assert "services.api.image" not in message


def test_production_names_only_its_repository_and_runs_the_digest_promoted_from_it(render_stack):
    """Found on the engine: a production whose images live in another registry could name it no way
    but by a tag, which is refused; a bare repository now says "promote from here"."""
    registry = "127.0.0.1:5050/makapix"
    promoted = {service: f"{registry}/{d.split('/', 2)[2]}" for service, d in DEV.items()}
    rendering = render_prod(
        render_stack,
        dev_digests=promoted,
        services={
            service: {"image": f"{registry}/{repo}"}
            for service, repo in (("api", "api"), ("web", "web"), ("worker", "api"))
        },
    )
    for service in SERVICES:
        assert container_image(rendering, "prod", service) == promoted[service]
    # The repository it names still decides: dev's digest from the default registry is refused.
    with pytest.raises(RenderError, match="name the same repository in both stacks"):
        render_prod(render_stack, services={"api": {"image": f"{registry}/api"}})


@pytest.mark.parametrize(
    "stack,values",
    [
        ("dev", {}),  # development pulls by tag: a bare repository names nothing to pull
        ("prod", {"promotion": {"from_stack": None}}),  # nothing to promote from
    ],
)
def test_a_bare_repository_outside_a_promoting_production_is_refused(stack, values):
    config = {**stack_values(stack), **values, "services": {"api": {"image": "ghcr.io/makapix/api"}}}
    with pytest.raises(
        ConfigurationError, match=r"services.api.image is .ghcr.io/makapix/api., a repository without a tag"
    ):
        parse_environment(config, f"Pulumi.{stack}.yaml", "makapix")
