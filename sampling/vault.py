"""Copy the vault files of the sampled posts from the production vault to the development vault.

After a sampling run the development database holds a sample of production's posts; each post names
its artwork file through a few columns (by default ``{storage_shard}/{storage_key}.{format}``, 004 §5).
This module reads those columns from the *development* database, turns them into paths relative to
the vault, and copies each file (plus its ``_upscaled.webp`` variant when production has one) from the
production vault into the development vault.

How it works, top-down:

1. ``read_post_paths`` streams the posts table through a server-side cursor (rows arrive in batches;
   what is kept is one string per sampled file, which pruning needs) and renders each row through the
   path template.  The template may only name
   columns of the table, and every rendered path is untrusted database content: absolute paths and
   ``..`` are refused.
2. ``plan_sync`` compares source and target with rsync's quick check (same size and same mtime means
   identical; the copy preserves mtime so a second run skips everything) and refuses any source that
   is, or lies under, a symlink leading out of the production vault.  Nothing is written in this phase.
3. ``sync_vault`` checks the target's free space (at least twice the bytes to copy, 004 §5's margin),
   then copies in a thread pool.  Each file is written to a hidden temporary file in its target
   directory and renamed into place, so a killed run never leaves a half-written file under the real
   name.  ``prune`` then removes regular files of the development vault that are not in the sample.

The production vault is only ever opened for reading, and a target vault that is (or lies inside, or
contains) the source vault is refused.  ``main`` is the thin command line on top.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import os
import secrets
import shutil
import stat
import string
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from cli_support.commands import Command, ExitCode, run_command
from cli_support.database_urls import mask_url, mask_url_in, url_problem

DEFAULT_TEMPLATE = "{storage_shard}/{storage_key}.{format}"
DEFAULT_VARIANT_SUFFIX = "_upscaled.webp"
DEFAULT_POSTS_TABLE = "posts"
TARGET_URL_ENV = "SAMPLING_TARGET_URL"
FREE_SPACE_MARGIN = 2  # 004 §5: plan for twice the space the copy needs
MISSING_SAMPLE_SIZE = 10
TEMP_SUFFIX = ".vault-tmp"
# Files copied per thread-pool task: small files cost more in task overhead than in copying.
COPY_BATCH_SIZE = 64


class VaultSyncError(Exception):
    """A refusal or failure of the vault sync; the message says what is wrong and what to do."""


class TemplateError(VaultSyncError):
    """The path template or the posts table does not fit the database (unknown table or column)."""


class UnsafePathError(VaultSyncError):
    """A path built from database content would leave its vault."""


class VaultLayoutError(VaultSyncError):
    """The source and target vaults overlap, or a vault directory is unusable."""


class InsufficientSpaceError(VaultSyncError):
    """The target file system has less free space than the copy needs, with margin."""


class DiskUsage(Protocol):
    """What the free-space check needs of ``shutil.disk_usage``'s result."""

    @property
    def free(self) -> int: ...


DiskUsageFunction = Callable[[Path], DiskUsage]
ProgressCallback = Callable[[int, int], None]
"""Called after each batch of copies with (files done, bytes copied) for that batch."""


@dataclass(frozen=True)
class SampledPaths:
    """Relative vault paths of the sampled posts, deduplicated, with the count of rows that named none."""

    paths: list[str]
    rows_read: int
    rows_with_null: int


@dataclass(frozen=True)
class CopyTask:
    relative_path: str
    size: int


@dataclass
class SyncPlan:
    """What a sync would do; built without writing anything."""

    to_copy: list[CopyTask] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # Every relative path that belongs in the development vault (kept by --prune).
    wanted: set[str] = field(default_factory=set)

    @property
    def bytes_to_copy(self) -> int:
        return sum(task.size for task in self.to_copy)


@dataclass(frozen=True)
class VaultSyncSummary:
    copied: int
    skipped_identical: int
    missing_count: int
    missing_sample: tuple[str, ...]
    pruned: int
    bytes_copied: int
    seconds: float
    dry_run: bool
    posts_read: int
    posts_without_path: int
    failed_count: int = 0
    failed_sample: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "copied": self.copied,
            "skipped_identical": self.skipped_identical,
            "missing": {"count": self.missing_count, "sample": list(self.missing_sample)},
            "pruned": self.pruned,
            "bytes_copied": self.bytes_copied,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "posts_read": self.posts_read,
            "posts_without_path": self.posts_without_path,
            "failed": {"count": self.failed_count, "sample": list(self.failed_sample)},
        }


# --------------------------------------------------------------------------------------------------
# Reading the sampled posts


def template_fields(template: str) -> list[str]:
    """Column names the template uses, in order of first use; refuses positional and attribute access."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(f"path template {template!r} is not a valid format string: {exc}") from exc
    fields: list[str] = []
    for _literal, field_name, _spec, _conversion in parsed:
        if field_name is None:
            continue
        if field_name == "" or field_name.isdigit() or "." in field_name or "[" in field_name:
            raise TemplateError(
                f"path template {template!r}: field {{{field_name}}} must be a plain column name, "
                "like {storage_key}"
            )
        if field_name not in fields:
            fields.append(field_name)
    if not fields:
        raise TemplateError(f"path template {template!r} names no column; use e.g. {DEFAULT_TEMPLATE!r}")
    _check_template_stays_inside(template, fields)
    return fields


def _check_template_stays_inside(template: str, fields: list[str]) -> None:
    """Refuse a template whose own text leaves the vault (absolute, or a '..' part), whatever the rows hold.

    Without this, the first row would be blamed for what the template itself does.
    """
    try:
        example = positional_template(template, fields).format(*(["x"] * len(fields)))
    except (ValueError, TypeError, IndexError):
        return  # a format spec that needs a number: the rows decide, checked per row
    parts = example.split("/")
    if example.startswith("/") or ".." in parts:
        raise TemplateError(
            f"path template {template!r} itself leads out of the vault (e.g. {example!r}): a vault path "
            f"must be relative and without '..'; fix --template (sampling.vault.template in the sampling "
            f"configuration), e.g. {DEFAULT_TEMPLATE!r}"
        )


def positional_template(template: str, fields: list[str]) -> str:
    """The template with each column name replaced by its index in ``fields`` (``str.format(*row)``
    is much cheaper per row than ``format_map`` of a fresh dict)."""
    pieces: list[str] = []
    for literal, field_name, spec, conversion in string.Formatter().parse(template):
        pieces.append(literal.replace("{", "{{").replace("}", "}}"))
        if field_name is not None:
            pieces.append(
                "{"
                + str(fields.index(field_name))
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
    return "".join(pieces)


def table_identifier(table: str) -> sql.Identifier:
    """``posts`` or ``schema.posts`` as a quoted SQL identifier."""
    parts = table.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise TemplateError(f"posts table {table!r} must be 'table' or 'schema.table'")
    return sql.Identifier(*parts)


COLUMNS_QUERY = """
    SELECT attname
    FROM pg_catalog.pg_attribute
    WHERE attrelid = to_regclass(%(table)s) AND attnum > 0 AND NOT attisdropped
"""


def check_template_columns(conn: psycopg.Connection[TupleRow], table: str, fields: list[str]) -> None:
    identifier = table_identifier(table)
    rows = conn.execute(COLUMNS_QUERY, {"table": identifier.as_string(conn)}).fetchall()
    columns = {str(row[0]) for row in rows}
    if not columns:
        raise TemplateError(
            f"table {table!r} does not exist in the target database; pass --posts-table with its name "
            "(schema-qualified if needed)"
        )
    unknown = [name for name in fields if name not in columns]
    if unknown:
        raise TemplateError(
            f"path template field(s) {', '.join(unknown)} are not columns of table {table!r} "
            f"(columns: {', '.join(sorted(columns))}); fix --template"
        )


def safe_relative_path(rendered: str, table: str) -> str:
    """The normalised relative form of a path built from database content, or UnsafePathError."""
    if (
        rendered
        and "\x00" not in rendered
        and ".." not in rendered
        and "//" not in rendered
        and "./" not in rendered
        and rendered[0] != "/"
        and rendered[-1] not in "/."
    ):
        return rendered  # already normal and relative: the common case, checked cheaply
    if not rendered or "\x00" in rendered:
        raise UnsafePathError(f"table {table!r} yields an empty or NUL-containing vault path {rendered!r}")
    parts = [part for part in rendered.split("/") if part not in ("", ".")]
    if rendered.startswith("/") or ".." in parts:
        raise UnsafePathError(
            f"table {table!r} yields vault path {rendered!r}, which escapes the vault; "
            "nothing was copied — fix that row in the development database"
        )
    normal = "/".join(parts)
    if not normal:
        raise UnsafePathError(f"table {table!r} yields vault path {rendered!r}, which names no file")
    return normal


def variant_path(relative_path: str, suffix: str) -> str:
    """``a/b.png`` -> ``a/b_upscaled.webp`` (004 §5: drop the last extension, add the suffix)."""
    stem, dot, extension = relative_path.rpartition(".")
    if not dot or "/" in extension or stem == "" or stem.endswith("/"):
        stem = relative_path  # no extension (a leading dot is not one, as in posixpath.splitext)
    return stem + suffix


def iter_post_rows(
    conn: psycopg.Connection[TupleRow], table: str, fields: list[str], batch: int = 5000
) -> Iterator[TupleRow]:
    """Rows of the template's columns, streamed through a server-side cursor."""
    query = sql.SQL("SELECT {columns} FROM {table}").format(
        columns=sql.SQL(", ").join(sql.Identifier(name) for name in fields), table=table_identifier(table)
    )
    with conn.cursor(name="vault_sync_posts") as cursor:
        cursor.itersize = batch
        cursor.execute(query)
        yield from cursor


def read_post_paths(target_db_url: str, table: str, template: str) -> SampledPaths:
    """Relative vault paths of every post in the development database's ``table``."""
    fields = template_fields(template)
    by_position = positional_template(template, fields)
    paths: dict[str, None] = {}  # insertion-ordered set: copies follow the table's order
    rows_read = rows_with_null = 0
    with psycopg.connect(target_db_url) as conn:
        conn.read_only = True  # the sync never writes to any database
        check_template_columns(conn, table, fields)
        for row in iter_post_rows(conn, table, fields):
            rows_read += 1
            if None in row:
                rows_with_null += 1
                continue
            try:
                rendered = by_position.format(*row)
            except (ValueError, TypeError) as exc:
                raise TemplateError(
                    f"path template {template!r} cannot format a row of {table!r}: {exc}"
                ) from exc
            paths[safe_relative_path(rendered, table)] = None
    return SampledPaths(paths=list(paths), rows_read=rows_read, rows_with_null=rows_with_null)


# --------------------------------------------------------------------------------------------------
# Planning (read-only)


def check_vault_layout(source_vault: Path, target_vault: Path) -> tuple[Path, Path]:
    """Resolved (source, target); refuses a missing source and overlapping vaults."""
    if not source_vault.is_dir():
        raise VaultLayoutError(
            f"source vault {source_vault} is not a directory; pass the production vault path"
        )
    if target_vault.exists() and not target_vault.is_dir():
        raise VaultLayoutError(f"target vault {target_vault} exists and is not a directory")
    source = source_vault.resolve()
    target = target_vault.resolve()
    if source == target or target.is_relative_to(source) or source.is_relative_to(target):
        raise VaultLayoutError(
            f"target vault {target_vault} and source vault {source_vault} overlap ({target} vs {source}); "
            "the production vault is never written to — pass a separate development vault"
        )
    return source, target


class _InsideChecker:
    """Whether paths under a vault really lie inside it, following symlinks; cached per directory.

    Paths are plain strings here: this runs once or twice per file and pathlib would double its cost.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)  # already resolved: it contains no symlink itself
        self._directories: dict[str, bool] = {"": True}

    def _inside(self, relative: str) -> bool:
        full = os.path.join(self.root, relative)
        entry = _lstat(full)
        if entry is None or not stat.S_ISLNK(entry.st_mode):
            return True  # a real entry, or one that does not exist (and will be created as real)
        real = os.path.realpath(full)
        return real == self.root or real.startswith(self.root + os.sep)

    def directory_inside(self, relative_dir: str) -> bool:
        known = self._directories.get(relative_dir)
        if known is None:
            parent = relative_dir.rpartition("/")[0]
            known = self.directory_inside(parent) and self._inside(relative_dir)
            self._directories[relative_dir] = known
        return known

    def file_inside(self, relative_path: str, entry: os.stat_result) -> bool:
        """``entry`` is the file's lstat: a symlink is followed and checked too."""
        if not self.directory_inside(relative_path.rpartition("/")[0]):
            return False
        return not stat.S_ISLNK(entry.st_mode) or self._inside(relative_path)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _stat_following(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_identical(source: os.stat_result, target: os.stat_result | None) -> bool:
    """rsync's quick check: a regular target file with the same size and modification time."""
    return (
        target is not None
        and stat.S_ISREG(target.st_mode)
        and target.st_size == source.st_size
        and target.st_mtime_ns == source.st_mtime_ns
    )


def plan_sync(source: Path, target: Path, paths: Iterable[str], variant_suffix: str | None) -> SyncPlan:
    """Which files to copy, which are identical and which are missing; reads only.

    This is the whole of an unchanged run: two stat calls per file.  It runs in one thread on
    purpose: measured here, threads made it slower (the GIL changes hands on every short stat).
    """
    plan = SyncPlan()
    source_root, target_root = str(source), str(target)
    # Plain concatenation: os.path.join costs as much as a stat call here, and paths are normalised.
    source_prefix, target_prefix = source_root + "/", target_root + "/"
    source_check, target_check = _InsideChecker(source), _InsideChecker(target)

    def consider(relative: str, required: bool) -> None:
        if relative in plan.wanted:
            return
        source_path = source_prefix + relative
        source_stat = _lstat(source_path)
        if source_stat is None or not stat.S_ISREG(source_stat.st_mode):
            if source_stat is not None and stat.S_ISLNK(source_stat.st_mode):
                if not source_check.file_inside(relative, source_stat):
                    raise UnsafePathError(
                        f"source vault path {relative!r} is a symlink leading out of the source vault "
                        f"{source_root}; nothing was copied — remove that link in the production vault"
                    )
                source_stat = _stat_following(source_path)
            if source_stat is None or not stat.S_ISREG(source_stat.st_mode):
                if required:
                    plan.wanted.add(relative)  # a sampled post's file is kept in dev even if prod lost it
                    plan.missing.append(relative)
                return
        parent = relative.rpartition("/")[0]
        if not source_check.directory_inside(parent):
            raise UnsafePathError(
                f"source vault path {relative!r} lies under a symlink leading out of the source vault "
                f"{source_root}; nothing was copied — remove that link in the production vault"
            )
        if not target_check.directory_inside(parent):
            raise UnsafePathError(
                f"target vault directory {parent!r} is a symlink leading out of the target vault "
                f"{target_root}; nothing was copied — remove that link in the development vault"
            )
        plan.wanted.add(relative)
        if _is_identical(source_stat, _lstat(target_prefix + relative)):
            plan.identical.append(relative)
        else:
            plan.to_copy.append(CopyTask(relative, source_stat.st_size))

    for relative in paths:
        consider(relative, required=True)
        if variant_suffix:
            variant = variant_path(relative, variant_suffix)
            # access() answers "absent" without raising: most posts have no variant.
            if os.access(source_prefix + variant, os.F_OK, follow_symlinks=False):
                consider(variant, required=False)
    return plan


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(target: Path, bytes_needed: int, disk_usage: DiskUsageFunction) -> None:
    free = disk_usage(nearest_existing(target)).free
    if free < FREE_SPACE_MARGIN * bytes_needed:
        raise InsufficientSpaceError(
            f"target vault {target} has {free:,} bytes free but the copy needs {bytes_needed:,} bytes and "
            f"{FREE_SPACE_MARGIN}x that is required (004 §5 margin); nothing was copied — free space or "
            "sample fewer posts"
        )


# --------------------------------------------------------------------------------------------------
# Copying


def _copy_bytes(source_fd: int, target_fd: int) -> int:
    """Copy the whole of ``source_fd`` into ``target_fd`` in the kernel where possible; bytes copied."""
    copied = 0
    try:
        while sent := os.sendfile(target_fd, source_fd, copied, 1 << 24):
            copied += sent
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(target_fd, 0, os.SEEK_SET)
    os.ftruncate(target_fd, 0)
    copied = 0
    while chunk := os.pread(source_fd, 1 << 20, copied):
        os.write(target_fd, chunk)
        copied += len(chunk)
    return copied


class _Copier:
    """Copies files atomically: temp file in the target directory, then rename over the real name."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source = str(source)
        self.target = str(target)
        self._serial = itertools.count()  # unique temp names across threads (next() is atomic)
        # Temporary names are unique per run, so a file left by a killed run is never in the way.
        self._run_token = secrets.token_hex(4)
        self._made_directories: set[str] = set()  # saves a mkdir per file; a race only repeats one

    def copy(self, relative: str) -> int | None:
        """Bytes copied, or None when the source vanished since planning."""
        try:
            source_fd = os.open(os.path.join(self.source, relative), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            source_stat = os.fstat(source_fd)
            destination = os.path.join(self.target, relative)
            directory, name = os.path.split(destination)
            if directory not in self._made_directories:
                os.makedirs(directory, exist_ok=True)
                self._made_directories.add(directory)
            temp = os.path.join(directory, f".{name}.{self._run_token}.{next(self._serial)}{TEMP_SUFFIX}")
            target_fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            try:
                try:
                    copied = _copy_bytes(source_fd, target_fd)
                    os.fchmod(target_fd, stat.S_IMODE(source_stat.st_mode))
                    os.utime(target_fd, ns=(source_stat.st_atime_ns, source_stat.st_mtime_ns))
                finally:
                    os.close(target_fd)
                os.replace(temp, destination)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            return copied
        finally:
            os.close(source_fd)


@dataclass
class _BatchResult:
    copied: int = 0
    bytes_copied: int = 0
    vanished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _copy_batch(copier: _Copier, batch: Sequence[CopyTask]) -> _BatchResult:
    result = _BatchResult()
    for task in batch:
        try:
            copied = copier.copy(task.relative_path)
        except OSError as exc:
            result.failed.append(f"{task.relative_path}: {exc.strerror or exc}")
            continue
        if copied is None:
            result.vanished.append(task.relative_path)
        else:
            result.copied += 1
            result.bytes_copied += copied
    return result


def _batches(tasks: list[CopyTask], size: int) -> Iterator[list[CopyTask]]:
    for start in range(0, len(tasks), size):
        yield tasks[start : start + size]


def prune(target: Path, wanted: set[str], dry_run: bool) -> list[str]:
    """Remove regular files under ``target`` that are not in ``wanted``; returns their relative paths.

    Symlinks are never followed nor removed, so nothing outside the development vault can be touched.
    Directories left empty are removed too.
    """
    removed: list[str] = []
    for directory, _subdirs, filenames in os.walk(target, topdown=False, followlinks=False):
        relative_dir = os.path.relpath(directory, target)
        for name in filenames:
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            full = os.path.join(directory, name)
            if relative in wanted or not stat.S_ISREG(os.lstat(full).st_mode):
                continue
            removed.append(relative)
            if not dry_run:
                os.unlink(full)
        if not dry_run and relative_dir != "." and not os.path.islink(directory):
            # Bottom-up walk: subdirectories were pruned first.  rmdir only succeeds when empty.
            with contextlib.suppress(OSError):
                os.rmdir(directory)
    return removed


# --------------------------------------------------------------------------------------------------
# The whole sync


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) * 4)


def sync_vault(
    target_db_url: str,
    source_vault: Path,
    target_vault: Path,
    *,
    posts_table: str = DEFAULT_POSTS_TABLE,
    template: str = DEFAULT_TEMPLATE,
    variant_suffix: str | None = DEFAULT_VARIANT_SUFFIX,
    workers: int | None = None,
    prune_extra: bool = False,
    dry_run: bool = False,
    disk_usage: DiskUsageFunction = shutil.disk_usage,
    on_progress: ProgressCallback | None = None,
    on_plan: Callable[[SyncPlan], None] | None = None,
    on_dry_run_action: Callable[[str], None] | None = None,
) -> VaultSyncSummary:
    """Copy the vault files of the posts in the development database from source to target vault.

    ``on_plan`` sees the plan before anything is written; ``on_progress`` is called from this thread
    after each batch of copies; in a dry run ``on_dry_run_action`` receives one line per action.
    Raises VaultSyncError (nothing written) for a bad template, an unsafe path, overlapping vaults or
    too little free space; psycopg.Error when the database cannot be read.  Copy failures of single
    files do not stop the run: they are counted in the summary.
    """
    started = time.monotonic()
    source, target = check_vault_layout(source_vault, target_vault)
    sampled = read_post_paths(target_db_url, posts_table, template)
    plan = plan_sync(source, target, sampled.paths, variant_suffix)
    if on_plan is not None:
        on_plan(plan)
    check_free_space(target, plan.bytes_to_copy, disk_usage)

    copied = bytes_copied = 0
    vanished: list[str] = []
    failed: list[str] = []
    if dry_run:
        copied, bytes_copied = len(plan.to_copy), plan.bytes_to_copy
        if on_dry_run_action is not None:
            for copy_task in plan.to_copy:
                on_dry_run_action(f"would copy {copy_task.relative_path} ({copy_task.size} bytes)")
    elif plan.to_copy:
        target.mkdir(parents=True, exist_ok=True)
        copier = _Copier(source, target)
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            batches = _batches(plan.to_copy, COPY_BATCH_SIZE)
            try:
                for result in pool.map(lambda batch: _copy_batch(copier, batch), batches):
                    copied += result.copied
                    bytes_copied += result.bytes_copied
                    vanished.extend(result.vanished)
                    failed.extend(result.failed)
                    if on_progress is not None:
                        on_progress(
                            result.copied + len(result.vanished) + len(result.failed), result.bytes_copied
                        )
            except BaseException:
                # Ctrl-C: finish the batches under way (each file is atomic), start no more.
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    pruned = prune(target, plan.wanted, dry_run) if prune_extra and target.is_dir() else []
    if dry_run and on_dry_run_action is not None:
        for relative in pruned:
            on_dry_run_action(f"would prune {relative}")
    missing = plan.missing + vanished
    return VaultSyncSummary(
        copied=copied,
        skipped_identical=len(plan.identical),
        missing_count=len(missing),
        missing_sample=tuple(missing[:MISSING_SAMPLE_SIZE]),
        pruned=len(pruned),
        bytes_copied=bytes_copied,
        seconds=time.monotonic() - started,
        dry_run=dry_run,
        posts_read=sampled.rows_read,
        posts_without_path=sampled.rows_with_null,
        failed_count=len(failed),
        failed_sample=tuple(failed[:MISSING_SAMPLE_SIZE]),
    )


# --------------------------------------------------------------------------------------------------
# Command line


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target-db",
        metavar="URL",
        help=f"development database URL (default: ${TARGET_URL_ENV}; prefer the variable, argv is visible)",
    )
    parser.add_argument("--source-vault", type=Path, required=True, metavar="DIR", help="production vault")
    parser.add_argument("--target-vault", type=Path, required=True, metavar="DIR", help="development vault")
    parser.add_argument("--posts-table", default=DEFAULT_POSTS_TABLE, help="table of posts, e.g. dev_posts")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE, help="vault path of a post from its columns")
    parser.add_argument(
        "--variant-suffix",
        default=DEFAULT_VARIANT_SUFFIX,
        help="also copy this variant when it exists ('' to disable)",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel copy threads")
    parser.add_argument("--prune", action="store_true", help="remove development files not in the sample")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; write nothing")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


def _summary_line(summary: VaultSyncSummary) -> str:
    rate = summary.copied / summary.seconds if summary.seconds > 0 else 0.0
    verb = "would copy" if summary.dry_run else "copied"
    line = (
        f"vault sync: {verb} {summary.copied} files ({summary.bytes_copied:,} bytes), "
        f"{summary.skipped_identical} identical skipped, {summary.missing_count} missing, "
        f"{summary.pruned} {'to prune' if summary.dry_run else 'pruned'}, "
        f"{summary.seconds:.2f} s ({rate:,.0f} files/s)"
    )
    if summary.missing_count:
        line += f"\n  missing in the source vault, e.g.: {', '.join(summary.missing_sample)}"
    if summary.failed_count:
        line += f"\n  {summary.failed_count} copies FAILED, e.g.: {'; '.join(summary.failed_sample)}"
    if summary.posts_without_path:
        line += f"\n  {summary.posts_without_path} posts have NULL in a template column and name no file"
    return line


def _run(args: argparse.Namespace) -> int:
    stderr = Console(stderr=True, highlight=False)
    url = args.target_db or os.environ.get(TARGET_URL_ENV, "")
    if args.target_db and mask_url(args.target_db) != args.target_db:
        stderr.print(
            f"warning: --target-db carries a password, visible to every user in the process list; "
            f"set {TARGET_URL_ENV} instead",
            markup=False,
        )
    if not url:
        stderr.print(
            f"error: no development database: pass --target-db or set {TARGET_URL_ENV}", markup=False
        )
        return ExitCode.USAGE
    problem = url_problem(url)
    if problem is not None:
        setting = "--target-db" if args.target_db else TARGET_URL_ENV
        stderr.print(f"error: {setting}: the development database URL is malformed: {problem}", markup=False)
        return ExitCode.USAGE
    if args.workers is not None and args.workers < 1:
        stderr.print("error: --workers must be at least 1", markup=False)
        return ExitCode.USAGE

    progress = Progress(
        TextColumn("vault sync"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[bytes]}"),
        TextColumn("{task.fields[rate]} files/s"),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )
    task = progress.add_task("copy", total=None, bytes="0 bytes", rate="0")
    started = time.monotonic()
    files_done = bytes_done = 0

    def on_plan(plan: SyncPlan) -> None:
        progress.update(task, total=len(plan.to_copy))

    def on_progress(files: int, bytes_copied: int) -> None:
        nonlocal files_done, bytes_done
        files_done += files
        bytes_done += bytes_copied
        rate = files_done / max(time.monotonic() - started, 1e-6)
        progress.update(task, completed=files_done, bytes=decimal(bytes_done), rate=f"{rate:,.0f}")

    def on_dry_run_action(line: str) -> None:
        # With --json, stdout carries only the summary.
        print(line, file=sys.stderr if args.json else sys.stdout)

    try:
        with progress:
            summary = sync_vault(
                url,
                args.source_vault,
                args.target_vault,
                posts_table=args.posts_table,
                template=args.template,
                variant_suffix=args.variant_suffix or None,
                workers=args.workers,
                prune_extra=args.prune,
                dry_run=args.dry_run,
                on_progress=on_progress,
                on_plan=on_plan,
                on_dry_run_action=on_dry_run_action,
            )
    except psycopg.Error as exc:
        setting = "--target-db" if args.target_db else TARGET_URL_ENV
        stderr.print(
            f"error: reading table {args.posts_table!r} of the development database {mask_url(url)} "
            f"(from {setting}) failed: {mask_url_in(str(exc).strip(), url)}; check {setting}, that the "
            "database is running and that its role may read the table (--posts-table)",
            markup=False,
        )
        return ExitCode.FAILED
    except (VaultSyncError, OSError) as exc:
        stderr.print(f"error: {mask_url_in(str(exc), url)}", markup=False)
        return ExitCode.FAILED
    stderr.print(_summary_line(summary), markup=False)
    if args.json:
        print(json.dumps(summary.to_json()))
    return ExitCode.FAILED if summary.failed_count else ExitCode.OK


COMMAND = Command(
    "vault",
    "copy the vault files of sampled posts (see sampling.vault)",
    _add_arguments,
    _run,
    description="Copy the vault files of the sampled posts from the production vault to the development "
    "vault. Reads the development database's posts; never writes to the production vault.",
)


def main(argv: list[str]) -> int:
    """``python -m sampling vault ARGS``: 0 ok, 1 failure, 2 usage."""
    # Its errors carry the database URL to mask: _run words them itself.
    return run_command("python -m sampling vault", COMMAND, argv, errors={})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
