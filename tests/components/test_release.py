"""Backup before the new containers, migrations after the api: declared (mock renders) and executed for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from components.parsing import parse_environment
from components.release import backup_pg_bin
from ops.backup import backup_name, list_backups, restore_database
from tools.desired_state import RenderError, Secret

CONTAINER = "docker:index/container:Container"
LOCAL_COMMAND = "command:local:Command"
BACKUP = "makapix-prod-backup-pg-dump"
MIGRATIONS = "makapix-{}-migrations-run"
PROJECT_DIR = Path(__file__).resolve().parents[2]


def digest(repository: str, fill: str) -> str:
    return f"ghcr.io/makapix/{repository}@sha256:{fill * 64}"


DEV = {"api": digest("api", "a"), "web": digest("web", "b"), "worker": digest("api", "a")}


def render_prod(render_stack, dev_digests=DEV, **overrides):
    return render_stack("prod", references={"dev": {"image_digests": dev_digests}, "prod": {}}, **overrides)


# --- declared: mock renders ---------------------------------------------------------------------


def test_backup_command_script_and_secret_environment(render_stack):
    backup = render_prod(render_stack).get(LOCAL_COMMAND, BACKUP)
    inputs = backup.plain_inputs()
    assert inputs["create"] == (
        ".venv/bin/python -m ops backup --dir /srv/makapix/backups/prod --keep 7 --wait 120 --json"
    )
    password = "mock-secret-makapix-prod-database-password"
    assert inputs["environment"] == {
        "OPS_DATABASE_URL": f"postgresql://makapix:{password}@127.0.0.1:55432/makapix",
        "OPS_PG_BIN": "/usr/lib/postgresql/17/bin",
    }
    assert isinstance(backup.inputs["environment"], Secret), "the URL (with its password) must be secret"
    assert password not in json.dumps(backup.inputs["create"])
    assert inputs["logging"] == "none"
    assert inputs["triggers"] == [DEV["api"], ["alembic", "upgrade", "head"]]
    assert backup.options["depends_on"] == sorted(
        ["makapix-prod-db-container", "makapix-prod-database-password", "makapix-prod-images-api"]
    )


def test_configured_backup_directory_and_retention_reach_the_script(render_stack):
    inputs = (
        render_prod(
            render_stack, release={"backup_dir": "/var/backups/makapix", "keep": 3, "pg_bin": "/opt/pg/bin"}
        )
        .get(LOCAL_COMMAND, BACKUP)
        .plain_inputs()
    )
    assert (
        inputs["create"]
        == ".venv/bin/python -m ops backup --dir /var/backups/makapix --keep 3 --wait 120 --json"
    )
    assert inputs["environment"]["OPS_PG_BIN"] == "/opt/pg/bin"


@pytest.mark.parametrize(
    ("change", "backup_runs_again"),
    [
        pytest.param({"dev_digests": {**DEV, "web": digest("web", "9")}}, False, id="web image"),
        pytest.param({"services": {"web": {"resources": {"cpus": 0.5}}}}, False, id="web limits"),
        pytest.param({"release": {"keep": 3}}, False, id="retention"),
        pytest.param({"dev_digests": {**DEV, "api": digest("api", "9")}}, True, id="api image"),
        pytest.param(
            {"release": {"migrations_command": ["alembic", "upgrade", "heads"]}}, True, id="migrations"
        ),
    ],
)
def test_backup_and_migrations_run_again_iff_the_api_image_or_migrations_change(
    render_stack, change, backup_runs_again
):
    before = render_prod(render_stack)
    after = render_prod(render_stack, **change)
    for name in (BACKUP, MIGRATIONS.format("prod")):
        triggers_before = before.get(LOCAL_COMMAND, name).plain_inputs()["triggers"]
        triggers_after = after.get(LOCAL_COMMAND, name).plain_inputs()["triggers"]
        assert (triggers_before != triggers_after) is backup_runs_again, name


@pytest.mark.parametrize("service", ["api", "web", "worker"])
def test_new_containers_start_only_after_the_backup(render_stack, service):
    container = render_prod(render_stack).get(CONTAINER, f"makapix-prod-{service}-container")
    assert BACKUP in container.options["depends_on"]


def test_development_takes_no_backup_unless_configured(render_stack):
    dev = render_stack("dev")
    commands = [c.name for c in dev.of_type(LOCAL_COMMAND)]
    assert MIGRATIONS.format("dev") in commands and not [name for name in commands if "backup" in name]
    for container in dev.of_type(CONTAINER):
        assert not any("backup" in name for name in container.options.get("depends_on", [])), container.name
    configured = render_stack("dev", release={"backup": True})
    backup = configured.get(LOCAL_COMMAND, "makapix-dev-backup-pg-dump").plain_inputs()
    assert backup["create"].startswith(".venv/bin/python -m ops backup --dir /srv/makapix/backups/dev ")
    assert backup["environment"]["OPS_DATABASE_URL"].endswith("@127.0.0.1:55433/makapix_dev")


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_migrations_run_in_the_new_api_container(render_stack, stack):
    rendering = render_prod(render_stack) if stack == "prod" else render_stack("dev")
    migrations = rendering.get(LOCAL_COMMAND, MIGRATIONS.format(stack))
    inputs = migrations.plain_inputs()
    assert inputs["create"] == f"docker exec makapix-{stack}-api alembic upgrade head"
    assert inputs["environment"] == {}
    assert f"makapix-{stack}-api-container" in migrations.options["depends_on"]
    api_image = rendering.get(CONTAINER, f"makapix-{stack}-api-container").plain_inputs()["image"]
    assert inputs["triggers"] == [api_image, ["alembic", "upgrade", "head"]]


def test_configured_migrations_command_and_none(render_stack):
    custom = render_prod(render_stack, release={"migrations_command": ["flask", "db", "upgrade", "--sql; x"]})
    assert custom.get(LOCAL_COMMAND, MIGRATIONS.format("prod")).plain_inputs()["create"] == (
        "docker exec makapix-prod-api flask db upgrade '--sql; x'"
    )
    without = render_prod(render_stack, release={"migrations_command": None})
    commands = [c.name for c in without.of_type(LOCAL_COMMAND)]
    assert BACKUP in commands and MIGRATIONS.format("prod") not in commands
    assert without.get(LOCAL_COMMAND, BACKUP).plain_inputs()["triggers"] == [DEV["api"], []]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"release": {"backup": True}, "database": {"host_port": None}},
            "makapix: release.backup is true but database.host_port is null: the backup connects to the "
            "database's host port; set database.host_port (e.g. 55432) or release.backup: false",
        ),
        (
            {"release": {"migrations_service": "backend"}},
            "release.migrations_service 'backend' is not one of services (api, web, worker)",
        ),
        (
            {"release": {"migrations_service": "backend", "migrations_command": None}},
            "release.migrations_service 'backend' is not one of services (api, web, worker)",
        ),
        (
            {"release": {"migrations_service": None}},
            "release.migrations_service is not set but release.backup or release.migrations_command is: "
            "name the service whose image holds the migrations, one of: api, web, worker",
        ),
        ({"release": {"keep": 0}}, "makapix:release.keep: Input should be greater than or equal to 1"),
        (
            {"release": {"backup_dir": "backups"}},
            "makapix:release.backup_dir: 'backups' is not an absolute path",
        ),
        (
            {"release": {"migrations_command": []}},
            "makapix:release.migrations_command: give the command as a",
        ),
    ],
)
def test_bad_release_settings_name_the_key(render_stack, overrides, message):
    with pytest.raises(RenderError) as refused:
        render_prod(render_stack, **overrides)
    assert "Pulumi.prod.yaml" in str(refused.value)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("postgres", "pg_bin"),
    [
        ("postgres:17.2-alpine", "/usr/lib/postgresql/17/bin"),
        ("postgres:18", "/usr/lib/postgresql/18/bin"),
        ("docker.io/library/postgres:16.4@sha256:" + "d" * 64, "/usr/lib/postgresql/16/bin"),
    ],
)
def test_pg_dump_directory_follows_the_server_major(postgres, pg_bin):
    settings = parse_environment(_prod_values(images={"postgres": postgres}), "Pulumi.prod.yaml", "makapix")
    assert backup_pg_bin(settings.release, settings.images.postgres) == pg_bin


@pytest.mark.parametrize("postgres", ["postgres@sha256:" + "d" * 64, "registry.local/pg:17"])
def test_pg_dump_directory_must_be_given_when_the_major_is_unknown(render_stack, postgres):
    with pytest.raises(RenderError) as refused:
        render_prod(render_stack, images={"postgres": postgres})
    message = str(refused.value)
    assert message.startswith("Pulumi.prod.yaml: invalid configuration (1 problem(s)):")
    assert (
        f"release.pg_bin is not set and the PostgreSQL major version cannot be read from images.postgres {postgres!r}"
        in message
    )
    assert "e.g. '/usr/lib/postgresql/17/bin'" in message
    pinned = parse_environment(
        _prod_values(images={"postgres": postgres}, release={"pg_bin": "/opt/pg17/bin"}), "Pulumi.prod.yaml", "makapix"
    )
    assert backup_pg_bin(pinned.release, pinned.images.postgres) == "/opt/pg17/bin"
    # Without a backup nothing needs pg_dump.
    parse_environment(
        _prod_values(images={"postgres": postgres}, release={"backup": False}), "Pulumi.prod.yaml", "makapix"
    )


def _prod_values(**changes: object) -> dict[str, object]:
    import yaml

    config = yaml.safe_load((PROJECT_DIR / "Pulumi.prod.yaml").read_text())["config"]
    return {**{key.split(":", 1)[1]: value for key, value in config.items()}, **changes}


# --- executed: the declared backup command against a real PostgreSQL --------------------------------


@pytest.fixture
def production_database(make_database: Callable[[], str]) -> str:
    url = make_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)")
        conn.execute(
            "INSERT INTO users SELECT n, 'user' || n || '@example.org' FROM generate_series(1, 500) n"
        )
    return url


def run_declared_backup(render_stack, tmp_path: Path, database_url: str, pg_bin: Path, keep: int):
    """Render the prod stack, then run its backup command as command.local.Command would."""
    backups = tmp_path / "backups"
    rendering = render_prod(
        render_stack, release={"backup_dir": str(backups), "keep": keep}, host={"python": sys.executable}
    )
    declared = rendering.get(LOCAL_COMMAND, BACKUP).plain_inputs()
    assert set(declared["environment"]) == {"OPS_DATABASE_URL", "OPS_PG_BIN"}
    environment = {
        **declared["environment"],
        "OPS_DATABASE_URL": database_url,  # the embedded server stands in for 127.0.0.1:55432
        "OPS_PG_BIN": str(pg_bin),
        "PATH": os.environ["PATH"],
    }
    run = subprocess.run(
        ["/bin/sh", "-c", declared["create"]],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return backups, run


def test_declared_backup_command_writes_a_restorable_dump_and_prunes(
    render_stack, production_database, make_database, postgres_bin_dir, tmp_path
):
    database_name = urlsplit(production_database).path.lstrip("/")
    backups = tmp_path / "backups"
    backups.mkdir()
    start = datetime.now(UTC) - timedelta(days=10)
    older = [backups / backup_name(database_name, start + timedelta(days=day)) for day in range(4)]
    for path in older:
        path.write_bytes(b"PGDMP older backup")
    unrelated = backups / backup_name("makapix_dev", start)
    unrelated.write_bytes(b"PGDMP")

    _, run = run_declared_backup(render_stack, tmp_path, production_database, postgres_bin_dir, keep=2)

    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    written = Path(summary["backup"])
    assert written.parent == backups and written.read_bytes()[:5] == b"PGDMP"
    # keep=2: the new backup and the newest older one stay; the three oldest go; other databases' stay.
    assert [b.path for b in list_backups(backups, database_name)] == [written, older[3]]
    assert sorted(map(Path, summary["deleted"])) == sorted(older[:3])
    assert unrelated.exists()

    copy = make_database()
    restore_database(copy, backups, backup=written, pg_bin=postgres_bin_dir)
    rows = "SELECT id, email FROM users ORDER BY id"
    with psycopg.connect(copy) as restored, psycopg.connect(production_database) as source:
        assert len(restored.execute(rows).fetchall()) == 500
        assert restored.execute(rows).fetchall() == source.execute(rows).fetchall()


def test_declared_backup_with_an_older_pg_dump_fails_and_writes_nothing(
    render_stack, production_database, tmp_path
):
    """pg_dump older than the server refuses itself: the deploy stops before any container changes."""
    old_bin = Path("/usr/lib/postgresql/15/bin")
    if not (old_bin / "pg_dump").exists():
        pytest.skip("no PostgreSQL 15 client installed to stand in for a too-old pg_dump")
    backups, run = run_declared_backup(render_stack, tmp_path, production_database, old_bin, keep=2)
    assert run.returncode == 1
    assert "server version mismatch" in run.stderr and "no backup was written" in run.stderr
    assert list(backups.iterdir()) == []


def test_over_ssh_the_url_travels_on_stdin_not_in_the_script(tmp_path):
    """host.ssh_host set: the backup is a remote command; the secret URL is in its (secret) stdin only."""
    from tools.desired_state import render

    for entry in PROJECT_DIR.iterdir():
        if entry.name not in ("Pulumi.prod.yaml", ".git", ".venv") and not entry.name.startswith("."):
            (tmp_path / entry.name).symlink_to(entry)
    stack_file = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()
    (tmp_path / "Pulumi.prod.yaml").write_text(
        stack_file
        + "  makapix:host:\n    ssh_host: 10.0.0.5\n    ssh_known_hosts: 10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh7r2ZSjmZFs+Rcf0TJ4IXCmGHAGmlEIu6NvaT004sF\n"
        + "  makapix:host_ssh_private_key:\n    secure: v1:encrypted-key\n"
    )
    rendering = render("prod", tmp_path, references={"dev": {"image_digests": DEV}, "prod": {}})
    backup = rendering.get("command:remote:Command", BACKUP)
    script = backup.plain_inputs()["create"]
    assert script == (
        "set -a; . /dev/stdin; set +a; cd /opt/makapix-infra && "
        ".venv/bin/python -m ops backup --dir /srv/makapix/backups/prod --keep 7 --wait 120 --json"
    )
    assert isinstance(backup.inputs["stdin"], Secret)
    stdin = backup.plain_inputs()["stdin"]
    password = "mock-secret-makapix-prod-database-password"
    assert stdin == (
        f"OPS_DATABASE_URL=postgresql://makapix:{password}@127.0.0.1:55432/makapix\n"
        "OPS_PG_BIN=/usr/lib/postgresql/17/bin\n"
    )
    assert password not in script
    assert (
        rendering.get("command:remote:Command", MIGRATIONS.format("prod"))
        .plain_inputs()["create"]
        .endswith("cd /opt/makapix-infra && docker exec makapix-prod-api alembic upgrade head")
    )
