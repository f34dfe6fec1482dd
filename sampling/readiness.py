"""Waiting for a database that was just started, in the sampler's words (errors naming the database).

A refused login is not "not started yet": a wrong password or user (SQLSTATE 28P01, 28000) fails at
once, however long the caller was willing to wait (the waiting is :mod:`cli_support.readiness`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from cli_support.database_urls import mask_text, mask_url, url_password
from cli_support.readiness import last_connection_error, login_refused
from sampling.errors import SamplingError


class LoginRefused(SamplingError):
    """The server answered and refused the user or password: waiting longer cannot help."""


def wait_until_accepting(
    url: str,
    timeout: float,
    what: str,
    *,
    variable: str | None = None,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once ``url`` accepts a connection; raise SamplingError after ``timeout`` seconds, and
    LoginRefused at once when the server refuses the user or password (naming ``variable``, the
    environment variable the URL came from)."""
    error = last_connection_error(url, timeout, interval=interval, clock=clock, sleep=sleep)
    if error is None:
        return
    message = mask_text(str(error).strip(), url_password(url))
    if login_refused(error):
        source = f"the user or password in {variable}" if variable else "the user or password in its URL"
        try:
            user = urlsplit(url).username or "(default user)"
        except ValueError:
            user = "(unknown user)"
        raise LoginRefused(
            f"the {what} database {mask_url(url)} refused the login of {user}: {source} is wrong "
            f"(not retried: the server is up and answering). {message}"
        )
    raise SamplingError(
        f"the {what} database {mask_url(url)} did not accept connections within {timeout:g} s: {message}"
    )
