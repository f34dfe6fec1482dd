"""The desired state of a stack, rendered without a Pulumi CLI, cloud or Docker engine.

``python -m tools.desired_state STACK [--project-dir DIR]`` runs the Pulumi program of DIR (or the
one its ``Pulumi.yaml`` names with ``main``, from that directory, as the CLI does) under
Pulumi's own mocks (``pulumi.runtime.set_mocks``) with the config of ``Pulumi.STACK.yaml`` and
prints, as JSON, a sorted list with one entry per resource::

    {"type": ..., "name": ..., "parent": ..., "inputs": {...}, "options": {...}}

plus one entry of type ``pulumi:pulumi:Stack`` whose ``outputs`` are the stack outputs.  Secret
values are replaced by ``"[secret]"``; ``secure:`` config values become placeholders, marked
secret.  The output is byte-identical across runs, so the golden files in ``tests/snapshots/``
show in a pull request what a change does to each stack.

Stack references are answered from ``<DIR>/stack_references/<stack>.json``: the outputs of the
referenced stack, as ``pulumi stack output --json`` prints them (``<stack>`` is the last part of
the referenced name, e.g. ``prod`` for ``organization/makapix/prod``).

Tests use ``render()`` directly: it keeps the unredacted values and knows which are secret.
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format  # type: ignore[import-untyped]
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from cli_support.commands import ExitCode
from components.images import repository_of
from sampling.strict_yaml import YamlFileError, read_yaml_file

SECRET = "[secret]"
STACK_TYPE = "pulumi:pulumi:Stack"


class Secret:
    """A value the program marked secret; ``render`` keeps it wrapped so tests can tell."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Secret({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(json.dumps(self.value, sort_keys=True, default=str))


@dataclass
class RenderedResource:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)

    def plain_inputs(self) -> dict[str, Any]:
        """Inputs with every secret unwrapped (for assertions on values)."""
        plain: dict[str, Any] = _unwrap(self.inputs)
        return plain


@dataclass
class Rendering:
    stack: str
    resources: list[RenderedResource]
    outputs: dict[str, Any]

    def get(self, type_: str, name: str) -> RenderedResource:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if not matches:
            known = sorted(r.name for r in self.resources if r.type == type_)
            raise KeyError(f"no {type_} named {name!r} in stack {self.stack!r}; there are: {known}")
        return matches[0]

    def of_type(self, type_: str) -> list[RenderedResource]:
        return [r for r in self.resources if r.type == type_]

    def plain_outputs(self) -> dict[str, Any]:
        """The stack outputs with every secret unwrapped: what a StackReference reads."""
        plain: dict[str, Any] = _unwrap(self.outputs)
        return plain


class RenderError(Exception):
    """The program could not be rendered (bad config, an exception in the program)."""


def _unwrap_rpc(value: Any) -> Any:
    """Replace Pulumi's RPC secret envelopes by ``Secret`` objects, recursively."""
    if rpc.is_rpc_secret(value):
        return Secret(_unwrap_rpc(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, dict):
        return {key: _unwrap_rpc(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_rpc(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the RPC layer carries every number as a double
    return value


def _redact(value: Any) -> Any:
    if isinstance(value, Secret):
        return SECRET
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, Secret):
        return _unwrap(value.value)
    if isinstance(value, dict):
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def _name_of(urn: str) -> str | None:
    return urn.rsplit("::", 1)[-1] if urn else None


class _RecordingMonitor(mocks.MockMonitor):
    """Pulumi's mock monitor, also keeping each registration's parent, options and the stack outputs."""

    def __init__(self, program_mocks: mocks.Mocks) -> None:
        super().__init__(program_mocks)
        self.recorded: list[RenderedResource] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn: str | None = None

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == STACK_TYPE:
            self.stack_urn = response.urn
            return response
        inputs = _unwrap_rpc(rpc.deserialize_properties(request.object))
        options: dict[str, Any] = {}
        if request.protect:
            options["protect"] = True
        if request.retainOnDelete:
            options["retain_on_delete"] = True
        if request.deleteBeforeReplace:
            options["delete_before_replace"] = True
        if list(request.replaceOnChanges):
            options["replace_on_changes"] = sorted(request.replaceOnChanges)
        if list(request.ignoreChanges):
            options["ignore_changes"] = sorted(request.ignoreChanges)
        if request.HasField("replacement_trigger"):
            trigger = json_format.MessageToDict(request.replacement_trigger)
            options["replacement_trigger"] = _redact(_unwrap_rpc(rpc.deserialize_property(trigger)))
        if request.provider:
            # "<provider urn>::<id>": which Docker engine the resource goes to (remote workers).
            options["provider"] = _name_of(request.provider.rsplit("::", 1)[0])
        depends_on = sorted(filter(None, (_name_of(urn) for urn in request.dependencies)))
        if depends_on:
            options["depends_on"] = depends_on
        self.recorded.append(
            RenderedResource(request.type, request.name, _name_of(request.parent), inputs, options)
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if request.urn == self.stack_urn:
            self.stack_outputs = _unwrap_rpc(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


# Tests: extra provider-computed state for a resource (e.g. real PEMs for tls: resources), or None.
ResourceState = Callable[[mocks.MockResourceArgs], dict[str, Any] | None]


def fake_repo_digest(image: str) -> str:
    """A stable stand-in for the ``repo@sha256:<hex>`` Docker reports after pulling ``image``.

    A name with a digest keeps it (without the tag, as Docker reports it); a tag gets the SHA-256
    of the name, so a different tag means a different digest, as after a real push.
    """
    digest = image.partition("@")[2]
    return f"{repository_of(image)}@{digest or 'sha256:' + hashlib.sha256(image.encode()).hexdigest()}"


class _StackMocks(mocks.Mocks):
    """Outputs equal inputs, plus stable placeholders for what a provider would compute."""

    def __init__(
        self, references: dict[str, dict[str, Any]], resource_state: ResourceState | None = None
    ) -> None:
        self.references = references
        self.resource_state = resource_state

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            stack_name = str(args.inputs.get("name") or args.name)
            short = stack_name.rsplit("/", 1)[-1]
            if short not in self.references:
                raise RenderError(
                    f"the program reads stack {stack_name!r}, but there is no stack_references/{short}.json "
                    "(the outputs of that stack, as `pulumi stack output --json` prints them)"
                )
            state = {"name": stack_name, "outputs": self.references[short], "secretOutputNames": []}
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"mock-secret-{args.name}"
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            # What Docker reports after a pull: repo@sha256:<hex>, here derived from the name.
            state["repoDigest"] = fake_repo_digest(str(args.inputs["name"]))
        elif args.typ.startswith("tls:"):
            # Output names as the provider returns them (camelCase); the SDK maps them to attributes.
            for key in ("privateKeyPem", "privateKeyOpenssh", "certPem", "certRequestPem", "publicKeyPem"):
                state.setdefault(key, f"mock-{key}-{args.name}")
        if self.resource_state is not None:
            state.update(self.resource_state(args) or {})
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class InputError(RenderError):
    """A file of the project cannot be read (the command exits 2): the message names it and what to do."""


def config_text(value: Any) -> str:
    """A stack file value as the Pulumi CLI hands it to the program.

    The CLI keeps a structured value (map, list, or YAML ``null``) as JSON text marked "object", which
    ``Config.get_object`` parses: ``null`` arrives as the text ``null`` and reads back as None
    (pulumi/sdk/go/common/resource/config/object.go, ``MarshalString``). Scalars arrive as their text.
    """
    if value is None or isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_yaml(path: Path, what_to_do: str) -> Any:
    try:
        return read_yaml_file(path)
    except YamlFileError as error:
        raise InputError(f"{error}{what_to_do}") from None


def _stack_config(project_dir: Path, project: str, stack: str) -> tuple[dict[str, str], list[str]]:
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise InputError(
            f"{stack_file}: no such stack file; create it (`config:` with this stack's settings) "
            f"or name another stack"
        )
    document = _read_yaml(stack_file, "") or {}
    if not isinstance(document, dict):
        raise InputError(
            f"{stack_file}: the file must be a YAML mapping with a `config:` key, not a "
            f"{type(document).__name__}; e.g. `{project}:environment: development` indented under `config:`"
        )
    settings = document.get("config") or {}
    if not isinstance(settings, dict):
        raise InputError(
            f"{stack_file}: `config:` must be a mapping of `{project}:<key>: value`, not a "
            f"{type(settings).__name__}; e.g. `{project}:environment: development` indented under `config:`"
        )
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in settings.items():
        key = str(key)
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Encrypted: unreadable without the stack's passphrase. A placeholder stands in.
            values[full_key] = f"placeholder-for-{full_key.replace(':', '-')}"
            secret_keys.append(full_key)
        else:
            values[full_key] = config_text(value)
    return values, secret_keys


def _references(project_dir: Path) -> dict[str, dict[str, Any]]:
    folder = project_dir / "stack_references"
    if not folder.is_dir():
        return {}
    references: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        what_to_do = (
            "; regenerate it with `python -m tools.desired_state "
            f"{path.stem} --project-dir {project_dir} --outputs > {path}` (or scripts/update-snapshots)"
        )
        try:
            outputs = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text{what_to_do}") from None
        except json.JSONDecodeError as error:
            raise InputError(
                f"{path}: line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}){what_to_do}"
            ) from None
        if not isinstance(outputs, dict):
            raise InputError(
                f"{path}: must be a JSON object of the stack's outputs, not {type(outputs).__name__}{what_to_do}"
            )
        references[path.stem] = outputs
    return references


def _run_program(project_dir: Path) -> None:
    runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")


@contextmanager
def _inside(project_dir: Path) -> Iterator[None]:
    """Run as the Pulumi CLI runs a program: from its directory, importing its own packages."""
    previous_dir = Path.cwd()
    previous_path = list(sys.path)
    os.chdir(project_dir)
    sys.path.insert(0, str(project_dir))
    try:
        yield
    finally:
        os.chdir(previous_dir)
        sys.path[:] = previous_path


def render(
    stack: str,
    project_dir: Path | str = ".",
    extra_config: dict[str, Any] | None = None,
    references: dict[str, dict[str, Any]] | None = None,
    resource_state: ResourceState | None = None,
) -> Rendering:
    """Run the program of ``project_dir`` for ``stack`` under mocks and return what it declares.

    For tests: ``extra_config`` (keys without namespace) overrides stack file values,
    ``references`` (stack -> outputs) overrides files in ``stack_references/``, and
    ``resource_state`` adds what a provider would compute (e.g. real certificates).
    """
    project_dir = Path(project_dir).resolve()
    project_path = project_dir / "Pulumi.yaml"
    if not project_path.is_file():
        raise InputError(
            f"{project_path}: no such file; {project_dir} is not a Pulumi project: pass --project-dir "
            "with the directory that holds Pulumi.yaml"
        )
    project_file = _read_yaml(project_path, "")
    if not isinstance(project_file, dict) or not isinstance(project_file.get("name"), str):
        raise InputError(
            f"{project_path}: must be a YAML mapping with the project's `name:`; e.g. `name: makapix`"
        )
    project = project_file["name"]
    # Pulumi.yaml `main`: the program lives elsewhere (examples/clippyfront runs the repository's program).
    program_dir = (project_dir / str(project_file.get("main") or ".")).resolve()
    config, secret_keys = _stack_config(project_dir, project, stack)
    for key, value in (extra_config or {}).items():
        config[f"{project}:{key}"] = config_text(value)
    monitor = _RecordingMonitor(
        _StackMocks({**_references(project_dir), **(references or {})}, resource_state)
    )

    def run() -> None:
        # "organization": the organization of every stack in a self-managed (file, S3...) backend.
        pulumi.runtime.set_mocks(
            monitor.mocks,
            project=project,
            stack=stack,
            preview=False,
            monitor=monitor,
            organization="organization",
        )
        pulumi.runtime.set_all_config(config, secret_keys)
        # A failed earlier render may leave pending work behind; start from none, as pulumi.runtime.test does.
        runtime_settings.SETTINGS.rpc_manager.clear()
        runtime_settings.SETTINGS.outputs.clear()
        # set_mocks made a root stack for unit tests; run the program in a stack of its own, as the CLI does.
        runtime_settings.ROOT.set(None)
        with _inside(program_dir):
            _sync_await(run_in_stack(lambda: _run_program(program_dir)))

    try:
        # A fresh context: Pulumi keeps its runtime state (root stack, config) in context variables.
        contextvars.Context().run(run)
    except RenderError:
        raise
    except Exception as error:  # the program's own error, e.g. a ConfigurationError
        raise RenderError(str(error)) from error
    resources = sorted(monitor.recorded, key=lambda r: (r.type, r.name))
    stack_entry = RenderedResource(STACK_TYPE, f"{project}-{stack}", None, {}, {})
    rendering = Rendering(stack, resources, monitor.stack_outputs)
    rendering.resources.append(stack_entry)
    return rendering


def to_json(rendering: Rendering) -> str:
    """The snapshot text: resources sorted by type and name, secrets redacted; the stack entry has the outputs."""
    entries: list[dict[str, Any]] = []
    for resource in sorted(rendering.resources, key=lambda r: (r.type, r.name)):
        entry = {
            "type": resource.type,
            "name": resource.name,
            "parent": resource.parent,
            "inputs": _redact(resource.inputs),
            "options": resource.options,
        }
        if resource.type == STACK_TYPE:
            entry["outputs"] = _redact(rendering.outputs)
        entries.append(entry)
    return json.dumps(entries, indent=2, sort_keys=True, default=str) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.desired_state", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("stack", help="stack name, e.g. dev (reads Pulumi.dev.yaml)")
    parser.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    parser.add_argument(
        "--outputs",
        action="store_true",
        help="print only the stack outputs (secrets redacted): the content of stack_references/STACK.json",
    )
    args = parser.parse_args(argv)
    try:
        rendering = render(args.stack, args.project_dir)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except RenderError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.FAILED
    if args.outputs:
        sys.stdout.write(json.dumps(_redact(rendering.outputs), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(to_json(rendering))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
