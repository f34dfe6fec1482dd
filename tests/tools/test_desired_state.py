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


CLIPPYFRONT = ROOT / "examples" / "clippyfront"


@pytest.mark.parametrize(
    ("project_dir", "stack", "snapshot"),
    [
        (ROOT, "prod", "prod.json"),
        (ROOT, "dev", "dev.json"),
        (CLIPPYFRONT, "prod", "clippyfront-prod.json"),
        (CLIPPYFRONT, "dev", "clippyfront-dev.json"),
    ],
    ids=["makapix-prod", "makapix-dev", "clippyfront-prod", "clippyfront-dev"],
)
def test_snapshot_matches_the_program(project_dir, stack, snapshot, render_stack):
    """Update with scripts/update-snapshots (review the diff)."""
    expected = (SNAPSHOTS / snapshot).read_text()
    assert to_json(render_stack(stack, project_dir=project_dir)) == expected, (
        f"the {stack} stack of {project_dir.name} changed: regenerate tests/snapshots/{snapshot} "
        "with scripts/update-snapshots and review the diff"
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


@pytest.mark.parametrize("project_dir", [ROOT, CLIPPYFRONT], ids=["makapix", "clippyfront"])
@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_stack_reference_file_is_the_stack_render(stack, project_dir, render_stack):
    """stack_references/STACK.json must be what the program exports (dev reads prod's, prod reads dev's)."""
    from tools.desired_state import _redact

    recorded = json.loads((project_dir / "stack_references" / f"{stack}.json").read_text())
    assert recorded == _redact(render_stack(stack, project_dir=project_dir).outputs)


def test_pulumi_yaml_main_runs_the_program_it_names(tmp_path):
    """A project whose Pulumi.yaml says `main: program` runs program/__main__.py from that directory."""
    (tmp_path / "program").mkdir()
    (tmp_path / "program" / "main_option_helper.py").write_text(
        "VALUE = 'imported from the program directory'\n"
    )
    (tmp_path / "program" / "__main__.py").write_text(
        "import os, pulumi, main_option_helper\n"
        "pulumi.export('value', main_option_helper.VALUE)\n"
        "pulumi.export('cwd', os.path.basename(os.getcwd()))\n"
        "pulumi.export('project', pulumi.get_project())\n"
    )
    (tmp_path / "Pulumi.yaml").write_text("name: elsewhere\nruntime: python\nmain: program\n")
    (tmp_path / "Pulumi.x.yaml").write_text("config: {}\n")
    outputs = render("x", tmp_path).outputs
    assert outputs == {
        "value": "imported from the program directory",
        "cwd": "program",
        "project": "elsewhere",
    }


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
