"""The environment's secrets: given as ``secure:`` stack values, or generated once per stack."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

from components.isolation import secret_hash

# Secrets the program generates when the stack does not give them; the stack keeps them in its state.
GENERATED = ("jwt_secret", "database_password", "admin_password")


@dataclass(frozen=True)
class EnvironmentSecretsArgs:
    given: dict[str, pulumi.Output[str]]


class EnvironmentSecrets(pulumi.ComponentResource):
    """Every secret of one environment, each a Pulumi secret Output."""

    values: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: EnvironmentSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:Secrets", name, None, opts)
        self.values = dict(args.given)
        for key in GENERATED:
            if key in self.values:
                continue
            generated = random.RandomPassword(
                f"{name}-{key.replace('_', '-')}",
                length=48 if key == "jwt_secret" else 32,
                # URL- and shell-safe: these end up in connection URLs and env files.
                special=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.values[key] = pulumi.Output.secret(generated.result)
        self.register_outputs({})

    def hashes(self) -> pulumi.Output[dict[str, str]]:
        """SHA-256 of each secret: what the isolation fingerprint may carry, in plain."""
        keys = sorted(self.values)
        hashes = pulumi.Output.all(*(self.values[key] for key in keys)).apply(
            lambda values: {key: secret_hash(str(value)) for key, value in zip(keys, values, strict=True)}
        )
        return pulumi.Output.unsecret(hashes)
