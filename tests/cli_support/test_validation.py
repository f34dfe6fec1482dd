"""One wording of validation errors for the stack configuration, the sampling configuration and ops."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cli_support.validation import dotted, problem_lines


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int = Field(le=65535)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    inner: Inner


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return caught.value


def test_each_problem_names_its_key_what_is_wrong_and_the_value() -> None:
    lines = problem_lines(_error({"inner": {"port": 70000, "colour": "red"}}))
    assert sorted(lines) == [
        "inner.colour: unknown key; remove it or check its spelling",
        "inner.port: Input should be less than or equal to 65535 (got 70000)",
        "name: required key is missing",
    ]


def test_keys_examples_and_the_unknown_key_hint_are_the_callers() -> None:
    lines = problem_lines(
        _error({"name": "x", "inner": {"port": 70000, "colour": "red"}}),
        key=lambda location: "app:" + dotted(location),
        example=lambda location: 8883 if location == ("inner", "port") else None,
        unknown_key_hint=" (see README.md)",
    )
    assert lines == [
        "app:inner.port: Input should be less than or equal to 65535 (got 70000); e.g. 8883",
        "app:inner.colour: unknown key; remove it or check its spelling (see README.md)",
    ]


def test_a_whole_map_is_not_printed_and_the_top_level_is_named() -> None:
    assert problem_lines(_error({"name": "x", "inner": "not a map"})) == [
        "inner: Input should be a valid dictionary or instance of Inner (got 'not a map')"
    ]
    assert problem_lines(_error(["not", "a", "map"])) == [
        "(top level): Input should be a valid dictionary or instance of Outer"
    ]
