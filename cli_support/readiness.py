"""Waiting for a database that was just started (a container is "created" before PostgreSQL accepts).

A refused login is not "not started yet": a wrong password or user (SQLSTATE 28P01, 28000) ends the
wait at once, however long the caller was willing to wait.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import psycopg

from cli_support.database_urls import mask_text, url_password

#: The server's messages for SQLSTATE 28P01 (invalid_password) and 28000
#: (invalid_authorization_specification), and libpq's for a password the server asked for and did
#: not get. psycopg gives a failed connection no SQLSTATE, so its message is matched: in English only
#: (lc_messages cannot be asked for before authentication; see docs/sampling.md, Refused logins).
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|authentication failed for user|no pg_hba\.conf entry"
    r'|role "[^"]*" does not exist|is not permitted to log in|no password supplied|password retrieved from file',
    re.IGNORECASE,
)


def login_refused(error: psycopg.Error) -> bool:
    """Whether ``error`` is an authentication failure (SQLSTATE 28P01 or 28000)."""
    return error.sqlstate in ("28P01", "28000") or bool(_LOGIN_REFUSED.search(str(error)))


def wait_for_connection(
    url: str,
    timeout: float,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Wait until ``url`` accepts a connection: None once it does, else (after ``timeout`` seconds,
    or at once when the login is refused) the last connection error, password masked.

    Every other connection error counts as "not yet" (refused, starting up, DNS). The caller words
    its own failure (``ops backup --wait``; the sampler's ``wait_until_accepting``).
    """
    error = last_connection_error(url, timeout, interval=interval, clock=clock, sleep=sleep)
    return None if error is None else mask_text(str(error).strip(), url_password(url))


def last_connection_error(
    url: str,
    timeout: float,
    *,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> psycopg.Error | None:
    """Like :func:`wait_for_connection`, but the error itself (unmasked), for callers that inspect it."""
    deadline = clock() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=max(1, min(10, int(timeout) or 1))):
                return None
        except psycopg.Error as error:
            if login_refused(error) or clock() + interval > deadline:
                return error
        sleep(interval)
