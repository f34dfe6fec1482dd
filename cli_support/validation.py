"""One wording of a pydantic ``ValidationError`` for a person: a line per problem, naming the key.

Used by the stack configuration (``components.parsing``), the sampling configuration
(``sampling.config``) and the monitoring output (``ops.alerts``); each names its keys its own way
(``makapix:mqtt.public_port``, ``roots.0.fraction``, ``monitoring.containers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

Location = tuple[str, ...]


def dotted(location: Location) -> str:
    """``('roots', '0', 'fraction')`` as ``roots.0.fraction``."""
    return ".".join(location) or "(top level)"


def problem_lines(
    error: ValidationError,
    key: Callable[[Location], str] = dotted,
    example: Callable[[Location], Any] | None = None,
    unknown_key_hint: str = "",
) -> list[str]:
    """``<key>: <what is wrong> (got <value>); e.g. <example>`` for each problem.

    The value is left out where it says nothing (a missing or unknown key, a whole map or list);
    ``example`` gives a valid value for a location, if it knows one.
    """
    lines = []
    for problem in error.errors():
        location = tuple(str(part) for part in problem["loc"])
        kind = problem["type"]
        message = problem["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = f"unknown key; remove it or check its spelling{unknown_key_hint}"
        elif kind == "missing":
            message = "required key is missing"
        value = problem.get("input")
        shown = kind in ("missing", "extra_forbidden") or isinstance(value, dict | list)
        detail = "" if shown else f" (got {value!r})"
        valid = example(location) if example is not None else None
        hint = f"; e.g. {valid!r}" if valid is not None and "e.g." not in message else ""
        lines.append(f"{key(location)}: {message}{detail}{hint}")
    return lines
