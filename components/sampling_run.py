"""Development side of the sampling: one host command that fills the dev database and vault from prod.

The command runs ``python -m sampling stack-run`` (sampler, then vault sync; sampling/stack_run.py) on
the Docker host, where both databases are published on the loopback.  Its environment carries the
connection URLs and the anonymisation key as secrets; its command line carries none.

It runs again only when one of its triggers changes — the sampling configuration file's content,
``sampling.fraction``, ``sampling.seed``, ``sampling.refresh`` or whether production can be read at all —
not on every ``up``.  (pulumi-command also re-runs a command whose command line or environment
changes, e.g. after a database password was rotated.)  Without a production stack the command still
runs, loads nothing, and says why in the ``sampling_summary`` output; once production exists the
availability trigger changes and the next ``up`` samples.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_random as random

from components.config import DatabaseSettings, HostSettings, Role, SamplingSettings, VaultSettings
from components.host_command import HostCommandArgs, host_command
from components.parsing import ConfigurationError
from sampling.config import SamplingConfig, load_config
from sampling.errors import ConfigError
from sampling.stack_run import SOURCE_ABSENT_ENV, parse_summary

SOURCE_URL_OUTPUT = "sampling_source_url"
SOURCE_VAULT_OUTPUT = "sampling_source_vault"


def sampling_config(sampling: SamplingSettings, stack_file: str, namespace: str) -> tuple[SamplingConfig, str]:
    """The validated sampling configuration file and the SHA-256 of its bytes (a trigger).

    ``namespace`` is the Pulumi project's name, the stack file's key prefix, for error messages.
    """
    path = Path(sampling.config_file)
    try:
        content = path.read_bytes()
        config = load_config(path)
    except OSError as error:
        raise ConfigurationError(
            f"{stack_file}: {namespace}:sampling.config_file {str(path)!r} cannot be read ({error.strerror}); "
            "give a path relative to the project directory, e.g. 'sampling/makapix.yaml'"
        ) from None
    except ConfigError as error:
        raise ConfigurationError(f"{stack_file}: {namespace}:sampling.config_file: {error}") from None
    return config, hashlib.sha256(content).hexdigest()


def run_script(sampling: SamplingSettings, python: str) -> str:
    """The command line: only settings that are no secret, each quoted for the shell."""
    return (
        f"{shlex.quote(python)} -m sampling stack-run "
        f"--config {shlex.quote(sampling.config_file)} --fraction {sampling.fraction!r} "
        f"--seed {sampling.seed} --source-stack {shlex.quote(sampling.source_stack)}"
    )


def shared_target_url(database: DatabaseSettings, source_url: str, password: str) -> str:
    """Shared mode (000): development's database on production's server, reached where production is."""
    if not source_url:
        return ""
    address = urlsplit(source_url)
    if not address.hostname:
        # Not a URL (e.g. a redacted "[secret]"): no target rather than one on host "None".
        return ""
    port = address.port or 5432
    return f"postgresql://{database.user}:{password}@{address.hostname}:{port}/{database.name}"


@dataclass(frozen=True)
class SamplingRunArgs:
    sampling: SamplingSettings
    # The dev database: (as a guest of production's shared server) its user and name there.
    database: DatabaseSettings
    # Its placement's role: ``own`` (reached at ``target_url``) or ``shared-guest``.
    database_role: Role
    host: HostSettings
    # The dev vault the sampler copies into.
    vault: VaultSettings
    stack_file: str
    # The dev database as its owner, where the host reaches it (``Database.host_url``; secret).
    # A guest has none: the URL is derived from production's address and ``database_password``.
    target_url: pulumi.Input[str] | None
    database_password: pulumi.Input[str]
    # False when the production stack is known not to exist (scripts/up): no StackReference is made.
    source_stack_exists: bool = True
    # Run after these: the dev database container and the app services (and the migrations command).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    ssh_private_key: pulumi.Input[str] | None = None


class SamplingRun(pulumi.ComponentResource):
    """The anonymisation key, the production reference and the sampling command of a dev stack."""

    summary: pulumi.Output[dict[str, Any]]
    triggers: list[pulumi.Input[Any]]
    command: pulumi.Resource

    def __init__(self, name: str, args: SamplingRunArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:SamplingRun", name, None, opts)
        sampling = args.sampling
        namespace = pulumi.get_project()  # the stack file's key prefix, for error messages
        config, config_hash = sampling_config(sampling, args.stack_file, namespace)
        guest = args.database_role == "shared-guest"
        if args.target_url is None and not guest:
            raise ConfigurationError(
                f"{args.stack_file}: sampling.enabled needs {namespace}:database.host_port: the sampler reaches the "
                "development database on the host's loopback (e.g. 55433)"
            )
        # One key per dev stack: pseudonyms stay stable across runs and differ from any other stack's.
        key = random.RandomPassword(
            f"{name}-anonymisation-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        source_url: pulumi.Output[str]
        source_vault: pulumi.Output[str]
        if args.source_stack_exists:
            source = pulumi.StackReference(
                f"{name}-source", stack_name=sampling.source_stack, opts=pulumi.ResourceOptions(parent=self)
            )
            source_url = pulumi.Output.secret(
                source.get_output(SOURCE_URL_OUTPUT).apply(lambda u: str(u or ""))
            )
            source_vault = source.get_output(SOURCE_VAULT_OUTPUT).apply(lambda v: str(v or ""))
            absent = f"stack {sampling.source_stack!r} exports no {SOURCE_URL_OUTPUT} (deploy it with this program)"
            absent_reason = source_url.apply(lambda u: "" if u else absent)
        else:
            source_url = pulumi.Output.from_input("")
            source_vault = pulumi.Output.from_input("")
            absent_reason = pulumi.Output.from_input(
                f"the production stack {sampling.source_stack!r} is not deployed on this backend"
            )
        # Whether production can be read is a trigger, so a run that found none runs again once it
        # exists. The value says only "readable" or why not: no secret, so it is shown in diffs.
        source_state: pulumi.Output[str] = pulumi.Output.unsecret(
            absent_reason.apply(lambda reason: f"source: {reason or 'readable'}")
        )
        target_url: pulumi.Input[str] = (
            args.target_url
            if args.target_url is not None and not guest
            else pulumi.Output.secret(
                pulumi.Output.all(source_url, args.database_password).apply(
                    lambda pair: shared_target_url(args.database, str(pair[0]), str(pair[1]))
                )
            )
        )
        environment: dict[str, pulumi.Input[str]] = {
            "SAMPLING_SOURCE_URL": source_url,
            "SAMPLING_TARGET_URL": target_url,
            config.anonymisation.key_env: pulumi.Output.secret(key.result),
            "SAMPLING_SOURCE_VAULT": source_vault,
            "SAMPLING_TARGET_VAULT": args.vault.host_path,
            SOURCE_ABSENT_ENV: absent_reason,
        }
        self.triggers = [
            f"config sha256:{config_hash}",
            f"fraction: {sampling.fraction!r}",
            f"seed: {sampling.seed}",
            f"refresh: {sampling.refresh}",
            source_state,
        ]
        self.command = host_command(
            f"{name}-command",
            HostCommandArgs(
                host=args.host,
                script=run_script(sampling, args.host.python),
                environment=environment,
                triggers=self.triggers,
                ssh_private_key=args.ssh_private_key,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        # stdout is secret because the provider cannot know what a command prints. parse_summary keeps
        # only declared fields (counts, seconds, table names, booleans, a reason with passwords masked
        # by stack-run), so the parsed summary is published in plain as `sampling_summary`.
        self.summary = pulumi.Output.unsecret(self.command.stdout.apply(parse_summary))
        self.register_outputs({"summary": self.summary})
