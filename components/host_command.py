"""A command run on the Docker host by `pulumi up` (the sampling run, backups, migrations).

Where it runs comes from ``host`` in the configuration (``HostSettings``):

- no ``ssh_host``: the machine running ``pulumi up`` is the Docker host; the command runs there
  (``command.local.Command``) in the project directory, secrets in its environment;
- ``ssh_host`` set: it runs over SSH (``command.remote.Command``) in ``host.checkout``.  An SSH
  server passes only the variables its ``AcceptEnv`` allows, so the secrets travel on the
  command's stdin as a shell environment file that the script reads before anything else.
  The connection accepts only the host key pinned in ``host.ssh_known_hosts`` (required).

Either way no secret is part of the command string, stdout and stderr are secret outputs and are
not logged, and the command runs again only when one of its ``triggers`` changes.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_command as command

from components.config import HostSettings

# Read the environment file on stdin, export everything it sets, then run the command.
_READ_ENVIRONMENT_FROM_STDIN = "set -a; . /dev/stdin; set +a"


@dataclass(frozen=True)
class HostCommandArgs:
    host: HostSettings
    # Shell command, relative to the project directory (or checkout); never a secret in it.
    script: str
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # The command runs again when one of these changes (not on every `up`).
    triggers: Sequence[pulumi.Input[Any]] = ()
    # Required when host.ssh_host is set.
    ssh_private_key: pulumi.Input[str] | None = None


def environment_file(environment: Mapping[str, str]) -> str:
    """``KEY='value'`` lines, each value quoted for the shell (read by ``. /dev/stdin``)."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(environment.items()))


def remote_script(host: HostSettings, script: str) -> str:
    return f"{_READ_ENVIRONMENT_FROM_STDIN}; cd {shlex.quote(host.checkout)} && {script}"


def host_command(
    name: str, args: HostCommandArgs, opts: pulumi.ResourceOptions | None = None
) -> command.local.Command | command.remote.Command:
    """The command as a local or remote Command resource, whichever the host settings say."""
    options = pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"])
    )
    host = args.host
    if host.ssh_host is None:
        return command.local.Command(
            name,
            create=args.script,
            environment=dict(args.environment),
            triggers=list(args.triggers),
            logging=command.local.Logging.NONE,
            add_previous_output_in_env=False,
            opts=options,
        )
    if args.ssh_private_key is None:
        raise ValueError(
            f"host.ssh_host is {host.ssh_host!r} but no SSH key is configured: "
            "set it with `pulumi config set --secret <project>:host_ssh_private_key < key`"
        )
    names = sorted(args.environment)
    values = [args.environment[key] for key in names]
    resolved_environment: pulumi.Output[str] = pulumi.Output.all(*values).apply(
        lambda resolved: environment_file(dict(zip(names, resolved, strict=True)))
    )
    stdin: pulumi.Output[str] = pulumi.Output.secret(resolved_environment)
    return command.remote.Command(
        name,
        connection=command.remote.ConnectionArgs(
            host=host.ssh_host,
            user=host.ssh_user,
            port=host.ssh_port,
            private_key=pulumi.Output.secret(args.ssh_private_key),
            # Pinned: a host presenting another key gets no secret (host.ssh_known_hosts).
            host_key=host.host_key.public_key,
        ),
        create=remote_script(host, args.script),
        stdin=stdin,
        triggers=list(args.triggers),
        logging=command.remote.Logging.NONE,
        add_previous_output_in_env=False,
        opts=options,
    )
