"""Waiting for a database: a refused login fails at once, naming the database and the variable (issue 13)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_support.commands import ExitCode
from cli_support.readiness import wait_for_connection
from sampling import stack_run
from sampling.errors import SamplingError
from sampling.readiness import LoginRefused, wait_until_accepting

Login = Callable[[str, str], str]


def test_a_wrong_password_fails_at_once_naming_the_database_and_the_variable(
    make_database: Callable[[], str], password_login: Login
) -> None:
    url = password_login(make_database(), "wrong-Pa55")
    started = time.monotonic()
    with pytest.raises(LoginRefused) as refused:
        wait_until_accepting(url, 120, "production", variable="SAMPLING_OWNER_URL")
    assert time.monotonic() - started < 10  # not the 120 s of a server that is still starting
    message = str(refused.value)
    assert "the production database postgresql://pw_" in message
    assert "the user or password in SAMPLING_OWNER_URL is wrong" in message
    assert "password authentication failed" in message
    assert "wrong-Pa55" not in message


def test_the_right_password_is_accepted_and_ops_gets_the_refusal_at_once(
    make_database: Callable[[], str], password_login: Login
) -> None:
    database = make_database()
    wait_until_accepting(password_login(database, "right"), 5, "production", variable="X")
    started = time.monotonic()
    error = wait_for_connection(password_login(database, "wrong-Pa55"), 120)
    assert time.monotonic() - started < 10
    assert error is not None and "password authentication failed" in error and "wrong-Pa55" not in error


def test_a_server_that_does_not_answer_is_still_waited_for() -> None:
    ticks = iter(range(100))
    with pytest.raises(SamplingError, match=r"did not accept connections within 3 s") as caught:
        wait_until_accepting(
            "postgresql://u:pw@127.0.0.1:1/db",
            3,
            "development",
            clock=lambda: float(next(ticks)),
            sleep=lambda _seconds: None,
        )
    assert not isinstance(caught.value, LoginRefused)


def test_a_wrong_production_password_fails_the_stack_run(
    makapix: tuple[str, str],
    makapix_config: dict[str, Any],
    write_config: Callable[[dict[str, Any]], Path],
    password_login: Login,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to exit 0 with ``"loaded": false`` after waiting, as if production were down."""
    source, target = makapix
    monkeypatch.setenv(stack_run.SOURCE_URL_ENV, password_login(source, "wrong-Pa55"))
    monkeypatch.setenv(stack_run.TARGET_URL_ENV, target)
    code = stack_run.main(["--config", str(write_config(makapix_config)), "--source-wait", "120"])
    out, err = capsys.readouterr()
    assert code == ExitCode.FAILED and out == ""
    assert "the user or password in SAMPLING_SOURCE_URL is wrong" in err
    assert "pulumi up --stack prod" in err and "wrong-Pa55" not in err


def test_grant_reader_fails_at_once_on_a_wrong_owner_password(
    make_database: Callable[[], str],
    password_login: Login,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It used to retry for its whole --wait (120 s) as if the server were still starting."""
    from sampling import access

    monkeypatch.setenv(access.OWNER_URL_ENV, password_login(make_database(), "wrong-Pa55"))
    monkeypatch.setenv(access.PASSWORD_ENV, "reader-password")
    started = time.monotonic()
    assert access.main(["--wait", "120"]) == 1
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "the user or password in SAMPLING_OWNER_URL is wrong" in err and "wrong-Pa55" not in err


def test_the_sampler_names_the_variable_of_a_refused_login(
    make_database: Callable[[], str], password_login: Login, makapix_config: dict[str, Any]
) -> None:
    from sampling import plan
    from sampling.config import parse_config

    with pytest.raises(SamplingError) as refused:
        plan(parse_config(makapix_config), password_login(make_database(), "wrong-Pa55"))
    message = str(refused.value)
    assert "cannot connect to the source server postgresql://pw_" in message
    assert "the user or password of the source URL is wrong: --source or SAMPLING_SOURCE_URL" in message
    assert "wrong-Pa55" not in message
