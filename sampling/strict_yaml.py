"""Reading a YAML file a person wrote: UTF-8 only, no duplicate keys, errors that name file and line.

PyYAML lets the last of two equal keys win silently; the Pulumi CLI (Go's yaml.v3) refuses them,
and so do the sampler's configuration and ``tools.desired_state``: a duplicate is almost always a
mistake whose first value the author believes is in force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file cannot be read as YAML; the message names the file, the line and what to do."""


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping has the same key twice (its message says which and where)."""


class _NoDuplicateKeysLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that has the same key twice."""


def _construct_mapping(loader: _NoDuplicateKeysLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, (str, int, float, bool, type(None))) and key in seen:
            raise _DuplicateKeyError(
                None,
                None,
                f"key {key!r} appears twice in one mapping (first on line {seen[key]}); keep one of them",
                key_node.start_mark,
            )
        if isinstance(key, (str, int, float, bool, type(None))):
            seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_NoDuplicateKeysLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_yaml(text: str, source: str) -> Any:
    """The document in ``text``; ``source`` (a file name) starts every error message."""
    try:
        return yaml.load(text, Loader=_NoDuplicateKeysLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = error.problem or str(error)
        context = f" ({error.context})" if error.context else ""
        advice = "" if isinstance(error, _DuplicateKeyError) else "; fix the YAML there"
        raise YamlFileError(f"{source}: {where}{problem}{context}{advice}") from None
    except yaml.YAMLError as error:
        raise YamlFileError(f"{source}: not valid YAML: {error}; fix the file") from None


def read_yaml_file(path: Path) -> Any:
    """The YAML document in ``path``, which must be UTF-8 text."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise YamlFileError(f"{path}: cannot read it: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise YamlFileError(
            f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not UTF-8; save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    return parse_yaml(text, str(path))
