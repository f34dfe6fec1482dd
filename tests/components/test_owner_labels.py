"""Every container the program declares says who owns it (``components.container.owner_labels``).

``python -m ops audit`` groups the running containers by these labels; a container without one is an
"unlabelled container" finding on its environment's network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.desired_state import Secret

ROOT = Path(__file__).resolve().parents[2]
STACKS = [
    (ROOT, "prod", "makapix", "production"),
    (ROOT, "dev", "makapix", "development"),
    (ROOT / "examples" / "clippyfront", "prod", "clippyfront", "production"),
    (ROOT / "examples" / "clippyfront", "dev", "clippyfront", "development"),
]


def _plain(value):
    return value.value if isinstance(value, Secret) else value


@pytest.mark.parametrize(("project_dir", "stack", "project", "environment"), STACKS)
def test_each_container_carries_its_environment_or_its_shared_kind(
    render_stack, project_dir, stack, project, environment
):
    containers = render_stack(stack, project_dir=project_dir).of_type("docker:index/container:Container")
    assert containers
    for container in containers:
        name = _plain(container.inputs["name"])
        owners = {
            label["label"]: label["value"]
            for label in _plain(container.inputs.get("labels")) or []
            if label["label"] in (f"{project}.environment", f"{project}.shared")
        }
        if name == f"{project}-edge-caddy":
            assert owners == {f"{project}.shared": "edge"}
        elif name.startswith(f"{project}-shared-"):
            assert owners == {f"{project}.shared": "data"}, name
        else:
            assert owners == {f"{project}.environment": environment}, name
