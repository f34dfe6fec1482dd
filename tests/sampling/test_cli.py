"""``python -m sampling``: JSON output, exit codes, configuration errors, passwords never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sampling.cli import main
from sampling.config import load_config, with_overrides
from sampling.errors import ConfigError

ROOT = Path(__file__).parents[2]


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sampling", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def test_plan_run_verify_with_urls_from_the_environment(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    write_config: Callable[[dict[str, Any]], Path],
    rows: Callable[[str, str], list[tuple[Any, ...]]],
) -> None:
    source, target = makapix
    path = str(write_config(makapix_config))
    env = {"SAMPLING_SOURCE_URL": source, "SAMPLING_TARGET_URL": target}

    planned = cli(["plan", "--config", path, "--json"], env)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["tables"]["public.users"]["selected"] == 2
    assert rows(target, "SELECT id FROM users") == [(99,)]

    ran = cli(["run", "--config", path, "--json"], env)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["total_rows"] == 34 and summary["seed"] == 7 and summary["fraction"] == 1.0
    assert summary["tables"]["public.users"]["rows"] == 5
    assert isinstance(summary["tables"]["public.users"]["seconds"], float)

    verified = cli(["verify", "--config", path, "--json"], env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True

    human = cli(["plan", "--config", path], env)
    assert human.returncode == 0 and "public.users" in human.stderr


def test_verify_exits_1_on_problems(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    write_config: Callable[[dict[str, Any]], Path],
    execute: Callable[[str, str], None],
) -> None:
    source, target = makapix
    path = str(write_config(makapix_config))
    assert cli(["run", "--config", path, "--source", source, "--target", target]).returncode == 0
    execute(target, "SELECT setval('users_id_seq', 1)")
    verified = cli(["verify", "--config", path, "--source", source, "--target", target])
    assert verified.returncode == 1
    assert "users_id_seq" in verified.stderr


def test_configuration_errors_name_file_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "roots:\n  - table: users\n    fraction: 1.5\ntables:\n  users:\n    columns:\n"
        "      email: {rule: emial}\n",
        encoding="utf-8",
    )
    result = cli(["plan", "--config", str(path), "--source", "postgresql://x@127.0.0.1:1/db"])
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "roots.0.fraction" in result.stderr and "1.5" in result.stderr
    assert "tables.users.columns.email.rule" in result.stderr and "'emial'" in result.stderr


def test_missing_url_and_unreadable_file_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAMPLING_SOURCE_URL", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text("roots: [{table: users, fraction: 0.1}]\n", encoding="utf-8")
    assert main(["plan", "--config", str(config)]) == 2
    assert main(["plan", "--config", str(tmp_path / "missing.yaml"), "--source", "postgresql://x@h/db"]) == 2
    assert main(["frobnicate"]) == 2


def test_unreachable_server_exits_1_without_the_password(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("roots: [{table: users, fraction: 0.1}]\n", encoding="utf-8")
    result = cli(
        ["plan", "--config", str(config), "--source", "postgresql://prod:Hunter2pw@127.0.0.1:1/makapix"]
    )
    assert result.returncode == 1
    assert "postgresql://prod:***@127.0.0.1:1/makapix" in result.stderr
    assert "Hunter2pw" not in result.stderr + result.stdout


def test_vault_subcommand_is_sampling_vaults_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m sampling vault`` parses sampling.vault's options and runs its command."""
    import dataclasses

    from sampling import cli as sampling_cli
    from sampling import vault

    seen: list[Any] = []
    commands = tuple(
        dataclasses.replace(command, run=lambda args: seen.append(args) or 0) if command is vault.COMMAND else command
        for command in sampling_cli.COMMANDS
    )
    monkeypatch.setattr(sampling_cli, "COMMANDS", commands)
    assert main(["vault", "--source-vault", "/mnt/vault-1", "--target-vault", "/mnt/dev", "--json"]) == 0
    assert [(args.source_vault, args.target_vault, args.json) for args in seen] == [
        (Path("/mnt/vault-1"), Path("/mnt/dev"), True)
    ]


def test_yaml_shorthand_and_file_loading(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "seed: 3\nroots: [{table: users, fraction: 0.25, where: 'id > 1'}]\n"
        "tables:\n  users: {columns: {email: keep, ip: {rule: ip, style: pseudonym}}}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.seed == 3 and config.roots[0].where == "id > 1"
    assert config.tables["users"].columns["email"].rule == "keep"
    assert config.tables["users"].columns["ip"].keyed
    assert config.source_file == str(path)

    changed = with_overrides(config, seed=9, fraction=0.5)
    assert (changed.seed, changed.roots[0].fraction, changed.roots[0].where) == (9, 0.5, "id > 1")
    assert changed.tables["users"].columns["ip"].style == "pseudonym"
    with pytest.raises(ConfigError, match=r"roots.0.fraction"):
        with_overrides(config, fraction=2.0)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"roots: [{table: users, fraction: 0.1}]\n# caf\xe9\n",
            "line 2: byte 0xe9 is not UTF-8; save the file as UTF-8",
        ),
        (
            b"seed: 1\nroots: [{table: users, fraction: 0.1}]\nseed: 2\n",
            "line 3, column 1: key 'seed' appears twice in one mapping (first on line 1); keep one of them",
        ),
        (b"roots: [{table: users\n", "line 2, column 1: "),
    ],
    ids=["not-utf8", "duplicate-key", "syntax"],
)
def test_an_unreadable_configuration_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(content)
    assert main(["plan", "--config", str(config), "--source", "postgresql://x@127.0.0.1:1/db"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"{config}: {expected}" in error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"),
    [
        (["--source", "postgres//u:Hunter2pw@h/db"], {}, "--source: the source database URL is malformed"),
        (
            [],
            {"SAMPLING_SOURCE_URL": "postgresql://u:Hunter2pw@h:5x/db"},
            "SAMPLING_SOURCE_URL: the source database URL is malformed: its port '5x'",
        ),
    ],
    ids=["option", "variable"],
)
def test_a_malformed_url_names_its_setting_not_libpq(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], expected: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("roots: [{table: users, fraction: 0.1}]\n", encoding="utf-8")
    result = cli(["plan", "--config", str(config), *arguments], env=environment)
    assert result.returncode == 2
    error = " ".join(result.stderr.split())
    assert expected in error
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in error
    assert "Hunter2pw" not in result.stderr + result.stdout
    assert "connection info string" not in error and "ai_socktype" not in error


@pytest.mark.parametrize("arguments", [["--help"], ["stack-run", "--help"], ["bogus"], ["plan"]])
def test_the_installed_script_behaves_as_python_m_sampling(arguments: list[str]) -> None:
    script = Path(sys.executable).parent / "makapix-sampling"  # pip install -e . puts it there
    assert script.exists(), f"{script} is missing: run `pip install -e .` (pyproject.toml [project.scripts])"
    installed = subprocess.run([str(script), *arguments], capture_output=True, text=True, cwd=ROOT, check=False)
    module = cli(arguments)
    assert installed.returncode == module.returncode == (0 if "--help" in arguments else 2)
    assert (installed.stdout, installed.stderr) == (module.stdout, module.stderr)
