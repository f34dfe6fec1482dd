"""Application images by digest: production runs exactly the images development verified.

Every environment pulls each service's image with a ``docker.RemoteImage`` (kept on the host:
both environments may run the same image, and removing it when one moves on would fail or
break the other) and runs the container by its registry digest, ``repo@sha256:<hex>``.

- Development (no ``promotion.from_stack``) names images by tag; the container runs the digest
  Docker reports for the pulled tag (``RemoteImage.repo_digest``), and the stack exports exactly
  that as ``image_digests`` (service -> digest).
- Production takes digests only: from the ``image_digests`` output of ``promotion.from_stack``
  (a StackReference), or pinned in its stack file (``services.<name>.image: repo@sha256:...``).
  A pin wins over promotion for its service; a service with neither is a configuration error.
  Production also exports ``previous_image_digests``: the last different set it ran, read from
  its own last outputs through a StackReference to itself, so pinning back is one config change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker as docker

from components.config import PromotionSettings
from components.parsing import ConfigurationError

DIGESTS_OUTPUT = "image_digests"
PREVIOUS_DIGESTS_OUTPUT = "previous_image_digests"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:\d{1,5}/[a-z0-9._/-]+)?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def digest_reference(image: str) -> str | None:
    """``repo@sha256:<hex>`` of an image reference that carries a digest (a tag is dropped), else None."""
    name, at, digest = image.partition("@")
    if not at or not _DIGEST.match(digest):
        return None
    repository, _, last = name.rpartition("/")
    if ":" in last:  # repo:tag@digest: Docker runs the digest and ignores the tag
        last, _, tag = last.partition(":")
        if not _TAG.match(tag):
            return None
    repository = f"{repository}/{last}" if repository else last
    return f"{repository}@{digest}" if _REPOSITORY.match(repository) else None


def pulled_digest(service: str, image: str, repo_digest: str | None) -> str:
    """The digest the Docker host reports for a pulled image; refuses an image without one."""
    reference = digest_reference(repo_digest or "")
    if reference is None:
        raise ConfigurationError(
            f"services.{service}.image {image!r}: the Docker host reports no registry digest for it "
            f"(got {repo_digest!r}); it was built locally or never pulled from a registry. Push it to "
            "a registry and name it by its registry name: environments run, and production promotes, "
            "images by digest"
        )
    return reference


@dataclass(frozen=True)
class Resolution:
    """Where each production service's digest comes from."""

    pinned: dict[str, str]
    # Services that take the promoted stack's digest (empty when every service is pinned).
    promoted: list[str]


def production_resolution(
    configured: Mapping[str, str], promotion: PromotionSettings, stack_file: str, namespace: str
) -> Resolution:
    """Pinned digests from the stack file; the rest must be promoted, or it is an error (before any resource).

    ``configured``: each service's ``services.<name>.image`` as the stack file gives it.
    """
    pinned: dict[str, str] = {}
    unpinned: list[str] = []
    for service, image in sorted(configured.items()):
        reference = digest_reference(image)
        if reference is None:
            unpinned.append(service)
        else:
            pinned[service] = reference
    if unpinned and promotion.from_stack is None:
        problems = [
            f"{namespace}:services.{service}.image: {configured[service]!r} is a tag, not a digest"
            for service in unpinned
        ]
        raise ConfigurationError(_digest_error(configured, stack_file, namespace, problems, unpinned[0]))
    return Resolution(pinned=pinned, promoted=unpinned)


def promoted_images(
    configured: Mapping[str, str],
    promotion: PromotionSettings,
    stack_file: str,
    namespace: str,
    resolution: Resolution,
    exported: Any,
) -> dict[str, str]:
    """Every production service's digest: its pin, or the promoted stack's ``image_digests`` entry."""
    source = promotion.from_stack
    images = dict(resolution.pinned)
    if not resolution.promoted:
        return images
    if not isinstance(exported, Mapping):
        raise ConfigurationError(
            _digest_error(
                configured,
                stack_file,
                namespace,
                [
                    f"{namespace}:promotion.from_stack: stack {source!r} exports no {DIGESTS_OUTPUT} output "
                    f"(got {exported!r}); deploy it with this program first (scripts/up {source})"
                ],
                resolution.promoted[0],
            )
        )
    problems = []
    for service in resolution.promoted:
        offered = exported.get(service)
        reference = digest_reference(offered) if isinstance(offered, str) else None
        if reference is None:
            what = (
                "no digest" if offered is None else f"{offered!r}, which is not repo@sha256:<64 hex digits>"
            )
            problems.append(
                f"{namespace}:services.{service}.image: {configured[service]!r} is a tag, and "
                f"stack {source!r} ({namespace}:promotion.from_stack) exports {what} for {service!r} "
                f"in {DIGESTS_OUTPUT}"
            )
        elif repository_of(reference) != repository_of(configured[service]):
            # Never run an image of another repository than the one this stack names.
            problems.append(
                f"{namespace}:services.{service}.image: stack {source!r} ({namespace}:promotion.from_stack) "
                f"runs {reference!r} for {service!r}, from repository {repository_of(reference)!r}, but "
                f"this stack names repository {repository_of(configured[service])!r}; "
                "name the same repository in both stacks"
            )
        else:
            images[service] = reference
    if problems:
        raise ConfigurationError(
            _digest_error(configured, stack_file, namespace, problems, resolution.promoted[0])
        )
    return images


def repository_of(image: str) -> str:
    """The repository of an image reference, without tag or digest (``registry:5000/app:1`` -> ``registry:5000/app``)."""
    name = image.partition("@")[0]
    repository, slash, last = name.rpartition("/")
    return f"{repository}{slash}{last.partition(':')[0]}"


def _digest_error(
    configured: Mapping[str, str], stack_file: str, namespace: str, problems: list[str], example_service: str
) -> str:
    example = f"{repository_of(configured[example_service])}@sha256:<64 hex digits>"
    lines = [f"{stack_file}: production runs application images by digest only ({len(problems)} problem(s)):"]
    lines += [f"  {problem}" for problem in problems]
    lines += [
        "Fix it either way:",
        f"  - promote what development runs: `{namespace}:promotion: {{from_stack: dev}}` (the stack's "
        f"{DIGESTS_OUTPUT} output; deploy dev first),",
        f"  - or pin the digest in {stack_file}: `{namespace}:services: {{{example_service}: "
        f"{{image: '{example}'}}}}` (a pin wins over promotion).",
    ]
    return "\n".join(lines)


def previous_digests(current: Mapping[str, str], last: Any, last_previous: Any) -> dict[str, str]:
    """The last set of digests this stack ran that differs from ``current`` ({} before the first change)."""
    if isinstance(last, Mapping) and last and dict(last) != dict(current):
        return dict(last)
    return dict(last_previous) if isinstance(last_previous, Mapping) else {}


@dataclass(frozen=True)
class ServiceImagesArgs:
    # Each service's services.<name>.image as configured: a tag, or (production) a pinned digest.
    configured: dict[str, str]
    # Production runs digests only, pinned or promoted; development runs what its tags point at.
    production: bool
    promotion: PromotionSettings
    # For error messages: the stack file and config namespace the settings came from.
    stack_file: str
    namespace: str


class ServiceImages(pulumi.ComponentResource):
    """Pulls each service's image and gives the digest its container runs (``images``)."""

    images: dict[str, pulumi.Output[str]]
    digests: pulumi.Output[dict[str, str]]
    # Production only: what the stack ran before the current digests.
    previous_digests: pulumi.Output[dict[str, str]] | None

    def __init__(
        self, name: str, args: ServiceImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("makapix:environment:ServiceImages", name, None, opts)
        configured = args.configured
        promotion = args.promotion
        child = pulumi.ResourceOptions(parent=self)
        production = args.production
        wanted: dict[str, pulumi.Output[str]]
        if production:
            resolution = production_resolution(configured, promotion, args.stack_file, args.namespace)
            exported: pulumi.Output[Any] = pulumi.Output.from_input(None)
            if resolution.promoted:
                source = pulumi.StackReference(
                    f"{name}-promoted-from", stack_name=promotion.from_stack, opts=child
                )
                exported = source.get_output(DIGESTS_OUTPUT)
            if resolution.pinned and promotion.from_stack is not None:
                pulumi.log.warn(
                    f"{', '.join(sorted(resolution.pinned))}: image pinned in {args.stack_file}, "
                    f"not promoted from stack {promotion.from_stack!r}"
                )
            resolved = exported.apply(
                lambda offered: promoted_images(
                    configured, promotion, args.stack_file, args.namespace, resolution, offered
                )
            )
            wanted = {service: resolved.apply(_entry(service)) for service in configured}
        else:
            wanted = {service: pulumi.Output.from_input(image) for service, image in configured.items()}

        self.images = {}
        for service, image in sorted(wanted.items()):
            pulled = docker.RemoteImage(
                f"{name}-{service}",
                name=image,
                # Both environments may run one image: removing it on replace would fail or break the other.
                keep_locally=True,
                opts=child,
            )
            if production:
                # The digest itself (known in a preview), carrying the dependency on the pull.
                self.images[service] = pulled.name
            else:
                self.images[service] = pulled.repo_digest.apply(_checked_pull(service, configured[service]))
        self.digests = pulumi.Output.all(**self.images).apply(lambda images: dict(sorted(images.items())))

        self.previous_digests = None
        if production:
            own = pulumi.StackReference(
                f"{name}-last-deploy",
                stack_name=f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
                opts=child,
            )
            self.previous_digests = pulumi.Output.all(
                self.digests, own.get_output(DIGESTS_OUTPUT), own.get_output(PREVIOUS_DIGESTS_OUTPUT)
            ).apply(lambda values: previous_digests(values[0], values[1], values[2]))
        self.register_outputs({"digests": self.digests})


def _entry(service: str) -> Callable[[Mapping[str, str]], str]:
    return lambda images: images[service]


def _checked_pull(service: str, image: str) -> Callable[[str | None], str]:
    return lambda repo_digest: pulled_digest(service, image, repo_digest)
