"""Parallel reads of the downward selections: several source connections on one snapshot.

The target load stays one transaction on one connection, so its COPYs run one after another.
What runs in parallel is the source's work — each selection's scans, CTEs and hash joins — on
helper connections that share the main source transaction's snapshot (``pg_export_snapshot`` /
``SET TRANSACTION SNAPSHOT``), so every table is still read as of one instant.

The main thread streams one table at a time straight from the main source connection into the
target (no copy in between).  Each helper thread takes the next table not yet started, reads its
``COPY ... TO STDOUT`` into a spool file (``SPOOL_MEMORY`` in memory, the rest on disk, so client
memory stays bounded) and hands it over; the main thread loads finished spools as they come.
On any error or interruption the helpers' running statements are cancelled on the server.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import IO, Generic, TypeVar

from psycopg import sql

from sampling.session import Connection, cancel_running

Key = TypeVar("Key")

#: Bytes of one helper's spool kept in memory before it moves to a temporary file.
SPOOL_MEMORY = 4 * 1024 * 1024
#: Bytes handed to the target's COPY per write when loading a spool.
SPOOL_READ = 256 * 1024


@dataclass
class _Read(Generic[Key]):
    """A query read by a helper: its spooled COPY data, or the error that stopped the read."""

    name: Key
    spool: IO[bytes] | None
    error: BaseException | None
    seconds: float


def spool_chunks(spool: IO[bytes]) -> Iterable[bytes]:
    """The spooled COPY data from the start, in pieces (COPY FROM accepts the stream cut anywhere)."""
    spool.seek(0)
    while chunk := spool.read(SPOOL_READ):
        yield chunk


def read_in_parallel(
    order: list[Key],
    copy_out: Callable[[Key], sql.Composed],
    helpers: list[Connection],
    stream: Callable[[Key], object],
    load: Callable[[Key, Iterable[bytes], float], object],
) -> None:
    """Load every query of ``order``: ``stream(key)`` on the main connection, or ``load(key, chunks,
    source_seconds)`` of what a helper read with ``copy_out(key)`` (a ``COPY ... TO STDOUT``)."""
    todo = deque(order)
    lock = threading.Lock()
    finished: queue.Queue[_Read[Key]] = queue.Queue()

    def take() -> Key | None:
        with lock:
            return todo.popleft() if todo else None

    def helper(conn: Connection) -> None:
        while (name := take()) is not None:
            started = time.monotonic()
            spool: IO[bytes] = SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - handed over
            try:
                with conn.cursor() as cur, cur.copy(copy_out(name)) as out:
                    for chunk in out:
                        spool.write(chunk)
            except BaseException as error:  # handed to the main thread, which raises it
                spool.close()
                finished.put(_Read(name, None, error, 0.0))
                return
            finished.put(_Read(name, spool, None, time.monotonic() - started))

    threads = [threading.Thread(target=helper, args=(conn,), daemon=True) for conn in helpers]
    for thread in threads:
        thread.start()
    remaining = len(order)
    try:
        while remaining:
            try:
                read = finished.get_nowait()
            except queue.Empty:
                name = take()
                if name is not None:
                    stream(name)
                    remaining -= 1
                    continue
                read = _wait(finished)
            remaining -= 1
            if read.error is not None:
                raise read.error
            assert read.spool is not None
            with read.spool:
                load(read.name, spool_chunks(read.spool), read.seconds)
    finally:
        with lock:
            todo.clear()  # helpers take nothing more
        for conn in helpers:
            cancel_running(conn)  # a no-op for an idle helper
        for thread in threads:
            thread.join()
        while not finished.empty():
            leftover = finished.get_nowait()
            if leftover.spool is not None:
                with suppress(OSError):
                    leftover.spool.close()


def _wait(finished: queue.Queue[_Read[Key]]) -> _Read[Key]:
    """The next finished read; waits in short steps so Ctrl-C and SIGTERM are seen at once."""
    while True:
        with suppress(queue.Empty):
            return finished.get(timeout=0.2)
