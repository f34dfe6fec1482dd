"""Waiting for a database: a server that does not answer is waited for, then its error comes back masked.

A refused login ending the wait at once needs a real server: tests/sampling/test_readiness.py.
"""

from __future__ import annotations

from cli_support.readiness import wait_for_connection


def test_no_server_is_retried_until_the_timeout_and_the_error_comes_back_masked() -> None:
    ticks = iter(range(100))
    sleeps: list[float] = []
    error = wait_for_connection(
        "postgresql://owner:s3cret@127.0.0.1:1/db",
        3,
        interval=1.0,
        clock=lambda: float(next(ticks)),
        sleep=sleeps.append,
    )
    assert error is not None and "s3cret" not in error
    assert sleeps == [1.0, 1.0]  # three attempts: after the third, another interval would pass the deadline
