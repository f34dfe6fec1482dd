"""Exit codes and subcommands: one convention for ``python -m sampling`` and ``python -m ops``.

A command line is a list of :class:`Command` (name, help, its arguments, what it runs) handed to
:func:`run_commands`, which builds the argparse subcommands, runs the chosen one and turns the
exceptions the caller names into an ``error: ...`` line on stderr and an :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means (the numbers are part of the interface: scripts test them)."""

    #: Done; for a check, nothing found.
    OK = 0
    #: Refused or failed (message on stderr), or a check found something.
    FAILED = 1
    #: Bad usage or configuration, unreadable input: running it again as is cannot succeed.
    USAGE = 2
    #: Interrupted (Ctrl-C, or SIGTERM where the command turns it into one): 128 + SIGINT.
    INTERRUPTED = 130


#: Exception classes to exit codes; the most specific class of a raised exception decides.
ErrorCodes = Mapping[type[Exception], ExitCode]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments`` declares its options, ``run`` gets them and returns the exit code."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    #: Longer text for ``COMMAND --help`` (default: none).
    description: str | None = None


def run_commands(
    prog: str,
    description: str | None,
    commands: Sequence[Command],
    argv: Sequence[str],
    *,
    errors: ErrorCodes,
    interrupted: str | None = None,
) -> int:
    """Parse ``argv`` as ``prog COMMAND [OPTIONS]`` and run that command.

    ``--help`` exits OK, bad usage (an unknown command, a missing option) USAGE, with argparse's
    message. An exception of a class in ``errors`` prints ``error: <message>`` on stderr and returns
    its code; others propagate. ``interrupted`` (``{command}`` is replaced by the command's name) is
    printed on stderr for a KeyboardInterrupt, which then returns INTERRUPTED; without it the
    interrupt propagates.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subcommands = parser.add_subparsers(dest="command", required=True)
    by_name: dict[str, Command] = {}
    for command in commands:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.description)
        command.add_arguments(sub)
        by_name[command.name] = command
    return _run(parser, argv, lambda args: by_name[args.command], errors, interrupted)


def run_command(prog: str, command: Command, argv: Sequence[str], *, errors: ErrorCodes) -> int:
    """Run one command on its own, as ``prog [OPTIONS]`` (``python -m sampling stack-run`` called directly)."""
    parser = argparse.ArgumentParser(prog=prog, description=command.description)
    command.add_arguments(parser)
    return _run(parser, argv, lambda _args: command, errors, None)


def _run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    chosen: Callable[[argparse.Namespace], Command],
    errors: ErrorCodes,
    interrupted: str | None,
) -> int:
    try:
        arguments = parser.parse_args(list(argv))
    except SystemExit as stop:  # argparse has printed the help or the usage error
        return ExitCode.OK if stop.code in (0, None) else ExitCode.USAGE
    command = chosen(arguments)
    try:
        return command.run(arguments)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        print(interrupted.format(command=command.name), file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as error:
        code = exit_code_of(error, errors)
        if code is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return code


def exit_code_of(error: BaseException, errors: ErrorCodes) -> ExitCode | None:
    """The code ``errors`` gives the most specific class of ``error``, or None if it names none."""
    for cls in type(error).__mro__:
        if cls in errors:
            return errors[cls]
    return None
