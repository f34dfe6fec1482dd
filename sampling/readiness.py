"""Waiting for a database that was just started (a container is "created" before PostgreSQL accepts)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from sampling.errors import SamplingError, mask_text, mask_url, url_password


def wait_for_connection(
    url: str,
    timeout: float,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Wait until ``url`` accepts a connection: None once it does, else (after ``timeout`` seconds)
    the last connection error, password masked.

    Every connection error counts as "not yet" (refused, starting up, DNS). Shared with
    ``ops backup --wait``, which words its own refusal.
    """
    deadline = clock() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=max(1, min(10, int(timeout) or 1))):
                return None
        except psycopg.Error as error:
            if clock() + interval > deadline:
                return mask_text(str(error).strip(), url_password(url))
        sleep(interval)


def wait_until_accepting(
    url: str,
    timeout: float,
    what: str,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once ``url`` accepts a connection; raise SamplingError after ``timeout`` seconds."""
    last_error = wait_for_connection(url, timeout, interval=interval, clock=clock, sleep=sleep)
    if last_error is not None:
        raise SamplingError(
            f"the {what} database {mask_url(url)} did not accept connections within {timeout:g} s: {last_error}"
        )
