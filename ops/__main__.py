"""``python -m ops``: operations tools for the two environments.

    python -m ops alerts OUTPUTS.json [--output FILE]
    python -m ops audit [--project NAME ...] [--json] [--textfile FILE]
    python -m ops backup --dir DIR [--keep N] [--pg-bin DIR] [--wait SECONDS] [--json]
    python -m ops restore --dir DIR [--backup FILE] [--pg-bin DIR] [--json]
    python -m ops schema          (JSON Schema of the `monitoring` stack output)

backup and restore read the database URL from the environment variable OPS_DATABASE_URL.
Exit status: 0 done, 1 refused or failed (message on stderr, nothing changed), 2 bad usage.
audit: 0 no findings, 1 findings, 2 the audit could not run: the Docker engine cannot be read, the
--textfile cannot be written (message on stderr), or bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ops.alerts import load_monitoring, render_alert_rules
from ops.audit import EngineUnreadable, audit, report_json, unreadable_prometheus
from ops.backup import (
    DEFAULT_KEEP,
    backup_database,
    database_url_from_environment,
    restore_database,
    wait_for_server,
)
from ops.errors import OpsError
from ops.monitoring import monitoring_json_schema


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops", description="Operations tools: backups, restore, Prometheus alert rules."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    alerts = commands.add_parser("alerts", help="Prometheus alerting rules from `pulumi stack output --json`")
    alerts.add_argument("outputs", type=Path, metavar="OUTPUTS.json")
    alerts.add_argument("--output", type=Path, help="write the rules here (atomically) instead of stdout")

    backup = commands.add_parser("backup", help="pg_dump -Fc of $OPS_DATABASE_URL into DIR, keeping N newest")
    backup.add_argument("--dir", type=Path, required=True, help="backup directory (created if missing)")
    backup.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, help=f"backups to keep (default {DEFAULT_KEEP})"
    )
    backup.add_argument("--pg-bin", type=Path, help="directory of pg_dump (default $OPS_PG_BIN, then PATH)")
    backup.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the server to accept connections (a fresh container)",
    )
    backup.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    restore = commands.add_parser("restore", help="restore the newest (or a named) backup in one transaction")
    restore.add_argument("--dir", type=Path, required=True, help="backup directory")
    restore.add_argument("--backup", type=Path, help="backup file to restore (default: the newest in DIR)")
    restore.add_argument("--pg-bin", type=Path, help="directory of pg_restore and psql")
    restore.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    commands.add_parser("schema", help="print the JSON Schema of the `monitoring` stack output")

    audit_command = commands.add_parser(
        "audit", help="read-only isolation audit of the running Docker engine (local socket or $DOCKER_HOST)"
    )
    audit_command.add_argument(
        "--project",
        action="append",
        metavar="NAME",
        help="audit this project only (repeatable; default: every project a <project>.environment label names)",
    )
    audit_command.add_argument("--json", action="store_true", help="print the report as JSON")
    audit_command.add_argument(
        "--textfile",
        type=Path,
        help="also write Prometheus metrics here, atomically (node_exporter textfile)",
    )
    return parser


AUDIT_ENGINE_UNREADABLE = 2


def _engine_address() -> str:
    """Where the audit looks for the engine, for messages (a password in DOCKER_HOST is masked)."""
    address = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (the local socket)"
    parts = urlsplit(address)
    if parts.password:
        address = address.replace(f":{parts.password}@", ":***@")
    return address


def _docker_client() -> Any:
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as error:
        raise EngineUnreadable(
            "the Docker SDK for Python is not installed: pip install 'docker>=7.1'"
        ) from error
    try:
        # ssh://user@host goes through the system's ssh client (its keys and config), no paramiko needed.
        client = docker.from_env(version="auto", timeout=30, use_ssh_client=True)
    except docker.errors.DockerException as error:
        raise EngineUnreadable(f"cannot connect to the Docker engine: {error}") from error
    return client


def _run_audit(arguments: argparse.Namespace) -> int:
    started = time.time()
    try:
        client = _docker_client()
        try:
            report = audit(client, arguments.project)
        finally:
            client.close()
    except EngineUnreadable as error:
        if arguments.textfile is not None:
            _write_atomically(arguments.textfile, unreadable_prometheus(started))
        print(
            f"error: {error} (engine: {_engine_address()}); start the engine or set DOCKER_HOST, "
            "and run as a user that may read the Docker socket",
            file=sys.stderr,
        )
        return AUDIT_ENGINE_UNREADABLE
    if arguments.textfile is not None:
        _write_atomically(arguments.textfile, report.render_prometheus(started))
    print(report_json(report) if arguments.json else report.render_text(), end="\n" if arguments.json else "")
    return 0 if report.clean else 1


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.command == "audit":
        try:
            return _run_audit(arguments)
        except OSError as error:  # the textfile's directory cannot be written: names the path
            print(f"error: {error}", file=sys.stderr)
            return AUDIT_ENGINE_UNREADABLE
    try:
        if arguments.command == "alerts":
            rules = render_alert_rules(load_monitoring(arguments.outputs))
            if arguments.output is None:
                sys.stdout.write(rules)
            else:
                _write_atomically(arguments.output, rules)
        elif arguments.command == "schema":
            print(json.dumps(monitoring_json_schema(), indent=2, sort_keys=True, ensure_ascii=False))
        elif arguments.command == "backup":
            if arguments.wait > 0:
                wait_for_server(database_url_from_environment(), arguments.wait)
            result = backup_database(
                database_url_from_environment(), arguments.dir, keep=arguments.keep, pg_bin=arguments.pg_bin
            )
            if arguments.json:
                print(json.dumps(result.summary(), indent=2))
            else:
                print(
                    f"backup {result.backup.path} ({result.size_bytes} bytes); deleted {len(result.deleted)} old"
                )
        else:
            restored = restore_database(
                database_url_from_environment(),
                arguments.dir,
                backup=arguments.backup,
                pg_bin=arguments.pg_bin,
            )
            if arguments.json:
                print(json.dumps(restored.summary(), indent=2))
            else:
                print(f"restored {restored.backup} into database {restored.database}")
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a directory that cannot be created, a full disk...: names the path
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: {arguments.command} interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run())
