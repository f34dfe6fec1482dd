"""``python -m sampling stack-run``: what the dev stack's sampling command runs (docs/sampling-run.md).

One entry point, so the command string the stack declares stays trivial and free of secrets:

1. no production to read (``SAMPLING_SOURCE_URL`` empty: the prod stack is not deployed or exports no
   reader): print a summary with ``"loaded": false`` and the reason, exit 0 — the development stack
   still comes up, with an empty database;
2. wait for the development database (its container was just started; failure: exit 1), then for
   production's (``--source-wait``; no answer: ``"loaded": false`` with the reason, exit 0); a refused
   login (wrong password or user, SQLSTATE 28P01/28000) on either fails at once: exit 1;
3. otherwise the sampler (``sampling.run``: one transaction, all or nothing), then the vault sync of the
   sampled posts' files (``sampling.vault.sync_vault``); a refusal or failure of either: exit 1.

stdout carries exactly one line, the JSON summary (``StackRunSummary``); progress and errors go to
stderr, passwords masked.  Every input comes from the environment (see the constants below), so no
secret is ever in argv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cli_support.commands import Command, ExitCode, run_command
from cli_support.database_urls import mask_text, mask_url, mask_url_in, url_password
from sampling.config import SamplingConfig, load_config, with_overrides
from sampling.engine import run
from sampling.errors import ConfigError, SamplingError, check_database_url
from sampling.model import target_name
from sampling.readiness import LoginRefused, wait_until_accepting
from sampling.vault import VaultSyncError, sync_vault

SOURCE_URL_ENV = "SAMPLING_SOURCE_URL"
TARGET_URL_ENV = "SAMPLING_TARGET_URL"
# Why there is no source URL, set by the stack instead of SAMPLING_SOURCE_URL (plain text, no secret).
SOURCE_ABSENT_ENV = "SAMPLING_SOURCE_ABSENT"
SOURCE_VAULT_ENV = "SAMPLING_SOURCE_VAULT"
TARGET_VAULT_ENV = "SAMPLING_TARGET_VAULT"


class _Summary(BaseModel):
    # Unknown fields are dropped: the stack output keeps only what is declared here.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TableRows(_Summary):
    rows: int
    seconds: float


class VaultFiles(_Summary):
    copied: int = 0
    skipped_identical: int = 0
    missing: int = 0
    pruned: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    # Why no file was copied (no production vault on this host), or None.
    skipped: str | None = None


class StackRunSummary(_Summary):
    """The run's summary: stdout of ``stack-run`` and, parsed, the dev stack's ``sampling_summary`` output."""

    loaded: bool
    reason: str | None = None
    source_stack: str | None = None
    seed: int | None = None
    fraction: float | None = None
    total_rows: int = 0
    seconds: float = 0.0
    tables: dict[str, TableRows] = Field(default_factory=dict)
    vault: VaultFiles | None = None
    finished_at: str | None = None


def parse_summary(stdout: str | None) -> dict[str, Any]:
    """The plain stack output from a run's stdout: only the declared fields, or why there is none."""
    if not stdout:
        return StackRunSummary(loaded=False, reason="the sampling run has not reported yet").model_dump()
    try:
        return StackRunSummary.model_validate_json(stdout.strip().splitlines()[-1]).model_dump()
    except (ValidationError, IndexError):
        return StackRunSummary(
            loaded=False, reason="the sampling run printed no readable summary (see docs/sampling-run.md)"
        ).model_dump()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _say(message: str, *secrets: str) -> None:
    print(mask_text(message, *secrets), file=sys.stderr, flush=True)


def _not_loaded(reason: str, source_stack: str | None) -> StackRunSummary:
    return StackRunSummary(loaded=False, reason=reason, source_stack=source_stack, finished_at=_now())


def _copy_vault(config: SamplingConfig, target_url: str) -> VaultFiles | None:
    source_vault = os.environ.get(SOURCE_VAULT_ENV, "")
    target_vault = os.environ.get(TARGET_VAULT_ENV, "")
    if not config.vault.enabled or not source_vault or not target_vault:
        return None
    if not Path(source_vault).is_dir():
        reason = f"the production vault {source_vault} is not a directory on this host; no file copied"
        _say(f"vault: {reason}")
        return VaultFiles(skipped=reason)
    options = config.vault
    # The target name of the source's posts table (with the source prefix, as target_name expects).
    source_posts = (config.schemas[0], config.mapping.source_prefix + "posts")
    posts_table = options.posts_table or ".".join(target_name(config, source_posts))
    summary = sync_vault(
        target_url,
        Path(source_vault),
        Path(target_vault),
        posts_table=posts_table,
        template=options.template,
        variant_suffix=options.variant_suffix or None,
        prune_extra=options.prune,
    )
    _say(
        f"vault: copied {summary.copied} files ({summary.bytes_copied:,} bytes), {summary.skipped_identical} "
        f"identical, {summary.missing_count} missing in production, {summary.pruned} pruned"
    )
    if summary.failed_count:
        raise VaultSyncError(
            f"{summary.failed_count} vault file(s) could not be copied, e.g. {'; '.join(summary.failed_sample)}"
        )
    return VaultFiles(
        copied=summary.copied,
        skipped_identical=summary.skipped_identical,
        missing=summary.missing_count,
        pruned=summary.pruned,
        bytes_copied=summary.bytes_copied,
        seconds=round(summary.seconds, 3),
    )


def stack_run(
    config: SamplingConfig,
    source_url: str,
    target_url: str,
    source_stack: str | None,
    *,
    source_wait: float,
    target_wait: float,
) -> StackRunSummary:
    """Sample and copy the vault files, or say why nothing was loaded; raise SamplingError on failure."""
    if not source_url:
        reason = os.environ.get(SOURCE_ABSENT_ENV) or f"{SOURCE_URL_ENV} is empty"
        return _not_loaded(f"no sample loaded: {reason}", source_stack)
    if not target_url:
        raise ConfigError(f"no development database: {TARGET_URL_ENV} is not set")
    check_database_url(target_url, "development", TARGET_URL_ENV)
    check_database_url(source_url, "production", SOURCE_URL_ENV)
    # The development database is this stack's own: not reaching it is a failure, not a skip.
    wait_until_accepting(target_url, target_wait, "development", variable=TARGET_URL_ENV)
    try:
        wait_until_accepting(source_url, source_wait, "production", variable=SOURCE_URL_ENV)
    except LoginRefused as refused:
        # Production is up and says the reader's password is wrong: a failure to fix, not a skip.
        raise SamplingError(
            f"{refused}. {SOURCE_URL_ENV} is the prod stack's sampling_source_url output: run "
            "`pulumi up --stack prod` (its grant-reader step sets the reader's password again), then "
            "`pulumi up --stack dev`"
        ) from None
    except SamplingError as error:
        return _not_loaded(f"no sample loaded: {error}", source_stack)
    started = time.monotonic()
    _say("sampling: loading the sample into the development database")
    result = run(config, source_url, target_url)
    _say(f"sampling: {result.total_rows:,} rows in {result.seconds:.2f} s")
    try:
        vault = _copy_vault(config, target_url)
    except psycopg.Error as error:
        raise SamplingError(
            "the sample was loaded, but the vault sync could not read the posts of the development database "
            f"{mask_url(target_url)} ({TARGET_URL_ENV}): {mask_url_in(str(error).strip(), target_url)}; "
            "check that its role may read the posts table (sampling.vault.posts_table)"
        ) from None
    except (VaultSyncError, OSError) as error:
        raise SamplingError(
            f"the sample was loaded, but the vault sync failed: {mask_url_in(str(error), target_url)}"
        ) from None
    root_fraction = config.roots[0].fraction if len({root.fraction for root in config.roots}) == 1 else None
    return StackRunSummary(
        loaded=True,
        source_stack=source_stack,
        seed=config.seed,
        fraction=root_fraction,
        total_rows=result.total_rows,
        seconds=round(time.monotonic() - started, 3),
        tables={
            name: TableRows(rows=t.rows, seconds=round(t.seconds, 3)) for name, t in result.tables.items()
        },
        vault=vault,
        finished_at=_now(),
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML sampling configuration")
    parser.add_argument("--seed", type=int, help="override the configuration's seed")
    parser.add_argument("--fraction", type=float, help="override every root's fraction")
    parser.add_argument("--source-stack", help="name of the stack production is read from (for the summary)")
    parser.add_argument(
        "--target-wait", type=float, default=180.0, help="seconds to wait for the dev database"
    )
    parser.add_argument("--source-wait", type=float, default=5.0, help="seconds to wait for production")


def _run(args: argparse.Namespace) -> int:
    source_url = os.environ.get(SOURCE_URL_ENV, "")
    target_url = os.environ.get(TARGET_URL_ENV, "")
    secrets = (url_password(source_url), url_password(target_url))
    try:
        config = with_overrides(load_config(args.config), seed=args.seed, fraction=args.fraction)
        summary = stack_run(
            config,
            source_url,
            target_url,
            args.source_stack,
            source_wait=args.source_wait,
            target_wait=args.target_wait,
        )
    except ConfigError as error:
        _say(f"error: {error}", *secrets)
        return ExitCode.USAGE
    except SamplingError as error:
        _say(f"error: {error}", *secrets)
        return ExitCode.FAILED
    if not summary.loaded:
        _say(f"warning: {summary.reason}", *secrets)
    print(mask_text(summary.model_dump_json(), *secrets), flush=True)
    return ExitCode.OK


COMMAND = Command(
    "stack-run",
    "sample and sync the vault, as the dev stack runs it (sampling.stack_run)",
    _add_arguments,
    _run,
    description="Sample production into development and copy the vault files, as the dev stack runs it. "
    f"URLs and vault paths come from ${SOURCE_URL_ENV}, ${TARGET_URL_ENV}, ${SOURCE_VAULT_ENV}, "
    f"${TARGET_VAULT_ENV}; prints one JSON summary line on stdout.",
)


def main(argv: list[str]) -> int:
    """``python -m sampling stack-run ARGS``: 0 done (or nothing to sample), 1 failure, 2 usage."""
    # Its errors carry secrets to mask: _run words them itself, so no exception is mapped here.
    return run_command("python -m sampling stack-run", COMMAND, argv, errors={})
