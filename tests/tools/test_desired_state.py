"""The desired-state render: stable snapshots that a pull request diffs, and a harness that can fail."""

import json
import re
import shutil
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


# --- bad input: exit 2 with the file, the line and what to do (issue 15) -------------------------


def _project(tmp_path: Path, stack_file: bytes | str | None = None, *, references: bool = False) -> Path:
    """A project running this repository's program, with ``Pulumi.x.yaml`` as given."""
    (tmp_path / "Pulumi.yaml").write_text(f"name: makapix\nruntime: python\nmain: {ROOT}\n")
    if references:
        shutil.copytree(ROOT / "stack_references", tmp_path / "stack_references")
    if stack_file is not None:
        data = stack_file.encode() if isinstance(stack_file, str) else stack_file
        (tmp_path / "Pulumi.x.yaml").write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    ("stack_file", "expected"),
    [
        (
            "config:\n  makapix:environment: [development\n",
            r"Pulumi\.x\.yaml: line 3, column 1: .*fix the YAML",
        ),
        ("config:\n  - makapix:environment\n", r"Pulumi\.x\.yaml: `config:` must be a mapping .* not a list"),
        ("- a list\n", r"Pulumi\.x\.yaml: the file must be a YAML mapping with a `config:` key"),
        (
            b"config:\n  makapix:name: caf\xe9\n",
            r"Pulumi\.x\.yaml: line 2: byte 0xe9 is not UTF-8; save the file as UTF-8",
        ),
        (
            "config:\n  makapix:environment: development\n  makapix:environment: production\n",
            r"Pulumi\.x\.yaml: line 3, column 3: key 'makapix:environment' appears twice .*first on line 2.*keep one",
        ),
    ],
    ids=["syntax-error", "config-is-a-list", "document-is-a-list", "not-utf8", "duplicate-key"],
)
def test_an_unreadable_stack_file_exits_2_naming_file_and_line(tmp_path, capsys, stack_file, expected):
    from tools.desired_state import main

    project = _project(tmp_path, stack_file)
    assert main(["x", "--project-dir", str(project)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert re.search(expected, captured.err), captured.err


def test_a_directory_without_pulumi_yaml_exits_2(tmp_path, capsys):
    from tools.desired_state import main

    assert main(["dev", "--project-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'Pulumi.yaml'}: no such file" in error
    assert "pass --project-dir with the directory that holds Pulumi.yaml" in error


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (b'{"image_digests": \n', r"prod\.json: line 2, column 1: not valid JSON"),
        (b"[1, 2]\n", r"prod\.json: must be a JSON object of the stack's outputs, not list"),
        (b'{"a": "\xff"}\n', r"prod\.json: not UTF-8 text"),
    ],
    ids=["syntax", "not-an-object", "not-utf8"],
)
def test_an_invalid_stack_reference_exits_2_naming_it(tmp_path, capsys, reference, expected):
    from tools.desired_state import main

    project = _project(tmp_path, (ROOT / "Pulumi.dev.yaml").read_text())
    (project / "stack_references").mkdir()
    (project / "stack_references" / "prod.json").write_bytes(reference)
    assert main(["x", "--project-dir", str(project)]) == 2
    error = capsys.readouterr().err
    assert re.search(expected, error), error
    assert "regenerate it with `python -m tools.desired_state prod" in error


# --- YAML null: passed as the CLI passes it (JSON `null`, read back as None by get_object) -------


def test_yaml_null_reaches_the_program_as_the_cli_passes_it():
    from tools.desired_state import config_text

    # pulumi/sdk/go/common/resource/config/object.go: a nil object marshals to the JSON text "null".
    assert config_text(None) == "null"
    assert config_text({"a": None}) == '{"a": null}'
    assert config_text(True) == "true"


def test_email_null_in_the_stack_file_renders_without_email(tmp_path):
    stack = (
        (ROOT / "Pulumi.dev.yaml")
        .read_text()
        .replace(
            "  makapix:email:\n    from_address: noreply@dev-notification.makapix.club\n",
            "  makapix:email: null\n",
        )
    )
    assert "makapix:email: null" in stack
    rendering = render("x", _project(tmp_path, stack, references=True))
    api = rendering.get(CONTAINER, "makapix-dev-api-container").plain_inputs()
    names = {entry.split("=", 1)[0] for entry in api["envs"]}
    assert "RESEND_FROM_EMAIL" not in names
    assert "MQTT_HOST" in names


def test_mqtt_null_in_the_stack_file_renders_without_a_broker(tmp_path):
    stack = (ROOT / "Pulumi.dev.yaml").read_text() + "  makapix:mqtt: null\n"
    rendering = render("x", _project(tmp_path, stack, references=True))
    assert not [r.name for r in rendering.resources if "mqtt" in r.name]
    api = rendering.get(CONTAINER, "makapix-dev-api-container").plain_inputs()
    assert not [entry for entry in api["envs"] if entry.startswith("MQTT_")]


def test_a_variable_the_stack_file_maps_to_a_null_section_is_still_refused(tmp_path):
    stack = (ROOT / "Pulumi.dev.yaml").read_text() + (
        "  makapix:mqtt: null\n  makapix:application:\n    variables:\n      BROKER: mqtt.host\n"
    )
    with pytest.raises(RenderError, match=r"application.variables.BROKER passes 'mqtt.host' but mqtt is not"):
        render("x", _project(tmp_path, stack, references=True))
