"""Reads the running stack's Pulumi config into the validated ``EnvironmentConfig``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.config import DEPLOY_SECRET_KEYS, SECRET_KEYS, EnvironmentConfig
from components.parsing import ConfigurationError, parse_environment


@dataclass(frozen=True)
class StackConfig:
    """The validated settings of this stack plus its secret config values (as Pulumi secrets)."""

    settings: EnvironmentConfig
    # The application's secrets (reach containers, fingerprinted as hashes).
    secrets: dict[str, pulumi.Output[str]]
    stack_file: str
    # The deployment's own secrets (DEPLOY_SECRET_KEYS), e.g. the SSH key of host commands.
    deploy_secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    # Stacks known not to exist on this backend (MAKAPIX_ABSENT_STACKS, set by scripts/up): no
    # StackReference may name them, Pulumi would fail the whole deployment.
    absent_stacks: frozenset[str] = frozenset()
    # The peer stack (isolation.peer_stack, as the stack file names it) does not exist yet; the
    # isolation check against it is then skipped and ``settings`` names no peer.
    peer_absent: bool = False

    def stack_exists(self, name: str) -> bool:
        """False for a stack named (fully, or by its last part) in MAKAPIX_ABSENT_STACKS."""
        return not _named_in(name, self.absent_stacks)


def _named_in(stack: str, names: frozenset[str]) -> bool:
    return stack in names or stack.rsplit("/", 1)[-1] in names


def _stack_config_values(namespace: str) -> dict[str, Any]:
    """Every ``<namespace>:<key>`` value the engine passed to this program, objects decoded.

    Pulumi has no public call that lists config keys; unknown keys must still be errors, so this
    reads the same two places ``pulumi.Config`` reads (the runtime map and PULUMI_CONFIG).
    """
    raw: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    values: dict[str, Any] = {}
    for full_key, value in raw.items():
        namespace_part, _, key = full_key.partition(":")
        if namespace_part != namespace or not key:
            continue
        values[key] = _decode(value)
    return values


def _decode(value: Any) -> Any:
    """Structured values arrive as JSON text; scalars stay text and pydantic coerces them.

    A YAML ``null`` arrives as the JSON text ``null`` (the CLI passes it as an object, which
    ``Config.get_object`` reads as None): ``makapix:email: null`` means "no email".
    """
    if value == "null":
        return None
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_stack_config() -> StackConfig:
    """Validate this stack's config before any resource is declared; raise a clear error if it is wrong."""
    namespace = pulumi.get_project()
    stack_file = f"Pulumi.{pulumi.get_stack()}.yaml"
    values = _stack_config_values(namespace)
    plain_secrets = [
        key
        for key in SECRET_KEYS
        if key in values and not runtime_config.is_config_secret(f"{namespace}:{key}")
    ]
    if plain_secrets:
        raise ConfigurationError(
            f"{stack_file}: {', '.join(f'{namespace}:{key}' for key in plain_secrets)} is stored in plain text; "
            f"remove it and set it with `pulumi config set --secret {namespace}:{plain_secrets[0]} ...`"
        )
    settings = parse_environment(values, stack_file, namespace)
    absent_stacks = frozenset(
        name.strip() for name in os.environ.get("MAKAPIX_ABSENT_STACKS", "").split(",") if name.strip()
    )
    peer = settings.isolation.peer_stack
    peer_absent = bool(peer) and _named_in(str(peer), absent_stacks)
    if peer_absent:
        # scripts/up sets this on a fresh machine, where the peer stack does not exist yet.
        pulumi.log.warn(f"isolation check against stack {settings.isolation.peer_stack!r} skipped")
        settings = settings.model_copy(
            update={"isolation": settings.isolation.model_copy(update={"peer_stack": None})}
        )
    config = pulumi.Config(namespace)
    secrets: dict[str, pulumi.Output[str]] = {}
    deploy_secrets: dict[str, pulumi.Output[str]] = {}
    for key in SECRET_KEYS:
        secret = config.get_secret(key)
        if secret is not None:
            (deploy_secrets if key in DEPLOY_SECRET_KEYS else secrets)[key] = secret
    return StackConfig(
        settings=settings,
        secrets=secrets,
        stack_file=stack_file,
        deploy_secrets=deploy_secrets,
        absent_stacks=absent_stacks,
        peer_absent=peer_absent,
    )
