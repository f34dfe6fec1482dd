"""Backups of an environment's database with ``pg_dump -Fc``, and restoring one in one transaction.

A backup is written under a temporary name in the backup directory, flushed to disk and only
then given its final name ``<database>-<UTC timestamp>.pgdump``, so a crash never leaves a
half-written file that looks like a backup.  Retention deletes only files of that exact
pattern, for the same database, beyond the newest N.

An interrupted backup leaves nothing running and, as far as it can, nothing behind: pg_dump runs in
the backup's process group and is told by the kernel to stop when the backup dies (even by
SIGKILL); on SIGTERM, SIGINT or a failure the backup stops pg_dump and removes its partial file.
A partial file a SIGKILL left behind is removed by the next backup, which holds the directory's
lock (``flock`` on the directory), so no other backup can be writing it.

A restore replays the dump through ``psql`` in a single transaction that first empties the
database (see ``restore_prelude.sql``) and is committed only after ``pg_restore`` read the
whole dump without error: a missing, foreign, truncated or corrupt dump leaves the database
exactly as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from cli_support.database_urls import mask_url
from cli_support.readiness import wait_for_connection
from ops.errors import OpsError
from ops.pgenv import connection_parameters, libpq_environment

DATABASE_URL_VARIABLE = "OPS_DATABASE_URL"
PG_BIN_VARIABLE = "OPS_PG_BIN"
DEFAULT_KEEP = 7

_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_BACKUP_NAME = re.compile(r"^(?P<database>[A-Za-z0-9_.-]+)-(?P<stamp>\d{8}T\d{6}Z)\.pgdump$")
_CUSTOM_FORMAT_MAGIC = b"PGDMP"
_PRELUDE_SQL = Path(__file__).with_name("restore_prelude.sql")
# A restore that waits this long for a lock (a running api holding one) fails instead of hanging.
_RESTORE_LOCK_TIMEOUT = "60s"
_COPY_CHUNK = 1 << 20
_PARTIAL_PREFIX, _PARTIAL_SUFFIX = ".backup-", ".pgdump.partial"
# What mkstemp makes of them: only these are ever removed as stale (other hidden files are not ours).
_PARTIAL_NAME = re.compile(r"^\.backup-[a-z0-9_]{8}\.pgdump\.partial$")
# prctl(2) option: the signal the kernel sends a child when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class BackupFile:
    path: Path
    database: str
    created_at: datetime


@dataclass(frozen=True)
class BackupResult:
    backup: BackupFile
    size_bytes: int
    deleted: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "backup": str(self.backup.path),
            "database": self.backup.database,
            "created_at": self.backup.created_at.isoformat(),
            "size_bytes": self.size_bytes,
            "deleted": [str(path) for path in self.deleted],
        }


@dataclass(frozen=True)
class RestoreResult:
    backup: Path
    database: str

    def summary(self) -> dict[str, object]:
        return {"restored": str(self.backup), "database": self.database}


def database_url_from_environment(environ: dict[str, str] | None = None) -> str:
    """The URL of the database to back up or restore, from ``OPS_DATABASE_URL`` (never from argv)."""
    url = (os.environ if environ is None else environ).get(DATABASE_URL_VARIABLE, "")
    if not url:
        raise OpsError(
            f"environment variable {DATABASE_URL_VARIABLE} is not set: export the database URL there "
            "(it is never taken from the command line, where other users could read the password)"
        )
    return url


def find_program(name: str, pg_bin: Path | None) -> Path:
    """``name`` in ``pg_bin``, else in ``$OPS_PG_BIN``, else on PATH."""
    directory = pg_bin or (Path(os.environ[PG_BIN_VARIABLE]) if os.environ.get(PG_BIN_VARIABLE) else None)
    if directory is not None:
        program = directory / name
        if not os.access(program, os.X_OK):
            raise OpsError(f"{program}: no executable {name} there; check --pg-bin or {PG_BIN_VARIABLE}")
        return program
    found = shutil.which(name)
    if found is None:
        raise OpsError(f"{name} is not on PATH; install the PostgreSQL client or pass --pg-bin DIR")
    return Path(found)


def backup_name(database: str, created_at: datetime) -> str:
    """``<database>-<UTC timestamp>.pgdump``; characters unsafe in a file name become ``_``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)
    return f"{safe}-{created_at.astimezone(UTC).strftime(_STAMP_FORMAT)}.pgdump"


def list_backups(directory: Path, database: str | None = None) -> list[BackupFile]:
    """The backups in ``directory`` (of ``database`` only, if given), newest first.

    Only names of the exact backup pattern count; any other file is not a backup and is ignored.
    """
    safe = None if database is None else re.sub(r"[^A-Za-z0-9_.-]", "_", database)
    backups = []
    for entry in directory.iterdir():
        match = _BACKUP_NAME.match(entry.name)
        if match is None or not entry.is_file() or (safe is not None and match["database"] != safe):
            continue
        created_at = datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=UTC)
        backups.append(BackupFile(entry, match["database"], created_at))
    return sorted(backups, key=lambda backup: backup.created_at, reverse=True)


def wait_for_server(url: str, seconds: float, *, interval: float = 1.0) -> None:
    """Return once the database at ``url`` accepts a connection; fail after ``seconds``.

    A deploy starts the backup right after creating a fresh database container, which needs a few
    seconds before it accepts connections.
    """
    connection_parameters(url, DATABASE_URL_VARIABLE)  # a malformed URL is an error at once, not a wait
    last_error = wait_for_connection(url, seconds, interval=interval)
    if last_error is not None:
        raise OpsError(
            f"{mask_url(url)} did not accept a connection within {seconds:g} s: {last_error}; "
            "no backup was written"
        )


def pg_dump_command(pg_dump: Path, target: Path) -> list[str]:
    """The pg_dump argv: connection parameters come from the environment, never from here."""
    return [str(pg_dump), "--format=custom", "--no-password", f"--file={target}"]


def backup_database(
    url: str,
    directory: Path,
    *,
    keep: int = DEFAULT_KEEP,
    pg_bin: Path | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Dump the database at ``url`` into ``directory`` and keep only its ``keep`` newest backups."""
    if keep < 1:
        raise OpsError(f"--keep must be at least 1 (got {keep}): the backup just taken is always kept")
    database = connection_parameters(url, DATABASE_URL_VARIABLE)["dbname"]
    environment = libpq_environment(url, DATABASE_URL_VARIABLE)
    pg_dump = find_program("pg_dump", pg_bin)
    _make_backup_directory(directory)
    with _directory_lock(directory), _stopped_by_sigterm():
        _remove_stale_partials(directory)
        created_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        final = directory / backup_name(database, created_at)
        if final.exists():
            raise OpsError(f"{final}: a backup of that name exists already; wait a second and retry")

        # mkstemp makes the file 0600: a dump holds every row of production.
        handle, temporary_name = tempfile.mkstemp(dir=directory, prefix=_PARTIAL_PREFIX, suffix=_PARTIAL_SUFFIX)
        os.close(handle)
        temporary = Path(temporary_name)
        try:
            returncode, errors = _run_pg_dump(pg_dump_command(pg_dump, temporary), environment)
            if returncode != 0:
                raise OpsError(
                    f"pg_dump of {mask_url(url)} failed (exit {returncode}): "
                    f"{mask_url(errors.strip())}; no backup was written"
                )
            with temporary.open("rb") as written:
                os.fsync(written.fileno())
            # link() refuses to replace an existing file, unlike rename(): no backup is ever overwritten.
            os.link(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(directory)

    backups = list_backups(directory, database)
    deleted = []
    for old in backups[keep:]:
        old.path.unlink()
        deleted.append(old.path)
    if deleted:
        _fsync_directory(directory)
    return BackupResult(BackupFile(final, database, created_at), final.stat().st_size, deleted)


class BackupInterrupted(OpsError):
    """SIGTERM arrived during a backup: pg_dump was stopped and its partial file removed."""


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception, so the cleanup below runs (Python's default just exits)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; a caller there decides
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise BackupInterrupted(f"stopped by signal {signal.Signals(signum).name}; no backup was written")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the backup process dies (Linux)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the backup died before prctl took effect
        os._exit(1)


def _run_pg_dump(command: list[str], environment: dict[str, str]) -> tuple[int, str]:
    """pg_dump in this process group; stopped (and waited for) if this process is interrupted."""
    child = subprocess.Popen(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,  # only the main thread starts children in this process
    )
    try:
        _, errors = child.communicate()
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    return child.returncode, errors or ""


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """One backup at a time per directory (flock on the directory itself); the kernel releases it when
    the process dies, so a killed backup never blocks the next."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OpsError(
                f"--dir {directory}: another backup is running there (it holds the directory's lock); "
                "wait for it"
            ) from None
        yield
    finally:
        os.close(descriptor)


def _remove_stale_partials(directory: Path) -> list[Path]:
    """Partial files of backups that were killed (under the lock, no backup is writing any)."""
    stale = [
        entry
        for entry in directory.iterdir()
        if _PARTIAL_NAME.match(entry.name) and entry.is_file()
    ]
    for entry in stale:
        entry.unlink(missing_ok=True)
    return stale


def _make_backup_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise OpsError(
            f"--dir {directory}: exists and is not a directory; pass a directory (release.backup_dir)"
        ) from None
    except OSError as error:
        raise OpsError(
            f"--dir {directory}: cannot create the backup directory ({error.strerror or error}); create it "
            "as a user this command runs as, with room for the dumps, or pass another --dir "
            "(release.backup_dir in the stack file); no backup was written"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OpsError(
            f"--dir {directory}: this user cannot write there; give it write permission or pass another "
            "--dir (release.backup_dir in the stack file); no backup was written"
        )


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def choose_backup(directory: Path, database: str, named: Path | None) -> Path:
    """The named backup, or the newest backup of ``database`` in ``directory``."""
    if named is not None:
        chosen = named if named.is_absolute() or named.exists() else directory / named
        if not chosen.is_file():
            raise OpsError(f"{named}: no such backup file (looked in the current directory and {directory})")
        return chosen
    if not directory.is_dir():
        raise OpsError(f"{directory}: backup directory does not exist")
    backups = list_backups(directory, database)
    if not backups:
        raise OpsError(f"{directory}: no backup of database {database!r} (files named {database}-*.pgdump)")
    return backups[0].path


def check_custom_format(backup: Path, pg_restore: Path) -> None:
    """Refuse anything but a readable ``pg_dump -Fc`` archive, before the database is touched."""
    with backup.open("rb") as file:
        magic = file.read(len(_CUSTOM_FORMAT_MAGIC))
    if magic != _CUSTOM_FORMAT_MAGIC:
        raise OpsError(
            f"{backup}: not a pg_dump custom-format archive (made with pg_dump -Fc); nothing restored"
        )
    listed = subprocess.run(
        [str(pg_restore), "--list", str(backup)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=libpq_free_environment(),
    )
    if listed.returncode != 0:
        raise OpsError(f"{backup}: unreadable archive ({listed.stderr.strip()}); nothing restored")


def libpq_free_environment() -> dict[str, str]:
    """This process's environment without PG* variables, for programs that connect nowhere."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def pg_restore_script_command(pg_restore: Path, backup: Path) -> list[str]:
    """pg_restore writing the SQL script of ``backup`` to stdout (it connects nowhere itself)."""
    return [str(pg_restore), "--clean", "--if-exists", "--no-owner", "--file=-", str(backup)]


def psql_command(psql: Path) -> list[str]:
    """psql reading the restore script from stdin; the database comes from the PG* environment."""
    return [str(psql), "--no-psqlrc", "--no-password", "--quiet", "--set=ON_ERROR_STOP=1"]


def restore_database(
    url: str, directory: Path, *, backup: Path | None = None, pg_bin: Path | None = None
) -> RestoreResult:
    """Replace the contents of the database at ``url`` by a backup, all or nothing."""
    database = connection_parameters(url, DATABASE_URL_VARIABLE)["dbname"]
    environment = libpq_environment(url, DATABASE_URL_VARIABLE)
    pg_restore = find_program("pg_restore", pg_bin)
    psql = find_program("psql", pg_bin)
    chosen = choose_backup(directory, database, backup)
    check_custom_format(chosen, pg_restore)

    with tempfile.TemporaryFile("w+") as restore_errors, tempfile.TemporaryFile("w+") as psql_errors:
        target = subprocess.Popen(
            psql_command(psql),
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_errors,
        )
        assert target.stdin is not None
        source = subprocess.Popen(
            pg_restore_script_command(pg_restore, chosen),
            env=libpq_free_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=restore_errors,
        )
        assert source.stdout is not None
        committed = _stream_in_one_transaction(source.stdout, target.stdin, source)
        target.wait()
        if not committed or target.returncode != 0:
            source.kill()
            source.wait()
            reasons = [_read(restore_errors), _read(psql_errors)]
            detail = "; ".join(mask_url(reason) for reason in reasons if reason) or "no message"
            raise OpsError(
                f"restore of {chosen} into {mask_url(url)} failed and was rolled back, "
                f"the database is unchanged: {detail}"
            )
    return RestoreResult(chosen, database)


def _stream_in_one_transaction(
    script: IO[bytes], psql_input: IO[bytes], source: subprocess.Popen[bytes]
) -> bool:
    """Feed prelude and script to psql inside BEGIN; send COMMIT only if pg_restore succeeded.

    Without COMMIT, psql reaches end of input inside the open transaction and disconnects, and
    the server rolls everything back.  Returns whether COMMIT was sent.
    """
    try:
        psql_input.write(b"BEGIN;\n")
        psql_input.write(f"SET LOCAL lock_timeout = '{_RESTORE_LOCK_TIMEOUT}';\n".encode())
        psql_input.write(b"SET LOCAL client_min_messages = warning;\n")  # no NOTICE per dropped object
        psql_input.write(_PRELUDE_SQL.read_bytes())
        while chunk := script.read(_COPY_CHUNK):
            psql_input.write(chunk)
        if source.wait() != 0:
            return False
        psql_input.write(b"COMMIT;\n")
        return True
    except BrokenPipeError:  # psql stopped at an error (ON_ERROR_STOP): nothing was committed
        return False
    finally:
        with contextlib.suppress(BrokenPipeError):
            psql_input.close()


def _read(file: IO[str]) -> str:
    file.seek(0)
    return file.read().strip()
