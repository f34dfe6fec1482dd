"""``python -m ops``: operations tools for the two environments.

    python -m ops alerts OUTPUTS.json [--output FILE]
    python -m ops backup --dir DIR [--keep N] [--pg-bin DIR] [--wait SECONDS] [--json]
    python -m ops restore --dir DIR [--backup FILE] [--pg-bin DIR] [--json]
    python -m ops schema          (JSON Schema of the `monitoring` stack output)

backup and restore read the database URL from the environment variable OPS_DATABASE_URL.
Exit status: 0 done, 1 refused or failed (message on stderr, nothing changed), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ops.alerts import load_monitoring, render_alert_rules
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
    return parser


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
