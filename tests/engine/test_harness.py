"""The test harness itself, without an engine: it refuses what it does not know, orders by dependency."""

from __future__ import annotations

import pytest

from tests.engine.harness import CONTAINER, HarnessError, StackHarness, _duration_ns, dependency_order
from tools.desired_state import RenderedResource, Rendering, render


class NoEngine:
    """Stands for the Docker client: any call to it fails the test (nothing may reach the engine)."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the harness called the engine ({name}) before checking the inputs")


def test_an_input_the_harness_does_not_know_fails_it(tmp_path) -> None:
    rendering = render("dev", ".")
    db = rendering.get(CONTAINER, "makapix-dev-db-container")
    db.inputs["shmSize"] = 256  # a pulumi-docker input the harness does not map (yet)
    harness = StackHarness(NoEngine(), tmp_path, tmp_path)  # type: ignore[arg-type]
    only_db = Rendering("dev", [db], {})
    with pytest.raises(HarnessError, match=r"shmSize.*KNOWN_INPUTS"):
        harness.apply(only_db, tmp_path)


def test_an_unknown_nested_key_fails_it(tmp_path) -> None:
    rendering = render("dev", ".")
    db = rendering.get(CONTAINER, "makapix-dev-db-container")
    db.inputs["ports"][0]["protocl"] = "tcp"
    harness = StackHarness(NoEngine(), tmp_path, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(HarnessError, match=r"protocl.*ports"):
        harness.apply(Rendering("dev", [db], {}), tmp_path)


def test_dependencies_come_first() -> None:
    rendering = render("prod", ".")
    order = [resource.name for resource in dependency_order(rendering)]
    for resource in rendering.resources:
        for dependency in resource.options.get("depends_on", []):
            if dependency in order:
                assert order.index(dependency) < order.index(resource.name), (dependency, resource.name)
    assert order.index("makapix-prod-backup-pg-dump") < order.index("makapix-prod-api-container")


def test_a_dependency_cycle_is_refused() -> None:
    a = RenderedResource(CONTAINER, "a", None, {}, {"depends_on": ["b"]})
    b = RenderedResource(CONTAINER, "b", None, {}, {"depends_on": ["a"]})
    with pytest.raises(HarnessError, match="cycle"):
        dependency_order(Rendering("x", [a, b], {}))


@pytest.mark.parametrize("text,nanoseconds", [("10s", 10**10), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8)])
def test_go_durations(text: str, nanoseconds: int) -> None:
    assert _duration_ns(text) == nanoseconds
