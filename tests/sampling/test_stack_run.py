"""The dev stack's sampling command, taken from the mocked program and executed for real.

The command line and environment are exactly what the dev stack declares (rendered through Pulumi's
mocks); only the connection URLs and vault paths are replaced by those of two embedded PostgreSQL
databases and two temporary directories.  It runs the way pulumi-command's local.Command runs it:
``/bin/sh -c <create>`` in the project directory, the declared environment on top of the inherited one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sampling.stack_run import StackRunSummary, parse_summary
from tools.desired_state import Secret

ROOT = Path(__file__).parents[2]
COMMAND = ("command:local:Command", "makapix-dev-sampling-command")
DECLARED_SOURCE = "postgresql://makapix_sampler:Pw0fTheReader@127.0.0.1:55432/makapix"
# Posts 100-103 of the hand-made data, plus one nothing samples (its owner is not a root and no
# sampled row refers to it).
UNSAMPLED_POST = (
    "SET session_replication_role = replica; INSERT INTO posts (id, owner_id, title, visibility, storage_key) "
    "OVERRIDING SYSTEM VALUE VALUES (104, 5, 'fifth', 'public', 'c/d/104.png'); "
    "RESET session_replication_role;"
)
STORAGE_KEYS = ["a/b/100.png", "a/b/101.png", "a/b/102.png", "a/b/103.png", "c/d/104.png"]


def prod_references(**outputs: Any) -> dict[str, dict[str, Any]]:
    """The committed prod outputs (isolation fingerprint...) with the sampling outputs replaced."""
    prod = json.loads((ROOT / "stack_references" / "prod.json").read_text())
    prod.update(outputs)
    return {"prod": {key: value for key, value in prod.items() if value is not None}}


def declared_command(
    render_stack: Callable[..., Any], config_file: Path, references: dict[str, Any] | None
) -> tuple[str, dict[str, str], Any]:
    rendering = render_stack(
        "dev",
        references=references,
        sampling={"config_file": str(config_file), "fraction": 1.0, "seed": 7},
        host={"python": sys.executable},
    )
    command = rendering.get(*COMMAND)
    assert isinstance(command.inputs["environment"], Secret)
    return command.inputs["create"], command.plain_inputs()["environment"], rendering


def run_declared(create: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("SAMPLING_")}
    return subprocess.run(
        ["/bin/sh", "-c", create],
        cwd=ROOT,
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def sample_config(makapix_config: dict[str, Any], write_config: Callable[[dict[str, Any]], Path]) -> Path:
    # The test schema names a post's file by storage_key alone.
    return write_config({**makapix_config, "vault": {"template": "{storage_key}"}})


@pytest.fixture
def vaults(tmp_path: Path) -> tuple[Path, Path]:
    production, development = tmp_path / "vault-prod", tmp_path / "vault-dev"
    for key in STORAGE_KEYS:
        (production / key).parent.mkdir(parents=True, exist_ok=True)
        (production / key).write_bytes(f"artwork {key}".encode())
    (production / "a/b/100_upscaled.webp").write_bytes(b"upscaled 100")
    (development / "stale").mkdir(parents=True)
    (development / "stale/gone.png").write_bytes(b"from an earlier sample")
    return production, development


def test_the_declared_command_fills_the_dev_database_and_vault(
    render_stack: Callable[..., Any],
    makapix: tuple[str, str],
    sample_config: Path,
    vaults: tuple[Path, Path],
    execute: Callable[[str, str], None],
    rows: Callable[[str, str], list[tuple[Any, ...]]],
) -> None:
    source, target = makapix
    execute(source, UNSAMPLED_POST)
    production_vault, development_vault = vaults
    references = prod_references(sampling_source_url=DECLARED_SOURCE, sampling_source_vault="/mnt/vault-1")
    create, environment, rendering = declared_command(render_stack, sample_config, references)

    # What the stack declares: production's reader from the prod stack's output, the dev database on
    # its loopback port, the per-stack key; the command line carries none of them.
    assert environment["SAMPLING_SOURCE_URL"] == DECLARED_SOURCE
    assert environment["SAMPLING_TARGET_URL"].endswith("@127.0.0.1:55433/makapix_dev")
    assert environment["SAMPLING_SOURCE_VAULT"] == "/mnt/vault-1"
    assert environment["SAMPLING_TARGET_VAULT"] == "/mnt/vault-dev"
    key = environment["SAMPLING_ANONYMISATION_KEY"]
    assert key and key not in create and "Pw0fTheReader" not in create and "postgresql://" not in create

    environment.update(
        SAMPLING_SOURCE_URL=source,
        SAMPLING_TARGET_URL=target,
        SAMPLING_SOURCE_VAULT=str(production_vault),
        SAMPLING_TARGET_VAULT=str(development_vault),
    )
    done = run_declared(create, environment)

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1, "stdout must carry the summary line only"
    summary = parse_summary(done.stdout)
    assert summary == StackRunSummary.model_validate(summary).model_dump()  # the stack output's shape
    assert summary["loaded"] is True and summary["reason"] is None
    assert summary["source_stack"] == "prod" and summary["seed"] == 7 and summary["fraction"] == 1.0
    assert summary["tables"]["public.users"]["rows"] == 5 and summary["total_rows"] == 34
    # The dev database holds the sample (stale row 99 gone, emails anonymised), not production.
    users = rows(target, "SELECT id, email FROM users ORDER BY id")
    assert [user_id for user_id, _ in users] == [1, 2, 3, 4, 5]
    assert all(email.endswith("@dev.test") for _, email in users)
    sampled = {key for (key,) in rows(target, "SELECT storage_key FROM posts")}
    assert "c/d/104.png" not in sampled and "a/b/100.png" in sampled
    # The dev vault holds exactly the sampled posts' files and the variant; the stale file is pruned.
    copied = {
        str(path.relative_to(development_vault)) for path in development_vault.rglob("*") if path.is_file()
    }
    assert copied == sampled | {"a/b/100_upscaled.webp"}
    assert (development_vault / "a/b/100.png").read_bytes() == b"artwork a/b/100.png"
    assert summary["vault"]["copied"] == len(copied) and summary["vault"]["pruned"] == 1
    assert (production_vault / "c/d/104.png").exists()  # production untouched

    # A second run with nothing changed loads the same sample and copies no file again.
    again = parse_summary(run_declared(create, environment).stdout)
    assert again["loaded"] is True and again["vault"]["copied"] == 0
    assert again["vault"]["skipped_identical"] == len(copied)
    assert rendering.outputs["sampling_summary"]["loaded"] is False  # mocks: the command never ran


def test_an_unreachable_production_loads_nothing_and_succeeds(
    render_stack: Callable[..., Any],
    makapix: tuple[str, str],
    sample_config: Path,
    vaults: tuple[Path, Path],
    rows: Callable[[str, str], list[tuple[Any, ...]]],
) -> None:
    _, target = makapix
    production_vault, development_vault = vaults
    references = prod_references(sampling_source_url=DECLARED_SOURCE, sampling_source_vault="/mnt/vault-1")
    create, environment, _ = declared_command(render_stack, sample_config, references)
    password = "unreachable-secret-pw"
    environment.update(
        SAMPLING_SOURCE_URL=f"postgresql://makapix_sampler:{password}@127.0.0.1:{closed_port()}/makapix",
        SAMPLING_TARGET_URL=target,
        SAMPLING_SOURCE_VAULT=str(production_vault),
        SAMPLING_TARGET_VAULT=str(development_vault),
    )
    done = run_declared(create, environment)

    assert done.returncode == 0, done.stderr
    summary = parse_summary(done.stdout)
    assert summary["loaded"] is False
    assert summary["reason"].startswith("no sample loaded: the production database")
    assert "did not accept connections" in summary["reason"]
    assert password not in done.stdout + done.stderr and "no sample loaded" in done.stderr
    assert rows(target, "SELECT id FROM users") == [(99,)]  # the dev database as it was
    assert not (development_vault / "a").exists()


def test_without_a_prod_stack_no_reference_is_made_and_the_run_says_so(
    render_stack: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    makapix: tuple[str, str],
    sample_config: Path,
) -> None:
    monkeypatch.setenv("MAKAPIX_ABSENT_STACKS", "prod")
    create, environment, rendering = declared_command(render_stack, sample_config, {"other": {}})
    # Pulumi fails a deployment whose StackReference names a missing stack: none may be declared.
    assert rendering.of_type("pulumi:pulumi:StackReference") == []
    assert environment["SAMPLING_SOURCE_URL"] == ""
    done = run_declared(create, {**environment, "SAMPLING_TARGET_URL": makapix[1]})

    assert done.returncode == 0, done.stderr
    summary = parse_summary(done.stdout)
    assert summary["loaded"] is False
    assert (
        summary["reason"] == "no sample loaded: the production stack 'prod' is not deployed on this backend"
    )


def test_a_missing_production_vault_is_reported_and_a_failed_sample_fails_the_command(
    makapix: tuple[str, str], sample_config: Path, tmp_path: Path
) -> None:
    source, target = makapix
    command = f"{sys.executable} -m sampling stack-run --config {sample_config} --seed 7"
    environment = {
        "SAMPLING_SOURCE_URL": source,
        "SAMPLING_TARGET_URL": target,
        "SAMPLING_ANONYMISATION_KEY": "k",
        "SAMPLING_SOURCE_VAULT": str(tmp_path / "no-such-vault"),
        "SAMPLING_TARGET_VAULT": str(tmp_path / "vault-dev"),
    }
    done = run_declared(command, environment)
    assert done.returncode == 0, done.stderr
    summary = parse_summary(done.stdout)
    assert summary["loaded"] is True
    assert summary["vault"]["skipped"].endswith(
        "no-such-vault is not a directory on this host; no file copied"
    )

    # A sample the sampler refuses (here: the target lacks a table) fails the command, so `pulumi up`
    # fails and the next `up` runs it again; stderr names the problem.
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP TABLE badge_grants")
    failed = run_declared(command, environment)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "badge_grants" in failed.stderr


CLIPPYFRONT = ROOT / "examples" / "clippyfront"
CLIPPYFRONT_SCHEMA = """
CREATE TYPE userrole AS ENUM ('user', 'admin');
CREATE TABLE opt_users (id int PRIMARY KEY, email text NOT NULL, role userrole NOT NULL);
CREATE TABLE dev_users (id int PRIMARY KEY, email text NOT NULL, role userrole NOT NULL);
CREATE TABLE opt_team_invitations (id int PRIMARY KEY, invited_by int REFERENCES opt_users, token text);
CREATE TABLE dev_team_invitations (id int PRIMARY KEY, invited_by int REFERENCES dev_users, token text);
INSERT INTO opt_users SELECT i, 'person' || i || '@example.com', 'user' FROM generate_series(1, 40) i;
INSERT INTO opt_team_invitations VALUES (1, 1, 'secret-token');
"""


def test_clippyfront_dev_samples_opt_into_dev_in_one_database_and_copies_no_files(
    render_stack: Callable[..., Any],
    make_database: Callable[[], str],
    execute: Callable[[str, str], None],
    rows: Callable[[str, str], list[tuple[Any, ...]]],
    tmp_path: Path,
) -> None:
    """ClippyFront's declared run: opt_* into dev_* of clippy_front, its instance directory left alone."""
    database = make_database()
    execute(database, CLIPPYFRONT_SCHEMA)
    prod = json.loads((CLIPPYFRONT / "stack_references" / "prod.json").read_text())
    prod.update(
        sampling_source_url="postgresql://clippyfront_sampler:Pw@127.0.0.1:55432/clippy_front",
        shared_database_password="the-servers-password",
    )
    rendering = render_stack("dev", project_dir=CLIPPYFRONT, references={"prod": prod})
    command = rendering.get("command:local:Command", "clippyfront-dev-sampling-command")
    environment = command.plain_inputs()["environment"]
    # Shared mode: development's prefix on production's server, reached through the same loopback port.
    assert environment["SAMPLING_TARGET_URL"] == (
        "postgresql://clippyfront:the-servers-password@127.0.0.1:55432/clippy_front"
    )
    production_instance, development_instance = tmp_path / "instance-prod", tmp_path / "instance-dev"
    (production_instance / "uploads").mkdir(parents=True)
    (development_instance / "uploads").mkdir(parents=True)
    (development_instance / "uploads/dev-only.mp4").write_bytes(b"a development upload")
    environment.update(
        SAMPLING_SOURCE_URL=database,
        SAMPLING_TARGET_URL=database,
        SAMPLING_SOURCE_VAULT=str(production_instance),
        SAMPLING_TARGET_VAULT=str(development_instance),
    )
    create = command.inputs["create"].replace(".venv/bin/python", sys.executable, 1)
    done = run_declared(create, environment)

    assert done.returncode == 0, done.stderr
    summary = parse_summary(done.stdout)
    assert summary["loaded"] is True and summary["vault"] is None
    # About 10 % of 40 (seeded hash selection), each a production user.
    sampled = {user_id for (user_id,) in rows(database, "SELECT id FROM dev_users")}
    assert 0 < len(sampled) < 40 and sampled <= set(range(1, 41))
    assert summary["tables"]["public.dev_users"]["rows"] == len(sampled)
    assert rows(database, "SELECT count(*) FROM opt_users") == [(40,)]  # the source is untouched
    assert all(
        email.endswith("@dev.clippyfront.local") for (email,) in rows(database, "SELECT email FROM dev_users")
    )
    assert rows(database, "SELECT count(*) FROM dev_team_invitations") == [(0,)]
    # No per-row file layout: nothing copied, nothing pruned from development's instance directory.
    assert (development_instance / "uploads/dev-only.mp4").read_bytes() == b"a development upload"


@pytest.mark.parametrize(
    ("variable", "url", "expected"),
    [
        (
            "SAMPLING_TARGET_URL",
            "postgresql://dev:Pw0fDev@127.0.0.1:5543x/makapix_dev",
            "the development database",
        ),
        ("SAMPLING_SOURCE_URL", "postgres//reader:Pw0fTheReader@db/makapix", "the production database"),
    ],
    ids=["target", "source"],
)
def test_a_malformed_url_exits_2_at_once_naming_its_variable(
    sample_config: Path, variable: str, url: str, expected: str
) -> None:
    """Issue 15: a malformed URL was retried for --target-wait seconds, then reported in libpq's words."""
    environment = {
        "SAMPLING_SOURCE_URL": "postgresql://reader@127.0.0.1:1/makapix",
        "SAMPLING_TARGET_URL": "postgresql://dev@127.0.0.1:1/makapix_dev",
        variable: url,
    }
    result = run_declared(f"{sys.executable} -m sampling stack-run --config {sample_config}", environment)
    assert result.returncode == 2, result.stderr
    assert f"error: {variable}: {expected} URL is malformed" in result.stderr
    assert "Pw0f" not in result.stderr + result.stdout
