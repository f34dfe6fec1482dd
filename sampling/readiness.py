"""Waiting for a database that was just started (a container is "created" before PostgreSQL accepts)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from sampling.errors import SamplingError, mask_text, mask_url, url_password


def wait_until_accepting(
    url: str,
    timeout: float,
    what: str,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once ``url`` accepts a connection; raise SamplingError after ``timeout`` seconds.

    Every connection error counts as "not yet" (refused, starting up, DNS): a server that never comes
    up ends in the last error, with the password masked.
    """
    deadline = clock() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=max(1, min(10, int(timeout) or 1))):
                return
        except psycopg.Error as error:
            if clock() + interval > deadline:
                message = mask_text(str(error).strip(), url_password(url))
                raise SamplingError(
                    f"the {what} database {mask_url(url)} did not accept connections within {timeout:g} s: "
                    f"{message}"
                ) from None
        sleep(interval)
