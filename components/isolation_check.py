"""The dev stack's refusal to deploy when it would share anything with the prod stack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pydantic import ValidationError

from components.isolation import Fingerprint, collision_report, find_collisions


class IsolationError(Exception):
    """This stack would share data, names, routes or credentials with its peer."""


@dataclass(frozen=True)
class IsolationCheckArgs:
    stack_name: str
    peer_stack: str
    # This stack's fingerprint as exported (``Fingerprint.model_dump``).
    mine: pulumi.Output[dict[str, Any]]


def check_against_peer(
    stack_name: str, peer_stack: str, mine: dict[str, Any], theirs: Any
) -> dict[str, Any]:
    if not isinstance(theirs, dict):
        raise IsolationError(
            f"stack {peer_stack!r} exports no isolation_fingerprint; deploy it with this program first, "
            f"or set isolation.peer_stack to null in Pulumi.{stack_name}.yaml to skip the check"
        )
    try:
        peer = Fingerprint.model_validate(theirs)
    except ValidationError as error:
        raise IsolationError(
            f"stack {peer_stack!r} exports an isolation_fingerprint this program cannot read "
            f"({error.error_count()} problem(s), first: {error.errors()[0]['loc']} {error.errors()[0]['msg']}); "
            "deploy that stack with this version of the program first"
        ) from None
    collisions = find_collisions(Fingerprint.model_validate(mine), peer)
    if collisions:
        raise IsolationError(collision_report(collisions, stack_name, peer_stack))
    return theirs


class IsolationCheck(pulumi.ComponentResource):
    """Reads the peer's fingerprint through a StackReference; any collision fails the deployment."""

    peer_fingerprint: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: IsolationCheckArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:IsolationCheck", name, None, opts)
        peer = pulumi.StackReference(
            f"{name}-peer", stack_name=args.peer_stack, opts=pulumi.ResourceOptions(parent=self)
        )
        self.peer_fingerprint = pulumi.Output.all(args.mine, peer.get_output("isolation_fingerprint")).apply(
            lambda pair: check_against_peer(args.stack_name, args.peer_stack, pair[0], pair[1])
        )
        self.register_outputs({"peer_fingerprint": self.peer_fingerprint})
