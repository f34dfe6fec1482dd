"""``python -m ops`` and the ``makapix-ops`` script: one command line, which needs nothing of the sampler."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# pip install -e . puts the project's scripts next to the interpreter.
SCRIPTS = Path(sys.executable).parent


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_ops_imports_nothing_of_the_sampler() -> None:
    """What both need lives in cli_support: ops is deployed and tested without the sampler."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "sampling"
        )
        for path in sorted((ROOT / "ops").rglob("*.py"))
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}
    assert "cli_support.commands" in _imported_modules(ROOT / "ops" / "cli.py")  # the walk does see imports


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)


@pytest.mark.parametrize(
    "arguments", [["--help"], ["backup", "--help"], ["bogus"], ["restore", "--dir", "x"]]
)
def test_the_installed_script_behaves_as_python_m_ops(arguments: list[str]) -> None:
    script = SCRIPTS / "makapix-ops"
    assert script.exists(), f"{script} is missing: run `pip install -e .` (pyproject.toml [project.scripts])"
    installed = _run([str(script), *arguments])
    module = _run([sys.executable, "-m", "ops", *arguments])
    assert (installed.returncode, installed.stdout, installed.stderr) == (
        module.returncode,
        module.stdout,
        module.stderr,
    )


def test_exit_codes_of_the_script() -> None:
    script = str(SCRIPTS / "makapix-ops")
    assert _run([script, "--help"]).returncode == 0
    unknown = _run([script, "bogus"])
    assert unknown.returncode == 2 and "invalid choice: 'bogus'" in unknown.stderr
    # No OPS_DATABASE_URL: refused, exit 1, the message says what to do.
    refused = subprocess.run(
        [script, "restore", "--dir", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={},
        timeout=60,
    )
    assert refused.returncode == 1 and "OPS_DATABASE_URL is not set" in refused.stderr
