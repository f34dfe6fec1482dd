"""Each component's ``…Args`` names the configuration sections it depends on, never the whole configuration.

An Args field typed ``EnvironmentConfig`` hides what the component reads; give it the sections instead
(``ServiceSettings``, ``HostSettings``, ``ReleaseSettings``, ...), as ``DbArgs`` does in pulumi/examples'
aws-py-wordpress-fargate-rds.
"""

from __future__ import annotations

import ast
from pathlib import Path

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
WHOLE_CONFIGURATION = "EnvironmentConfig"


def _names_in(annotation: ast.expr) -> set[str]:
    """Every name an annotation mentions, also inside a quoted (string) annotation."""
    names: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= _names_in(ast.parse(node.value, mode="eval").body)
    return names


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _names_in(target) & {"dataclass"}:
            return True
    return False


def args_fields(source: str, module: str) -> dict[str, list[str]]:
    """``module.Class`` -> the fields annotated with the whole configuration, for every ``…Args`` dataclass."""
    found: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Args") and _is_dataclass(node):
            found[f"{module}.{node.name}"] = [
                statement.target.id
                for statement in node.body
                if isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and WHOLE_CONFIGURATION in _names_in(statement.annotation)
            ]
    return found


def all_args() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(COMPONENTS.glob("*.py")):
        found |= args_fields(path.read_text(), path.stem)
    return found


def test_no_args_takes_the_whole_configuration() -> None:
    args = all_args()
    # The walk sees the components' Args at all (a rename of the directory would make this test vacuous).
    assert {"app.AppServiceArgs", "database.DatabaseArgs", "mqtt.MqttBrokerArgs", "edge.EdgeArgs"} <= set(args)
    offenders = [
        f"components/{name.replace('.', '.py: ')}.{field}: {WHOLE_CONFIGURATION}"
        for name, fields in sorted(args.items())
        for field in fields
    ]
    assert not offenders, (
        "these Args take the whole configuration; name the sections the component reads instead:\n"
        + "\n".join(offenders)
    )


def test_the_check_sees_whole_configuration_fields_however_they_are_written() -> None:
    source = '''
from dataclasses import dataclass
import dataclasses
from components import config

@dataclass(frozen=True)
class PlainArgs:
    settings: EnvironmentConfig
    name: str

@dataclasses.dataclass
class QuotedArgs:
    settings: "EnvironmentConfig | None"

@dataclass
class QualifiedArgs:
    settings: list[config.EnvironmentConfig]

@dataclass
class NarrowArgs:
    host: HostSettings

class NotADataclassArgs:
    settings: EnvironmentConfig
'''
    assert args_fields(source, "example") == {
        "example.PlainArgs": ["settings"],
        "example.QuotedArgs": ["settings"],
        "example.QualifiedArgs": ["settings"],
        "example.NarrowArgs": [],
    }
