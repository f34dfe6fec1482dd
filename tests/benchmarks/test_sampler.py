"""The benchmark at a tiny size: both scenarios copy the same rows as the hand-written lower bound
(the script refuses otherwise), and it prints its ratios, peak RSS and the chain's statement size."""

from __future__ import annotations

import re

import pytest

from benchmarks.sampler import main


def test_the_benchmark_runs_and_both_sides_copy_the_same_rows(
    postgres_server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--users", "500", "--repeat", "1", "--chains", "5", "--server", postgres_server_url]) == 0
    out = capsys.readouterr().out
    for scenario in ("closed", "authored"):
        assert re.search(rf"^{scenario} +sampler .* rows peak client RSS +\d", out, re.MULTILINE), out
        assert re.search(rf"^ratio sampler / lower bound \({scenario}\): \d+\.\d\d$", out, re.MULTILINE), out
    assert "chain of  5 tables" in out and "longest source statement" in out
