"""``python -m ops`` (or the ``makapix-ops`` script): operations tools for the two environments.

    python -m ops alerts OUTPUTS.json [--output FILE]
    python -m ops audit [--project NAME ...] [--json] [--textfile FILE]
    python -m ops backup --dir DIR [--keep N] [--pg-bin DIR] [--wait SECONDS] [--json]
    python -m ops restore --dir DIR [--backup FILE] [--pg-bin DIR] [--json]
    python -m ops schema          (JSON Schema of the `monitoring` stack output)

backup and restore read the database URL from the environment variable OPS_DATABASE_URL.
Exit status (:class:`cli_support.commands.ExitCode`): 0 done, 1 refused or failed (message on stderr,
nothing changed), 2 bad usage, 130 interrupted.  audit: 0 no findings, 1 findings, 2 the audit could
not run: the Docker engine cannot be read, the --textfile cannot be written (message on stderr), or
bad usage.
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
from typing import Any, NoReturn
from urllib.parse import urlsplit

from cli_support.commands import Command, ErrorCodes, ExitCode, run_commands
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


def _add_alerts_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outputs", type=Path, metavar="OUTPUTS.json")
    parser.add_argument("--output", type=Path, help="write the rules here (atomically) instead of stdout")


def _add_backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="backup directory (created if missing)")
    parser.add_argument(
        "--keep", type=int, default=DEFAULT_KEEP, help=f"backups to keep (default {DEFAULT_KEEP})"
    )
    parser.add_argument("--pg-bin", type=Path, help="directory of pg_dump (default $OPS_PG_BIN, then PATH)")
    parser.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the server to accept connections (a fresh container)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def _add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True, help="backup directory")
    parser.add_argument("--backup", type=Path, help="backup file to restore (default: the newest in DIR)")
    parser.add_argument("--pg-bin", type=Path, help="directory of pg_restore and psql")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def _add_no_arguments(_parser: argparse.ArgumentParser) -> None:
    pass


def _add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        action="append",
        metavar="NAME",
        help="audit this project only (repeatable; default: every project a <project>.environment label names)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--textfile",
        type=Path,
        help="also write Prometheus metrics here, atomically (node_exporter textfile)",
    )


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
        return ExitCode.USAGE  # the audit could not run
    if arguments.textfile is not None:
        _write_atomically(arguments.textfile, report.render_prometheus(started))
    print(report_json(report) if arguments.json else report.render_text(), end="\n" if arguments.json else "")
    return ExitCode.OK if report.clean else ExitCode.FAILED


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


def _audit(arguments: argparse.Namespace) -> int:
    try:
        return _run_audit(arguments)
    except OSError as error:  # the textfile's directory cannot be written: names the path
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE  # the audit could not run, as when the engine cannot be read


def _alerts(arguments: argparse.Namespace) -> int:
    rules = render_alert_rules(load_monitoring(arguments.outputs))
    if arguments.output is None:
        sys.stdout.write(rules)
    else:
        _write_atomically(arguments.output, rules)
    return ExitCode.OK


def _schema(_arguments: argparse.Namespace) -> int:
    print(json.dumps(monitoring_json_schema(), indent=2, sort_keys=True, ensure_ascii=False))
    return ExitCode.OK


def _backup(arguments: argparse.Namespace) -> int:
    if arguments.wait > 0:
        wait_for_server(database_url_from_environment(), arguments.wait)
    result = backup_database(
        database_url_from_environment(), arguments.dir, keep=arguments.keep, pg_bin=arguments.pg_bin
    )
    if arguments.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print(f"backup {result.backup.path} ({result.size_bytes} bytes); deleted {len(result.deleted)} old")
    return ExitCode.OK


def _restore(arguments: argparse.Namespace) -> int:
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
    return ExitCode.OK


COMMANDS = (
    Command(
        "alerts",
        "Prometheus alerting rules from `pulumi stack output --json`",
        _add_alerts_arguments,
        _alerts,
    ),
    Command(
        "backup",
        "pg_dump -Fc of $OPS_DATABASE_URL into DIR, keeping N newest",
        _add_backup_arguments,
        _backup,
    ),
    Command(
        "restore",
        "restore the newest (or a named) backup in one transaction",
        _add_restore_arguments,
        _restore,
    ),
    Command("schema", "print the JSON Schema of the `monitoring` stack output", _add_no_arguments, _schema),
    Command(
        "audit",
        "read-only isolation audit of the running Docker engine (local socket or $DOCKER_HOST)",
        _add_audit_arguments,
        _audit,
    ),
)

#: A refusal or failed step, or a directory that cannot be created, a full disk... (the message names
#: the path): failed, nothing changed.
ERRORS: ErrorCodes = {OpsError: ExitCode.FAILED, OSError: ExitCode.FAILED}


def main(argv: Sequence[str]) -> int:
    """``python -m ops COMMAND ...``: the exit code (see :class:`cli_support.commands.ExitCode`)."""
    return run_commands(
        "python -m ops",
        "Operations tools: backups, restore, Prometheus alert rules.",
        COMMANDS,
        argv,
        errors=ERRORS,
        interrupted="error: {command} interrupted; nothing was written",
    )


def main_entry() -> NoReturn:
    """The ``makapix-ops`` script and ``python -m ops``."""
    sys.exit(main(sys.argv[1:]))
