"""A release around new application images: back up the database first, migrate after.

- ``PreDeployBackup``: when the api image (its digest) or the migrations command changes, a host
  command runs ``python -m ops backup`` (``pg_dump -Fc``, atomic, keeping the N newest) against
  the database's loopback port.  The application containers depend on it, so it runs before the
  new containers replace the old ones.  The connection URL travels as the secret environment
  variable ``OPS_DATABASE_URL``, never in the script.

  pg_dump runs on the Docker host, from ``release.pg_bin`` (default
  ``/usr/lib/postgresql/<major of images.postgres>/bin``, Debian's layout of the PGDG client
  packages): the backup lands directly on the host, a too-old pg_dump is refused by pg_dump itself
  before anything is written, and the same command is what the tests execute for real.  Running
  pg_dump inside the db container would match the server's version without a host package, but
  would stream the dump through ``docker exec`` and leave the backup untestable without Docker.
- ``Migrations``: after the new container of ``release.migrations_service`` exists, a host
  command runs ``docker exec <container> <migrations command>`` (the container has its database
  URL already: nothing secret in the command).  It runs again when that image or the command
  changes.  ``Migrations.command`` is the resource later steps (the dev sampling run) depend on.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command
import pulumi_docker as docker

from components.config import HostSettings, ReleaseSettings, postgres_major
from components.host_command import HostCommandArgs, host_command


def backup_pg_bin(release: ReleaseSettings, postgres_image: str) -> str:
    """``release.pg_bin``, or Debian's client directory for the major of ``images.postgres``.

    The configuration refuses ``release.backup`` when neither is known (``EnvironmentConfig``).
    """
    if release.pg_bin is not None:
        return release.pg_bin
    major = postgres_major(postgres_image)
    assert major is not None, "validated by EnvironmentConfig"
    return f"/usr/lib/postgresql/{major}/bin"


def release_triggers(release: ReleaseSettings, image: pulumi.Input[str]) -> list[pulumi.Input[object]]:
    """What makes a release: a new image of the migrations service or a new migrations command.

    The backup and the migrations share it, so a backup is taken exactly when migrations run again.
    """
    return [image, list(release.migrations_command or [])]


def backup_script(release: ReleaseSettings, python: str) -> str:
    words = [python, "-m", "ops", "backup", "--dir", release.backup_dir]
    words += ["--keep", str(release.keep), "--wait", str(release.wait_seconds), "--json"]
    return shlex.join(words)


def migrations_script(release: ReleaseSettings, container_name: str) -> str:
    command = release.migrations_command
    assert command is not None
    return shlex.join(["docker", "exec", container_name, *command])


@dataclass(frozen=True)
class PreDeployBackupArgs:
    host: HostSettings
    release: ReleaseSettings
    # images.postgres: pg_dump's directory follows its major unless release.pg_bin is set.
    postgres_image: str
    # The database's URL on the host's loopback (secret): Database.host_url.
    database_url: pulumi.Input[str]
    # Digest of the migrations service's image (the api): a new one means a new release.
    image: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)
    ssh_private_key: pulumi.Input[str] | None = None


class PreDeployBackup(pulumi.ComponentResource):
    """``pg_dump -Fc`` of the environment's database before a release's containers start."""

    command: pulumi_command.local.Command | pulumi_command.remote.Command

    def __init__(
        self, name: str, args: PreDeployBackupArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:PreDeployBackup", name, None, opts)
        self.command = host_command(
            f"{name}-pg-dump",
            HostCommandArgs(
                host=args.host,
                script=backup_script(args.release, args.host.python),
                environment={
                    "OPS_DATABASE_URL": pulumi.Output.secret(args.database_url),
                    "OPS_PG_BIN": backup_pg_bin(args.release, args.postgres_image),
                },
                triggers=release_triggers(args.release, args.image),
                ssh_private_key=args.ssh_private_key,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class MigrationsArgs:
    host: HostSettings
    release: ReleaseSettings
    # The new container of release.migrations_service, its name (for `docker exec`) and the digest it runs.
    container: docker.Container
    container_name: str
    image: pulumi.Input[str]
    ssh_private_key: pulumi.Input[str] | None = None


class Migrations(pulumi.ComponentResource):
    """The configured migrations command, run in the new api container."""

    command: pulumi_command.local.Command | pulumi_command.remote.Command

    def __init__(self, name: str, args: MigrationsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("makapix:environment:Migrations", name, None, opts)
        self.command = host_command(
            f"{name}-run",
            HostCommandArgs(
                host=args.host,
                script=migrations_script(args.release, args.container_name),
                triggers=release_triggers(args.release, args.image),
                ssh_private_key=args.ssh_private_key,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[args.container]),
        )
        self.register_outputs({})
