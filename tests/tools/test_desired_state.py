"""The desired-state render: stable snapshots that a pull request diffs, and a harness that can fail."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.desired_state import SECRET, RenderError, Secret, render, to_json

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "snapshots"
CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_snapshot_matches_the_program(stack, render_stack):
    """Update with: python -m tools.desired_state STACK > tests/snapshots/STACK.json (review the diff)."""
    expected = (SNAPSHOTS / f"{stack}.json").read_text()
    assert to_json(render_stack(stack)) == expected, (
        f"the {stack} stack changed: regenerate tests/snapshots/{stack}.json and review the diff"
    )


def test_the_command_prints_byte_identical_json_twice():
    runs = [
        subprocess.run(
            [sys.executable, "-m", "tools.desired_state", "dev"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    entries = json.loads(runs[0])
    assert entries == sorted(entries, key=lambda e: (e["type"], e["name"]))
    assert {"type", "name", "parent", "inputs"} <= set(entries[0])


def test_secrets_are_redacted_and_never_printed(render_stack):
    rendering = render_stack("prod")
    text = to_json(rendering)
    # The mocks give every generated password a recognisable value: none may leak into plain text.
    assert "mock-secret-" not in text
    assert SECRET in text
    db = rendering.get(CONTAINER, "makapix-prod-db-container")
    assert isinstance(db.inputs["envs"], Secret)


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_stack_reference_file_is_the_stack_render(stack, render_stack):
    """stack_references/STACK.json must be what the program exports (dev reads prod's, prod reads dev's)."""
    from tools.desired_state import _redact

    recorded = json.loads((ROOT / "stack_references" / f"{stack}.json").read_text())
    assert recorded == _redact(render_stack(stack).outputs)


def test_mock_remote_image_digest_is_stable_and_follows_the_name():
    from tools.desired_state import fake_repo_digest

    tagged = fake_repo_digest("ghcr.io/makapix/api:1.0.0")
    assert tagged == fake_repo_digest("ghcr.io/makapix/api:1.0.0")
    assert tagged.startswith("ghcr.io/makapix/api@sha256:") and len(tagged.split(":")[-1]) == 64
    assert tagged != fake_repo_digest("ghcr.io/makapix/api:1.0.1")
    pinned = "ghcr.io/makapix/api@sha256:" + "e" * 64
    assert fake_repo_digest("ghcr.io/makapix/api:1.0.0@sha256:" + "e" * 64) == pinned
    assert fake_repo_digest("registry.local:5000/api:2").startswith("registry.local:5000/api@sha256:")


def test_a_wrong_expectation_fails(render_stack):
    """Guard against the classic mock trap: assertions that can never fail."""
    api = render_stack("dev").get(CONTAINER, "makapix-dev-api-container")
    with pytest.raises(AssertionError):
        assert api.plain_inputs()["memory"] == 2048  # dev's api has 512 MiB
    with pytest.raises(KeyError, match="no docker:index/container:Container named 'makapix-dev-nope'"):
        render_stack("dev").get(CONTAINER, "makapix-dev-nope")


def test_a_program_error_is_reported(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text("name: broken\nruntime: python\n")
    (tmp_path / "Pulumi.x.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text("raise ValueError('the program says no')\n")
    with pytest.raises(RenderError, match="the program says no"):
        render("x", tmp_path)
    with pytest.raises(RenderError, match="no such stack file"):
        render("missing", tmp_path)
