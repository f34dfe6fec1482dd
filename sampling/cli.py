"""Command line: ``python -m sampling plan|run|verify --config FILE [--source URL] [--target URL] [--json]``
(plus ``--seed N`` / ``--fraction F`` overrides).

Exit codes (:class:`cli_support.commands.ExitCode`): 0 ok, 1 failure or refusal, 2 usage or
configuration error, 130 interrupted.  URLs default to the environment variables SAMPLING_SOURCE_URL and
SAMPLING_TARGET_URL; passwords are never printed.  ``vault``, ``grant-reader`` and ``stack-run`` are
the commands of ``sampling.vault``, ``sampling.access`` and ``sampling.stack_run``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import Progress as Bars
from rich.progress import TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli_support.commands import Command, ErrorCodes, ExitCode, run_commands
from sampling import access, stack_run, vault
from sampling.config import SamplingConfig, load_config, with_overrides
from sampling.engine import plan, run
from sampling.errors import ConfigError, SamplingError, check_database_url
from sampling.results import Progress, ProgressCallback
from sampling.session import terminate_as_interrupt
from sampling.verify import verify

SOURCE_ENV = "SAMPLING_SOURCE_URL"
TARGET_ENV = "SAMPLING_TARGET_URL"
PROG = "python -m sampling"
DESCRIPTION = __doc__.splitlines()[0] if __doc__ else None


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML sampling configuration")
    parser.add_argument("--source", help=f"source database URL (default: ${SOURCE_ENV})")
    parser.add_argument("--target", help=f"target database URL (default: ${TARGET_ENV})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--seed", type=int, help="override the configuration's seed")
    parser.add_argument("--fraction", type=float, help="override every root's fraction")


def _add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    _add_sampling_arguments(parser)
    parser.add_argument(
        "--exact",
        action="store_true",
        help="also final rows per table: load into the target and roll back",
    )


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


def _stderr() -> Console:
    # Not a terminal (a log, CI): wide enough that table names and figures are not cut.
    return Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def _config(args: argparse.Namespace) -> SamplingConfig:
    return with_overrides(load_config(args.config), seed=args.seed, fraction=args.fraction)


def _plan(args: argparse.Namespace) -> int:
    config = _config(args)
    source = _url(args.source, SOURCE_ENV, "source")
    target_url = args.target or os.environ.get(TARGET_ENV)
    if target_url:
        check_database_url(target_url, "target", "--target" if args.target else TARGET_ENV)
    result = plan(config, source, target_url, exact=args.exact)
    if not args.json:
        _print_plan(_stderr(), result)
    return _finish(args, result)


def _run(args: argparse.Namespace) -> int:
    config = _config(args)
    source = _url(args.source, SOURCE_ENV, "source")
    target = _url(args.target, TARGET_ENV, "target")
    err = _stderr()
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
    return _finish(args, result)


def _verify(args: argparse.Namespace) -> int:
    config = _config(args)
    source = _url(args.source, SOURCE_ENV, "source")
    target = _url(args.target, TARGET_ENV, "target")
    result = verify(config, source, target)
    if not args.json:
        err = _stderr()
        for problem in result.problems:
            err.print(f"[red]problem[/red] {problem}", markup=True, highlight=False)
        for warning in result.warnings:
            err.print(f"warning {warning}", highlight=False)
        err.print("verify: ok" if result.ok else f"verify: {len(result.problems)} problems")
    return _finish(args, result)


def _finish(args: argparse.Namespace, result: Any) -> int:
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    return ExitCode.OK if getattr(result, "ok", True) else ExitCode.FAILED


COMMANDS = (
    Command(
        "plan",
        "show rows per table and growth from parent policies; writes nothing",
        _add_plan_arguments,
        _plan,
    ),
    Command(
        "run",
        "replace the target's rows with an anonymised sample, atomically",
        _add_sampling_arguments,
        _run,
    ),
    Command(
        "verify",
        "check the target: foreign keys, sequences, no source value in anonymised columns",
        _add_sampling_arguments,
        _verify,
    ),
    vault.COMMAND,
    access.COMMAND,
    stack_run.COMMAND,
)

#: A configuration error is the operator's to fix (usage); any other refusal or failure is a failure.
ERRORS: ErrorCodes = {ConfigError: ExitCode.USAGE, SamplingError: ExitCode.FAILED}
INTERRUPTED = "interrupted: the servers' statements were cancelled, the target rolled back"


def main(argv: list[str]) -> int:
    """``python -m sampling COMMAND ...``: the exit code (see :class:`cli_support.commands.ExitCode`)."""
    return run_commands(PROG, DESCRIPTION, COMMANDS, argv, errors=ERRORS, interrupted=INTERRUPTED)


def main_entry() -> NoReturn:
    """The ``makapix-sampling`` script and ``python -m sampling``.

    SIGTERM is handled like Ctrl-C: the statements running on the servers are cancelled (not left
    running after the process is gone), the target transaction rolls back, and the exit code is 130.
    """
    try:
        with terminate_as_interrupt():
            status = main(sys.argv[1:])
    except KeyboardInterrupt:  # outside a command (while parsing, say): main did not word it
        print(INTERRUPTED, file=sys.stderr)
        status = ExitCode.INTERRUPTED
    sys.exit(status)
