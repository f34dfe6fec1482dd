"""The shared command-line convention: exit codes, the subcommand registry, exceptions to exit codes."""

from __future__ import annotations

import argparse

import pytest

from cli_support.commands import Command, ExitCode, exit_code_of, run_command, run_commands


class Refused(Exception):
    pass


class BadSetting(Refused):
    pass


ERRORS = {BadSetting: ExitCode.USAGE, Refused: ExitCode.FAILED}


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True)


def _raising(error: BaseException) -> Command:
    def run(_args: argparse.Namespace) -> int:
        raise error

    return Command("go", "raise an error", _add_name, run)


def _greet(args: argparse.Namespace) -> int:
    print(f"hello {args.name}")
    return ExitCode.OK


GREET = Command("greet", "say hello", _add_name, _greet, description="Say hello to NAME.")


def _main(argv: list[str], *commands: Command, interrupted: str | None = None) -> int:
    return run_commands(
        "prog", "A test program.", commands or (GREET,), argv, errors=ERRORS, interrupted=interrupted
    )


def test_the_exit_codes_keep_their_numbers() -> None:
    """Scripts and the stacks test these numbers: they are part of the interface."""
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "INTERRUPTED": 130,
    }


def test_the_chosen_command_runs_with_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["greet", "--name", "Ada"]) == ExitCode.OK
    assert capsys.readouterr().out == "hello Ada\n"


def test_an_unknown_command_is_bad_usage_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["bogus"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "prog: error: argument command: invalid choice: 'bogus'" in err and "'greet'" in err


@pytest.mark.parametrize("argv", [[], ["greet"], ["greet", "--name", "Ada", "--extra"]])
def test_a_missing_command_or_option_is_bad_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(argv) == ExitCode.USAGE
    assert "usage: prog" in capsys.readouterr().err


def test_help_exits_ok_and_shows_the_commands_help_and_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _main(["--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "A test program." in out and "greet" in out and "say hello" in out
    assert _main(["greet", "--help"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("usage: prog greet [-h] --name NAME") and "Say hello to NAME." in out


@pytest.mark.parametrize(
    ("error", "code"),
    [(BadSetting("--name: too long"), ExitCode.USAGE), (Refused("--name: too long"), ExitCode.FAILED)],
)
def test_a_named_exception_prints_its_message_and_gives_the_code_of_its_most_specific_class(
    error: Exception, code: ExitCode, capsys: pytest.CaptureFixture[str]
) -> None:
    """BadSetting is also a Refused: its own entry wins, whatever the order of the mapping."""
    assert _main(["go", "--name", "x"], _raising(error)) == code
    assert capsys.readouterr() == ("", "error: --name: too long\n")
    assert exit_code_of(error, dict(reversed(ERRORS.items()))) == code


def test_an_exception_the_mapping_does_not_name_propagates() -> None:
    with pytest.raises(ZeroDivisionError):
        _main(["go", "--name", "x"], _raising(ZeroDivisionError("a bug")))


def test_an_interrupt_gives_130_and_the_message_naming_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = _raising(KeyboardInterrupt())
    assert (
        _main(["go", "--name", "x"], command, interrupted="error: {command} interrupted")
        == ExitCode.INTERRUPTED
    )
    assert capsys.readouterr().err == "error: go interrupted\n"
    with pytest.raises(KeyboardInterrupt):  # no message given: the caller handles it
        _main(["go", "--name", "x"], command)


def test_one_command_runs_on_its_own_with_the_same_conventions(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command("prog greet", GREET, ["--name", "Ada"], errors=ERRORS) == ExitCode.OK
    assert capsys.readouterr().out == "hello Ada\n"
    assert run_command("prog greet", GREET, [], errors=ERRORS) == ExitCode.USAGE
    assert "usage: prog greet [-h] --name NAME" in capsys.readouterr().err
    assert run_command("prog go", _raising(Refused("no")), ["--name", "x"], errors=ERRORS) == ExitCode.FAILED
    assert capsys.readouterr().err == "error: no\n"
