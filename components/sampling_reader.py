"""Production side of the sampling: a SELECT-only role the development stack's sampler logs in as.

The prod stack generates the role's password (pulumi-random, secret), runs ``python -m sampling
grant-reader`` on the Docker host after its database container (``sampling/access.py`` holds the SQL),
and exports how to reach the role: ``sampling_source_url`` (secret) and ``sampling_source_vault``.  The
URL points at the database's port on the host's loopback, which is where the sampler runs; production
and development containers never share a network (docs/sampling-run.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random

from components.config import DatabaseSettings, HostSettings, SamplingSettings, VaultSettings
from components.database import database_url
from components.host_command import HostCommandArgs, host_command


def grant_script(sampling: SamplingSettings, python: str) -> str:
    """The command line (no secret in it): the role and schemas come from the stack settings."""
    schemas = " ".join(f"--schema {shlex.quote(schema)}" for schema in sampling.reader_schemas)
    return (
        f"{shlex.quote(python)} -m sampling grant-reader --role {shlex.quote(sampling.reader_role)} {schemas}"
    )


@dataclass(frozen=True)
class SamplingReaderArgs:
    # The reader role and the schemas it may read.
    sampling: SamplingSettings
    # Where the sampler reaches the database: host_port on the loopback, and its name.
    database: DatabaseSettings
    host: HostSettings
    # The vault the sampler copies from (exported as sampling_source_vault).
    vault: VaultSettings
    # The database as the host reaches it, as its owner (``Database.host_url``; secret).
    owner_url: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    ssh_private_key: pulumi.Input[str] | None = None


class SamplingReader(pulumi.ComponentResource):
    """The role, its password, the command that grants it, and the URL the sampler uses."""

    source_url: pulumi.Output[str]
    source_vault: str

    def __init__(
        self, name: str, args: SamplingReaderArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:SamplingReader", name, None, opts)
        database = args.database
        if database.host_port is None:
            raise ValueError("SamplingReader needs database.host_port: the sampler reaches production there")
        role = args.sampling.reader_role
        password = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=False,  # URL-safe: it goes into a connection URL
            opts=pulumi.ResourceOptions(parent=self),
        )
        secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        host_command(
            f"{name}-grant",
            HostCommandArgs(
                host=args.host,
                script=grant_script(args.sampling, args.host.python),
                environment={
                    "SAMPLING_OWNER_URL": args.owner_url,
                    "SAMPLING_READER_PASSWORD": secret_password,
                },
                # Runs again for a new role, password or schema list; each run is idempotent.
                triggers=[role, secret_password, *args.sampling.reader_schemas],
                ssh_private_key=args.ssh_private_key,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.source_url = database_url(role, secret_password, "127.0.0.1", database.host_port, database.name)
        self.source_vault = args.vault.host_path
        self.register_outputs({"source_url": self.source_url, "source_vault": self.source_vault})
