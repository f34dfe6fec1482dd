"""A stack's settings: merged onto its application's defaults, refused or validated, errors explained.

A stack file holds only what differs from the defaults of its application (components/profiles.py,
chosen by the Pulumi project's name).  How a stack value overrides a default is one rule, applied by
``merge_settings``:

    maps merge key by key (recursively); every other value — lists included — replaces.

So ``makapix:services: {worker: {concurrency: 8}}`` changes only the worker's concurrency, while
``makapix:services: {worker: {queues: [cpu]}}`` replaces the whole queue list.

The merged settings are validated by the model (components/config.py); a problem becomes a
``ConfigurationError`` naming the stack file, the key, what is wrong and what a valid value looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from cli_support.validation import problem_lines
from components.config import SECRET_KEYS, EnvironmentConfig, is_bare_repository
from components.profiles import PROFILES, environment_defaults


def merge_settings(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The override rule: maps merge key by key, recursively; everything else (lists too) replaces."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


class ConfigurationError(Exception):
    """Configuration that cannot be deployed; the message says where, what and how to fix it."""


def parse_environment(stack_values: Mapping[str, Any], source: str, namespace: str) -> EnvironmentConfig:
    """Validate a stack's settings (keys without namespace) on top of its application's defaults.

    ``source`` names where the values came from (the stack file) for error messages; ``namespace``
    is the Pulumi project's name, which selects the application's profile.
    """
    if not isinstance(stack_values, Mapping):
        raise ConfigurationError(f"{source}: the config must be a map of {namespace}:* keys")
    if namespace not in PROFILES:
        raise ConfigurationError(
            f"{source}: the Pulumi project is named {namespace!r} (`name:` in Pulumi.yaml) and no application "
            f"has defaults under that name; known projects: {', '.join(PROFILES)}. Name the project after its "
            "application in Pulumi.yaml, or add a profile for it to components/profiles.py"
        )
    # Secret keys are read separately, as Pulumi secrets; they are not settings.
    values = {key: value for key, value in stack_values.items() if key not in SECRET_KEYS}
    environment = values.get("environment")
    if environment not in ("production", "development"):
        raise ConfigurationError(
            f"{source}: {namespace}:environment is {'missing' if environment is None else repr(environment)}; "
            "set it to 'production' or 'development'"
        )
    name = values.get("name") if isinstance(values.get("name"), str) else None
    merged = _without_variables_of_null_sections(
        merge_settings(environment_defaults(namespace, environment, name), values), values
    )
    if environment == "production":
        _refuse_production_tag_pins(values, source, namespace)
    _refuse_bare_repositories_without_promotion(values, merged, environment, source, namespace)
    try:
        return EnvironmentConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error, source, namespace)) from None


_DIGEST_SUFFIX = re.compile(r"@sha256:[0-9a-f]{64}$")


def _refuse_production_tag_pins(values: Mapping[str, Any], source: str, namespace: str) -> None:
    """A production stack file that names a service image by tag: refused, never replaced by a promoted digest.

    Production runs digests only; a tag written in its stack file would otherwise be dropped in
    favour of what ``promotion.from_stack`` exports, so the author would not run what they wrote.
    """
    services = values.get("services")
    if not isinstance(services, Mapping):
        return
    for service, service_values in sorted(services.items()):
        image = service_values.get("image") if isinstance(service_values, Mapping) else None
        if isinstance(image, str) and not _DIGEST_SUFFIX.search(image) and not is_bare_repository(image):
            raise ConfigurationError(
                f"{source}: {namespace}:services.{service}.image is {image!r}, a tag: production runs "
                "images by digest only. Pin the digest of that tag instead "
                f"(`{image.partition('@')[0]}` -> `repo@sha256:<64 hex digits>`, as `docker buildx imagetools "
                f"inspect {image}` prints it), or remove the key to run what stack promotion.from_stack runs (name only the "
                f"repository, `{image.partition('@')[0].rpartition(':')[0] or image}`, to run it from there)"
            )


def _refuse_bare_repositories_without_promotion(
    values: Mapping[str, Any], merged: Mapping[str, Any], environment: str, source: str, namespace: str
) -> None:
    """A bare repository (no tag, no digest) says "run what is promoted from here": production with promotion only."""
    services = values.get("services")
    if not isinstance(services, Mapping):
        return
    promotion = merged.get("promotion")
    promotes = isinstance(promotion, Mapping) and promotion.get("from_stack") is not None
    for service, service_values in sorted(services.items()):
        image = service_values.get("image") if isinstance(service_values, Mapping) else None
        if (
            isinstance(image, str)
            and is_bare_repository(image)
            and not (environment == "production" and promotes)
        ):
            raise ConfigurationError(
                f"{source}: {namespace}:services.{service}.image is {image!r}, a repository without a tag or a "
                "digest; only a production stack that promotes (promotion.from_stack) may name one, to run the "
                f"digest promoted from it. Give a tag or a digest, e.g. '{image}:1.4.2' or "
                f"'{image}@sha256:<64 hex digits>'"
            )


def _without_variables_of_null_sections(merged: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``email: null`` / ``mqtt: null`` in the stack file also drop the *default* variables read from them.

    "The app sends no email" is then one line. A variable the stack file itself maps to a null
    section is still refused by the model (it names the variable).
    """
    nulled = [section for section in ("mqtt", "email") if section in values and values[section] is None]
    application = merged.get("application")
    if not nulled or not isinstance(application, Mapping):
        return merged
    own = values.get("application")
    own_variables = own.get("variables") if isinstance(own, Mapping) else None
    if not isinstance(own_variables, Mapping):
        own_variables = {}
    variables = dict(application.get("variables") or {})
    for variable, source in variables.items():
        if variable not in own_variables and isinstance(source, str) and source.split(".")[0] in nulled:
            variables[variable] = None
    return {**merged, "application": {**application, "variables": variables}}


def describe_validation_error(error: ValidationError, source: str, namespace: str) -> str:
    """One line per problem: file, key, what is wrong, and what a valid value looks like."""

    def key(location: tuple[str, ...]) -> str:
        return ":".join([namespace, ".".join(location)]) if location else namespace

    lines = problem_lines(
        error,
        key,
        example=lambda location: _example_for(list(location)),
        unknown_key_hint=" (see the configuration reference in README.md)",
    )
    return "\n".join(
        [
            f"{source}: invalid configuration ({error.error_count()} problem(s)):",
            *(f"  {line}" for line in lines),
        ]
    )


def _example_for(location: list[str]) -> Any:
    """The documented example of the field at ``location``, found by walking the models."""
    model: Any = EnvironmentConfig
    example: Any = None
    for part in location:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            continue
        field = fields[part]
        example = field.examples[0] if field.examples else None
        annotation = field.annotation
        model = next(
            (
                arg
                for arg in getattr(annotation, "__args__", (annotation,))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ),
            annotation,
        )
    return example
