"""Errors the sampler raises on purpose.

Masking passwords in messages and checking URLs is :mod:`cli_support.database_urls` (ops uses it too).
"""

from __future__ import annotations

from cli_support.database_urls import url_problem


class SamplingError(Exception):
    """A refusal or failure with a message meant for the operator (exit code 1)."""


class ConfigError(SamplingError):
    """The configuration file is invalid: the message names the file, key and value (exit code 2)."""


def check_database_url(url: str, what: str, setting: str) -> None:
    """Refuse a malformed URL with a ConfigError naming the setting (variable or option) it came from."""
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"{setting}: the {what} database URL is malformed: {problem}")
