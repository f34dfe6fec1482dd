"""sampling.vault against real files in temporary vaults and a real PostgreSQL posts table."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from sampling import vault
from sampling.vault import (
    InsufficientSpaceError,
    TemplateError,
    UnsafePathError,
    VaultLayoutError,
    safe_relative_path,
    sync_vault,
)

Post = tuple[str | None, str | None, str | None]  # (storage_shard, storage_key, format)


def create_posts(url: str, posts: Sequence[Post], table: str = "posts") -> None:
    parts = table.split(".")
    with psycopg.connect(url, autocommit=True) as conn:
        if len(parts) == 2:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(parts[0])))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id serial PRIMARY KEY, storage_shard text, storage_key text, format text)"
            ).format(sql.Identifier(*parts))
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (storage_shard, storage_key, format) VALUES (%s, %s, %s)").format(
                    sql.Identifier(*parts)
                ),
                posts,
            )


def write(path: Path, content: bytes, mtime: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every regular file under root (not following symlinks): relative path -> (sha256, mtime_ns)."""
    if not root.exists():
        return {}
    state = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            full = Path(directory, name)
            if full.is_symlink():
                continue
            state[str(full.relative_to(root))] = (
                hashlib.sha256(full.read_bytes()).hexdigest(),
                full.stat().st_mtime_ns,
            )
    return state


@pytest.fixture
def vaults(tmp_path: Path) -> SimpleNamespace:
    """A production vault with two sampled posts (one with an upscaled variant) and one unsampled."""
    source = tmp_path / "prod-vault"
    write(source / "ab/k1.png", b"png one" * 100, mtime=1_600_000_000)
    write(source / "ab/k1_upscaled.webp", b"webp one" * 300, mtime=1_600_000_100)
    write(source / "cd/k2.gif", b"gif two" * 50, mtime=1_600_000_200)
    write(source / "ef/unsampled.png", b"not in the sample", mtime=1_600_000_300)
    return SimpleNamespace(source=source, target=tmp_path / "dev-vault", tmp=tmp_path)


SAMPLED: list[Post] = [("ab", "k1", "png"), ("cd", "k2", "gif")]


@pytest.fixture
def posts_url(make_database: Callable[[], str]) -> str:
    url = make_database()
    create_posts(url, SAMPLED)
    return url


def test_copies_sampled_files_and_upscaled_variant_with_content_mode_and_mtime(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    os.chmod(vaults.source / "cd/k2.gif", 0o640)
    summary = sync_vault(posts_url, vaults.source, vaults.target)

    assert sorted(tree_state(vaults.target)) == ["ab/k1.png", "ab/k1_upscaled.webp", "cd/k2.gif"]
    source_state = tree_state(vaults.source)
    for relative, content_and_mtime in tree_state(vaults.target).items():
        assert content_and_mtime == source_state[relative]
    assert (vaults.target / "cd/k2.gif").stat().st_mode & 0o777 == 0o640
    assert summary.copied == 3
    assert summary.bytes_copied == sum((vaults.source / p).stat().st_size for p in tree_state(vaults.target))
    assert summary.missing_count == 0
    assert summary.posts_read == 2
    assert not [p for p in vaults.target.rglob("*") if p.name.endswith(vault.TEMP_SUFFIX)]


def test_second_run_skips_identical_files_and_recopies_a_changed_one(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    sync_vault(posts_url, vaults.source, vaults.target)
    second = sync_vault(posts_url, vaults.source, vaults.target)
    assert (second.copied, second.skipped_identical, second.bytes_copied) == (0, 3, 0)

    # Same size, new content and mtime: the quick check sees the mtime and copies again.
    changed = write(vaults.source / "ab/k1.png", b"PNG ONE" * 100, mtime=1_700_000_000)
    third = sync_vault(posts_url, vaults.source, vaults.target)
    assert (third.copied, third.skipped_identical) == (1, 2)
    assert (vaults.target / "ab/k1.png").read_bytes() == changed.read_bytes()


def test_missing_sources_are_counted_with_a_sample_and_the_rest_is_copied(
    make_database: Callable[[], str], vaults: SimpleNamespace
) -> None:
    url = make_database()
    gone = [("zz", f"gone{i:02d}", "png") for i in range(12)]
    create_posts(url, [*SAMPLED, *gone])
    summary = sync_vault(url, vaults.source, vaults.target)
    assert summary.missing_count == 12
    assert len(summary.missing_sample) == vault.MISSING_SAMPLE_SIZE
    assert set(summary.missing_sample) <= {f"zz/gone{i:02d}.png" for i in range(12)}
    assert summary.copied == 3


def test_prune_removes_only_regular_files_outside_the_sample_and_never_follows_symlinks(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    stale = write(vaults.target / "old/stale.png", b"left from an earlier sample")
    stale_variant = write(vaults.target / "cd/k2_upscaled.webp", b"prod has no such variant any more")
    outside = write(vaults.tmp / "elsewhere/precious.txt", b"must survive")
    (vaults.target / "link-out").symlink_to(outside.parent, target_is_directory=True)

    without = sync_vault(posts_url, vaults.source, vaults.target)
    assert without.pruned == 0 and stale.exists()

    summary = sync_vault(posts_url, vaults.source, vaults.target, prune_extra=True)
    assert summary.pruned == 2
    assert not stale.exists() and not stale_variant.exists()
    assert not (vaults.target / "old").exists()  # emptied directory removed
    assert outside.read_bytes() == b"must survive"
    assert (vaults.target / "link-out").is_symlink()
    assert sorted(tree_state(vaults.target)) == ["ab/k1.png", "ab/k1_upscaled.webp", "cd/k2.gif"]


def test_dry_run_writes_nothing_and_lists_what_it_would_do(
    posts_url: str, vaults: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    write(vaults.target / "old/stale.png", b"stale")
    before = tree_state(vaults.target)
    code = vault.main(
        [
            "--target-db",
            posts_url,
            "--source-vault",
            str(vaults.source),
            "--target-vault",
            str(vaults.target),
            "--prune",
            "--dry-run",
        ]
    )
    assert code == 0
    assert tree_state(vaults.target) == before
    out = capsys.readouterr().out
    assert "would copy ab/k1.png" in out and "would copy ab/k1_upscaled.webp" in out
    assert "would prune old/stale.png" in out

    # With --json, stdout carries only the summary; the action lines move to stderr.
    args = [
        "--target-db",
        posts_url,
        "--source-vault",
        str(vaults.source),
        "--target-vault",
        str(vaults.target),
    ]
    assert vault.main([*args, "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert (report["dry_run"], report["copied"], report["bytes_copied"] > 0) == (True, 3, True)
    assert "would copy cd/k2.gif" in captured.err
    assert tree_state(vaults.target) == before


def test_free_space_under_twice_the_copy_is_refused_before_writing(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    needed = sum(
        (vaults.source / p).stat().st_size for p in ["ab/k1.png", "ab/k1_upscaled.webp", "cd/k2.gif"]
    )
    seen: list[Path] = []

    def tight(path: Path) -> SimpleNamespace:
        seen.append(path)
        return SimpleNamespace(total=10**9, used=0, free=2 * needed - 1)

    with pytest.raises(InsufficientSpaceError, match=f"{needed:,} bytes"):
        sync_vault(posts_url, vaults.source, vaults.target, disk_usage=tight)
    assert not vaults.target.exists()
    assert seen == [vaults.tmp]  # the target does not exist yet: its nearest existing parent is asked

    summary = sync_vault(
        posts_url, vaults.source, vaults.target, disk_usage=lambda _: SimpleNamespace(free=2 * needed)
    )
    assert summary.copied == 3


@pytest.mark.parametrize("layout", ["same", "target inside source", "source inside target"])
def test_overlapping_vaults_are_refused(posts_url: str, vaults: SimpleNamespace, layout: str) -> None:
    source, target = {
        "same": (vaults.source, vaults.source),
        "target inside source": (vaults.source, vaults.source / "dev"),
        "source inside target": (vaults.source, vaults.source.parent),
    }[layout]
    before = tree_state(vaults.tmp)
    with pytest.raises(VaultLayoutError, match="overlap"):
        sync_vault(posts_url, source, target)
    assert tree_state(vaults.tmp) == before


def test_a_target_vault_symlinked_to_the_source_is_refused(posts_url: str, vaults: SimpleNamespace) -> None:
    sneaky = vaults.tmp / "dev-link"
    sneaky.symlink_to(vaults.source, target_is_directory=True)
    with pytest.raises(VaultLayoutError):
        sync_vault(posts_url, vaults.source, sneaky)


@pytest.mark.parametrize(
    "post",
    [("..", "..", "png"), ("ab/../..", "escape", "png"), ("/etc", "passwd", "x"), ("", "/abs", "png")],
)
def test_paths_escaping_the_vault_are_refused_and_nothing_is_written(
    make_database: Callable[[], str], vaults: SimpleNamespace, post: Post
) -> None:
    url = make_database()
    create_posts(url, [*SAMPLED, post])
    with pytest.raises(UnsafePathError, match="escapes the vault"):
        sync_vault(url, vaults.source, vaults.target)
    assert not vaults.target.exists()


def test_a_source_symlink_leading_out_of_the_production_vault_is_refused(
    make_database: Callable[[], str], vaults: SimpleNamespace
) -> None:
    secret = write(vaults.tmp / "secrets/key.png", b"not for dev")
    (vaults.source / "ln").mkdir()
    (vaults.source / "ln/evil.png").symlink_to(secret)
    url = make_database()
    create_posts(url, [*SAMPLED, ("ln", "evil", "png")])
    with pytest.raises(UnsafePathError, match="symlink"):
        sync_vault(url, vaults.source, vaults.target)
    assert not vaults.target.exists()


def test_a_target_directory_symlinked_into_production_is_refused_and_production_is_unchanged(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    vaults.target.mkdir()
    (vaults.target / "ab").symlink_to(vaults.source / "ef", target_is_directory=True)
    before = tree_state(vaults.source)
    with pytest.raises(UnsafePathError, match="symlink"):
        sync_vault(posts_url, vaults.source, vaults.target)
    assert tree_state(vaults.source) == before


def test_the_source_vault_is_unchanged_by_a_full_sync_with_prune(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    before = tree_state(vaults.source)
    modes = {p: p.stat().st_mode for p in vaults.source.rglob("*")}
    sync_vault(posts_url, vaults.source, vaults.target, prune_extra=True)
    sync_vault(posts_url, vaults.source, vaults.target, prune_extra=True)
    assert tree_state(vaults.source) == before
    assert {p: p.stat().st_mode for p in vaults.source.rglob("*")} == modes


def test_an_interrupted_copy_leaves_the_old_file_and_no_temporary_file(
    posts_url: str,
    vaults: SimpleNamespace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = write(vaults.target / "ab/k1.png", b"the previous dev copy")

    def fail_halfway(source_fd: int, target_fd: int) -> int:
        os.write(target_fd, b"half")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(vault, "_copy_bytes", fail_halfway)
    monkeypatch.setenv(vault.TARGET_URL_ENV, posts_url)
    code = vault.main(["--source-vault", str(vaults.source), "--target-vault", str(vaults.target), "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert report["failed"]["count"] == 3 and report["copied"] == 0
    assert old.read_bytes() == b"the previous dev copy"
    assert sorted(tree_state(vaults.target)) == ["ab/k1.png"]  # no temporary or half file anywhere


def test_temporary_files_left_by_a_killed_run_neither_block_copies_nor_survive_prune(
    posts_url: str, vaults: SimpleNamespace
) -> None:
    # Half-written files a killed run leaves next to the files it was copying.
    stale = [
        write(vaults.target / directory / f".{name}.0badc0de.{serial}{vault.TEMP_SUFFIX}", b"half")
        for directory, name in [("ab", "k1.png"), ("ab", "k1_upscaled.webp"), ("cd", "k2.gif")]
        for serial in range(3)
    ]
    summary = sync_vault(posts_url, vaults.source, vaults.target, prune_extra=True, workers=1)
    assert (summary.copied, summary.failed_count, summary.pruned) == (3, 0, len(stale))
    assert sorted(tree_state(vaults.target)) == ["ab/k1.png", "ab/k1_upscaled.webp", "cd/k2.gif"]


def test_a_killed_run_leaves_only_complete_files_under_real_names(
    make_database: Callable[[], str], vaults: SimpleNamespace
) -> None:
    url = make_database()
    block = os.urandom(1 << 17)
    posts = [("big", f"f{number:03d}", "png") for number in range(300)]
    for _shard, key, fmt in posts:
        write(vaults.source / "big" / f"{key}.{fmt}", key.encode() + block)
    create_posts(url, posts)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "sampling.vault"),
            *("--source-vault", str(vaults.source), "--target-vault", str(vaults.target), "--workers", "2"),
        ],
        env={**os.environ, vault.TARGET_URL_ENV: url},
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(vaults.target.glob("big/f*.png")) and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    copied = list(vaults.target.glob("big/f*.png"))
    assert copied, "the run was killed before it copied anything"
    for path in copied:
        assert path.read_bytes() == (vaults.source / "big" / path.name).read_bytes(), path


def test_template_fields_must_be_columns_of_the_table(posts_url: str, vaults: SimpleNamespace) -> None:
    with pytest.raises(TemplateError, match=r"storage_hash.*not columns of table 'posts'"):
        sync_vault(posts_url, vaults.source, vaults.target, template="{storage_shard}/{storage_hash}")
    with pytest.raises(TemplateError, match="plain column name"):
        sync_vault(posts_url, vaults.source, vaults.target, template="{storage_key.__class__}")
    with pytest.raises(TemplateError, match="does not exist"):
        sync_vault(posts_url, vaults.source, vaults.target, posts_table="no_such_posts")
    assert not vaults.target.exists()


@pytest.mark.parametrize("table", ["dev_posts", "sample.posts"])
def test_prefixed_and_schema_qualified_tables_and_a_custom_template(
    make_database: Callable[[], str], vaults: SimpleNamespace, table: str
) -> None:
    url = make_database()
    create_posts(url, [("ab", "k1", "png"), ("cd", None, "gif")], table=table)
    summary = sync_vault(
        url,
        vaults.source,
        vaults.target,
        posts_table=table,
        template="{storage_shard}/{storage_key}.{format}",
        variant_suffix=None,
    )
    assert sorted(tree_state(vaults.target)) == ["ab/k1.png"]
    assert (summary.posts_read, summary.posts_without_path) == (2, 1)


def test_json_summary_shape_from_the_command_line(
    posts_url: str,
    vaults: SimpleNamespace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(vault.TARGET_URL_ENV, posts_url)
    args = [
        "--source-vault",
        str(vaults.source),
        "--target-vault",
        str(vaults.target),
        "--json",
        "--workers",
        "2",
    ]
    assert vault.main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert set(report) >= {"copied", "skipped_identical", "missing", "pruned", "bytes_copied", "seconds"}
    assert report["copied"] == 3 and report["skipped_identical"] == 0 and report["pruned"] == 0
    assert report["missing"] == {"count": 0, "sample": []}
    assert isinstance(report["seconds"], float) and report["bytes_copied"] > 0
    assert "vault sync: copied 3 files" in captured.err  # the final line even without a terminal


@pytest.mark.parametrize("module", [["sampling.vault"], ["sampling", "vault"]])
def test_module_entry_points_run_with_the_url_from_the_environment(
    posts_url: str, vaults: SimpleNamespace, module: list[str]
) -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", *module),
            *("--source-vault", str(vaults.source), "--target-vault", str(vaults.target), "--json"),
        ],
        env={**os.environ, vault.TARGET_URL_ENV: posts_url},
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["copied"] == 3


def test_usage_errors_exit_2(vaults: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vault.TARGET_URL_ENV, raising=False)
    assert vault.main(["--target-vault", str(vaults.target)]) == 2
    assert vault.main(["--source-vault", str(vaults.source), "--target-vault", str(vaults.target)]) == 2
    monkeypatch.setenv(vault.TARGET_URL_ENV, "postgresql://u@127.0.0.1:1/db")
    args = ["--source-vault", str(vaults.source), "--target-vault", str(vaults.target)]
    assert vault.main([*args, "--workers", "0"]) == 2
    assert vault.main([*args, "--no-such-option"]) == 2
    assert not vaults.target.exists()


def test_database_errors_exit_1_with_the_password_masked(
    vaults: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://sampler:s3cr3t-pw@127.0.0.1:1/makapix_dev?connect_timeout=2"
    code = vault.main(
        ["--target-db", url, "--source-vault", str(vaults.source), "--target-vault", str(vaults.target)]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "error:" in captured.err
    assert "warning: --target-db carries a password" in captured.err
    assert "s3cr3t-pw" not in captured.err + captured.out


@settings(deadline=None)  # a pure function: timing on a loaded machine is not what is tested
@given(st.text(alphabet="ab./\x00", max_size=12))
def test_a_path_is_either_refused_or_stays_inside_the_vault(rendered: str) -> None:
    try:
        relative = safe_relative_path(rendered, "posts")
    except UnsafePathError:
        return
    root = "/vault"
    joined = posixpath.normpath(posixpath.join(root, relative))
    assert joined.startswith(root + "/")
    assert ".." not in relative.split("/") and "" not in relative.split("/")
    assert relative == posixpath.normpath(relative)


@pytest.mark.parametrize("template", ["/etc/{storage_key}", "{storage_shard}/../../{storage_key}.{format}"])
def test_a_template_leading_out_of_the_vault_is_blamed_on_the_template(
    posts_url: str, vaults: SimpleNamespace, template: str
) -> None:
    """Issue 15: the template's own '..' or leading '/' was blamed on the first database row."""
    with pytest.raises(TemplateError) as refused:
        sync_vault(posts_url, vaults.source, vaults.target, template=template)
    message = str(refused.value)
    assert f"path template {template!r} itself leads out of the vault" in message
    assert "fix --template (sampling.vault.template in the sampling configuration)" in message
    assert "row" not in message
    assert not vaults.target.exists()


def test_a_database_error_names_the_database_and_the_setting(
    vaults: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(vault.TARGET_URL_ENV, "postgresql://sampler:s3cr3t-pw@127.0.0.1:1/makapix_dev")
    code = vault.main(["--source-vault", str(vaults.source), "--target-vault", str(vaults.target)])
    assert code == 1
    error = " ".join(capsys.readouterr().err.split())
    assert (
        "error: reading table 'posts' of the development database postgresql://sampler:***@127.0.0.1:1/makapix_dev "
        f"(from {vault.TARGET_URL_ENV}) failed:" in error
    )
    assert f"check {vault.TARGET_URL_ENV}, that the database is running" in error
    assert "s3cr3t-pw" not in error


def test_a_malformed_database_url_is_a_usage_error_naming_the_setting(
    vaults: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgres//sampler:s3cr3t-pw@db/makapix_dev"
    code = vault.main(
        ["--target-db", url, "--source-vault", str(vaults.source), "--target-vault", str(vaults.target)]
    )
    assert code == 2
    error = " ".join(capsys.readouterr().err.split())
    assert (
        "error: --target-db: the development database URL is malformed: it is not a PostgreSQL URL" in error
    )
    assert "s3cr3t-pw" not in error
