"""Each application's values come from its own profile: none leaks from Makapix into ClippyFront,
the model's defaults name no application, and an unknown project is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from components.config import EnvironmentConfig
from components.parsing import ConfigurationError, parse_environment
from components.profiles import PROFILES, environment_defaults

ROOT = Path(__file__).resolve().parents[2]
CLIPPYFRONT = ROOT / "examples" / "clippyfront"


def stack_values(project_dir: Path, stack: str) -> dict[str, Any]:
    config = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in config.items()}


def strings_containing(word: str, value: Any, path: str = "") -> list[str]:
    """``path: value`` of every string (and map key) inside ``value`` that contains ``word``."""
    if isinstance(value, dict):
        found = [f"{path}.{key}" for key in value if word in str(key).lower()]
        for key, item in value.items():
            found += strings_containing(word, item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        return [hit for index, item in enumerate(value) for hit in strings_containing(word, item, f"{path}[{index}]")]
    return [f"{path}: {value!r}"] if isinstance(value, str) and word in value.lower() else []


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_a_clippyfront_stack_gets_no_makapix_value(stack):
    settings = parse_environment(stack_values(CLIPPYFRONT, stack), f"Pulumi.{stack}.yaml", "clippyfront")
    assert strings_containing("makapix", settings.model_dump(mode="json")) == []


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_a_makapix_stack_gets_no_clippyfront_value(stack):
    settings = parse_environment(stack_values(ROOT, stack), f"Pulumi.{stack}.yaml", "makapix")
    assert strings_containing("clippy", settings.model_dump(mode="json")) == []


def test_the_helper_finds_a_leak():
    """Guard: the leak test above would see a Makapix value deep inside a ClippyFront config."""
    assert strings_containing("makapix", {"host": {"checkout": "/opt/Makapix-infra"}, "queues": ["gpu"]}) == [
        ".host.checkout: '/opt/Makapix-infra'"
    ]


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every settings model reachable from its fields (through lists, maps and unions)."""
    found = [model]
    for field in model.model_fields.values():
        pending: list[Any] = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += [inner for inner in _models(annotation) if inner not in found]
            pending += get_args(annotation)
    return found


def test_the_model_names_no_application_in_its_defaults():
    models = _models(EnvironmentConfig)
    assert {"HostSettings", "ReleaseSettings", "SamplingSettings", "DatabaseSettings"} <= {
        model.__name__ for model in models
    }
    named = []
    for model in models:
        for name, field in model.model_fields.items():
            if field.default_factory is not None:
                default = field.default_factory()  # type: ignore[call-arg]
            elif field.default is not PydanticUndefined:
                default = field.default
            else:
                continue
            text = json.dumps(default.model_dump(mode="json") if isinstance(default, BaseModel) else default)
            named += [f"{model.__name__}.{name}: {text}" for application in PROFILES if application in text]
    assert named == []


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("environment", "name"), [("production", "prod"), ("development", "dev")])
def test_each_profile_names_its_own_project(profile, environment, name):
    defaults = environment_defaults(profile, environment)
    assert (defaults["project"], defaults["name"]) == (profile, name)
    assert defaults["host"]["checkout"] == f"/opt/{profile}-infra"
    assert environment_defaults(profile, environment, "staging")["release"]["backup_dir"] == (
        f"/srv/{profile}/backups/staging"
    )
    others = [other for other in PROFILES if other != profile]
    assert all(strings_containing(other, defaults) == [] for other in others)


def test_an_unknown_project_is_refused_naming_pulumi_yaml_and_the_known_projects():
    with pytest.raises(ConfigurationError) as refused:
        parse_environment(stack_values(CLIPPYFRONT, "dev"), "Pulumi.dev.yaml", "clippy-front")
    message = str(refused.value)
    assert message.startswith("Pulumi.dev.yaml: the Pulumi project is named 'clippy-front' (`name:` in Pulumi.yaml)")
    assert "known projects: makapix, clippyfront" in message
