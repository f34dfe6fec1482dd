"""Command line: ``python -m sampling plan|run|verify --config FILE [--source URL] [--target URL] [--json]``
(plus ``--seed N`` / ``--fraction F`` overrides).

Exit codes: 0 ok, 1 failure or refusal, 2 usage or configuration error.  URLs default to the
environment variables SAMPLING_SOURCE_URL and SAMPLING_TARGET_URL; passwords are never printed.
``vault ...`` is handed to ``sampling.vault.main``, ``grant-reader ...`` to ``sampling.access.main`` and
``stack-run ...`` to ``sampling.stack_run.main``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress as Bars
from rich.progress import TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sampling.config import load_config, with_overrides
from sampling.engine import plan, run
from sampling.errors import ConfigError, SamplingError, check_database_url
from sampling.results import Progress, ProgressCallback
from sampling.verify import verify

SOURCE_ENV = "SAMPLING_SOURCE_URL"
TARGET_ENV = "SAMPLING_TARGET_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sampling", description=__doc__.splitlines()[0] if __doc__ else None
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "plan": "show rows per table and growth from parent policies; writes nothing",
        "run": "replace the target's rows with an anonymised sample, atomically",
        "verify": "check the target: foreign keys, sequences, no source value in anonymised columns",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--config", required=True, help="YAML sampling configuration")
        sub.add_argument("--source", help=f"source database URL (default: ${SOURCE_ENV})")
        sub.add_argument("--target", help=f"target database URL (default: ${TARGET_ENV})")
        sub.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        sub.add_argument("--seed", type=int, help="override the configuration's seed")
        sub.add_argument("--fraction", type=float, help="override every root's fraction")
        if name == "plan":
            sub.add_argument(
                "--exact",
                action="store_true",
                help="also final rows per table: load into the target and roll back",
            )
    commands.add_parser(
        "vault", help="copy the vault files of sampled posts (see sampling.vault)", add_help=False
    )
    commands.add_parser(
        "grant-reader", help="create the read-only sampling role in production (sampling.access)", add_help=False
    )
    commands.add_parser(
        "stack-run", help="sample and sync the vault, as the dev stack runs it (sampling.stack_run)", add_help=False
    )
    return parser


def _url(given: str | None, env: str, what: str) -> str:
    url = given or os.environ.get(env)
    if not url:
        raise ConfigError(f"no {what} database: pass --{what} URL or set {env}")
    check_database_url(url, what, f"--{what}" if given else env)
    return url


@contextmanager
def _bars(console: Console, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A progress callback drawing one line per table and step on stderr: rows and rows/s."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:<45}"),
        TextColumn("{task.completed:>12,.0f} rows"),
        TextColumn("{task.fields[rate]:>12} rows/s"),
        TimeElapsedColumn(),
    )
    with Bars(*columns, console=console) as bars:
        tasks: dict[str, TaskID] = {}

        def report(event: Progress) -> None:
            key = f"{event.table} ({event.step})"
            if key not in tasks:
                tasks[key] = bars.add_task(key, total=None, rate="")
            rate = f"{event.rows / event.seconds:,.0f}" if event.seconds > 0 else ""
            bars.update(tasks[key], completed=event.rows, rate=rate)

        yield report


def _print_plan(console: Console, result: Any) -> None:
    table = Table(title="Sampling plan")
    exact = any(row.final is not None for row in result.tables.values())
    headings = ["table", "mode", "selected rows", "+ parents (first level)"] + (
        ["final rows"] if exact else []
    )
    for heading in headings:
        table.add_column(heading, justify="left" if heading in ("table", "mode") else "right")
    for name, row in result.tables.items():
        cells = [name, row.mode, f"{row.selected:,}", f"{row.parents_first_level:,}"]
        table.add_row(*cells, *([f"{row.final or 0:,}"] if exact else []))
    console.print(table)
    for title, items in (
        ("Unreached tables (run refuses)", result.unreached),
        ("Sensitive-looking columns without a rule (run refuses)", result.sensitive_without_rule),
        ("Links not followed, to break cycles", result.cycle_breaks),
        ("Tables outside the sample that reference it (see outside_references)", result.outside_references),
    ):
        if items:
            console.print(f"{title}: " + ", ".join(items))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "vault":
        from sampling import vault  # imported here: that helper lives in its own module

        return vault.main(argv[1:])
    if argv and argv[0] == "grant-reader":
        from sampling import access

        return access.main(argv[1:])
    if argv and argv[0] == "stack-run":
        from sampling import stack_run

        return stack_run.main(argv[1:])
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    # Not a terminal (a log, CI): wide enough that table names and figures are not cut.
    err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
    try:
        config = with_overrides(load_config(args.config), seed=args.seed, fraction=args.fraction)
        source = _url(args.source, SOURCE_ENV, "source")
        if args.command == "plan":
            target_url = args.target or os.environ.get(TARGET_ENV)
            if target_url:
                check_database_url(target_url, "target", "--target" if args.target else TARGET_ENV)
            result: Any = plan(config, source, target_url, exact=args.exact)
            if not args.json:
                _print_plan(err, result)
        elif args.command == "run":
            target = _url(args.target, TARGET_ENV, "target")
            with _bars(err, enabled=not args.json or sys.stderr.isatty()) as report:
                result = run(config, source, target, progress=report)
            if not args.json:
                err.print(
                    f"copied {result.total_rows:,} rows in {result.seconds:.2f} s "
                    f"(parents pulled in: {sum(result.included.values()):,}, references cleared: "
                    f"{sum(result.nullified.values()):,}, rows dropped: {sum(result.dropped.values()):,}, "
                    f"outside rows pruned: {sum(result.outside_pruned.values()):,}, outside tables emptied: "
                    f"{len(result.outside_emptied)})"
                )
        else:
            target = _url(args.target, TARGET_ENV, "target")
            result = verify(config, source, target)
            if not args.json:
                for problem in result.problems:
                    err.print(f"[red]problem[/red] {problem}", markup=True, highlight=False)
                for warning in result.warnings:
                    err.print(f"warning {warning}", highlight=False)
                err.print("verify: ok" if result.ok else f"verify: {len(result.problems)} problems")
    except ConfigError as error:
        err.print(f"error: {error}", markup=False, highlight=False)
        return 2
    except SamplingError as error:
        err.print(f"error: {error}", markup=False, highlight=False)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    return 0 if getattr(result, "ok", True) else 1
