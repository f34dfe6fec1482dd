"""Preview the Caddyfile that caddy-docker-proxy builds from container labels.

caddy-docker-proxy (github.com/lucaslorentz/caddy-docker-proxy) watches Docker, reads every
container's ``caddy*`` labels and turns them into one in-memory Caddyfile.  This module redoes that
translation in Python for the part of it our labels use, so that tests can feed the labels each stack
declares to a real ``caddy`` and an operator can see what Caddy will get before deploying:

    python -m tools.caddy_docker_proxy LABELS.json

LABELS.json is a list of ``{"labels": {...}, "address": "172.18.0.5"}`` objects, one per container;
``address`` is the container's address on its ingress network, which ``{{upstreams PORT}}`` expands to.

The translation follows caddy-docker-proxy's own code (caddyfile/fromlabels.go, marshal.go,
merge.go; generator/labels.go, generator.go), step by step:

1. Only labels matching ``^caddy(_\\d+)?(\\.|$)`` are read (so ``caddy_ingress_network`` is not one).
2. A label path is split at its last unescaped dot into parent path and name; the name may carry an
   order prefix ``N_`` and an isolating suffix ``_N``.  Each distinct path is one block; a block's
   keys are its name (dropped for the top level: ``caddy`` and ``caddy_N``) followed by the tokens of
   the label's value.  A top-level block without keys is the global options block.
3. A label value is first expanded as a Go template (only ``{{upstreams ...}}`` is supported here)
   and then split into tokens by Caddy's lexer: quotes are removed, so quoting in a label only groups
   words into one token.
4. Containers are merged in turn: a block merges into an existing sibling with identical keys;
   ``reverse_proxy``/``php_fastcgi`` blocks with the same matcher merge their upstreams.
5. Blocks are sorted (global, snippets, matchers, then by order prefix, then by keys) and written
   with tabs; a token with a line break or a double quote is written in backticks, a token with a
   space in double quotes.

Not reproduced: Swarm services and configs, a base Caddyfile, and caddy-docker-proxy's final
"process" step, which runs Caddy's adapter and silently DROPS a site block that does not adapt.
Run ``caddy validate`` on the preview to see what that step would drop.

The module stands alone (the standard library only): the engine tests' edge image runs it without the
project, so its exit codes are written as numbers (``cli_support.commands.ExitCode``'s USAGE and OK).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path

LABEL_PREFIX = "caddy"

_CADDY_LABEL = re.compile(rf"^{LABEL_PREFIX}(_\d+)?(\.|$)")
# parent path, order prefix, name, isolating suffix (caddyfile/fromlabels.go labelParserRegex)
_LABEL_PATH = re.compile(r"^(?:(.+)\.)?(?:(\d+)_)?([^.]+?)(?:_(\d+))?$")
_ESCAPED_DOT_PLACEHOLDER = "\x00"
_NO_ORDER = 2**31 - 1  # math.MaxInt32: blocks without an order prefix sort after ordered ones
_TEMPLATE_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_PROTOCOLS = ("http", "https", "h2c")


class LabelError(ValueError):
    """A label that this translation cannot turn into Caddyfile text."""


@dataclass(frozen=True)
class LabelledContainer:
    """One container as caddy-docker-proxy sees it: its labels and its ingress-network address(es)."""

    labels: Mapping[str, str]
    addresses: tuple[str, ...]
    name: str = "container"


@dataclass
class Block:
    """A Caddyfile element: ``keys[0] keys[1] ... { children }``.

    Depending on where it sits, it is the global options block (no keys), a snippet, a site, a
    matcher definition, a directive or a subdirective.
    """

    keys: list[str] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)
    order: int = _NO_ORDER

    @property
    def first_key(self) -> str:
        return self.keys[0] if self.keys else ""

    @property
    def is_global(self) -> bool:
        return not self.keys

    @property
    def is_snippet(self) -> bool:
        return len(self.keys) == 1 and self.keys[0].startswith("(") and self.keys[0].endswith(")")

    @property
    def is_matcher(self) -> bool:
        return bool(self.keys) and self.keys[0].startswith("@")


# --- Caddy's lexer (caddyconfig/caddyfile/lexer.go of Caddy 2.6, without heredocs) -------------


def caddy_tokens(text: str) -> list[str]:
    """Split text into Caddyfile tokens as Caddy's lexer does.

    Whitespace separates tokens; ``"..."`` groups (``\\"`` is the only escape inside), backticks
    group verbatim; ``#`` at the start of a token comments out the rest of the line; a backslash
    outside quotes escapes a line break, otherwise it is kept.
    """
    tokens: list[str] = []
    value: list[str] = []
    in_token = quoted = backticked = escaped = comment = False

    def finish() -> None:
        nonlocal in_token
        tokens.append("".join(value))
        value.clear()
        in_token = False

    for char in text:
        if not escaped and not backticked and char == "\\":
            escaped = True
            continue
        if quoted or backticked:
            if quoted and escaped:
                if char != '"':
                    value.append("\\")
                escaped = False
            elif (quoted and char == '"') or (backticked and char == "`"):
                quoted = backticked = False
                finish()
                continue
            value.append(char)
            continue
        if char.isspace():
            if char == "\r":
                continue
            if char == "\n":
                escaped = False
                comment = False
            if value:
                finish()
            continue
        if char == "#" and not value:
            comment = True
        if comment:
            continue
        if not value and not in_token:
            if char == '"':
                quoted = in_token = True
                continue
            if char == "`":
                backticked = in_token = True
                continue
        if escaped:
            value.append("\\")
            escaped = False
        value.append(char)
    if value:  # like Caddy, an unterminated quote just ends the token at the end of the text
        finish()
    return tokens


# --- labels -> blocks (caddyfile/fromlabels.go, generator/labels.go) ---------------------------


def caddy_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels caddy-docker-proxy reads (``caddy``, ``caddy_N``, ``caddy.…``, ``caddy_N.…``)."""
    return {name: value for name, value in labels.items() if _CADDY_LABEL.match(name)}


def expand_upstreams(value: str, addresses: Sequence[str], label: str = "label") -> str:
    """Expand ``{{upstreams [http|https|h2c] [PORT]}}`` as caddy-docker-proxy's template function does.

    Any other template action is an error: this preview implements only the documented upstreams
    function, and guessing the rest of Go's template language would make the preview lie.
    """

    def replace(action: re.Match[str]) -> str:
        words = action.group(1).split()
        if action.group(1) == '""':
            return ""
        if not words or words[0] != "upstreams":
            raise LabelError(
                f"{label}: template {action.group(0)!r} is not supported by this preview; "
                "only {{upstreams [http|https|h2c] [PORT]}} is"
            )
        targets = sorted(addresses)
        rendered = []
        for target in targets:
            for option in words[1:]:
                if option in _PROTOCOLS or option.strip('"') in _PROTOCOLS:
                    target = f"{option.strip(chr(34))}://{target}"
                elif option.isdigit():
                    target = f"{target}:{int(option)}"
                else:
                    raise LabelError(
                        f"{label}: upstreams option {option!r} is neither a port nor one of {_PROTOCOLS}"
                    )
            rendered.append(target)
        return " ".join(sorted(rendered))

    return _TEMPLATE_ACTION.sub(replace, value)


def _split_path(path: str) -> tuple[str, int, str]:
    """(parent path, order, name) of a label path; ``\\.`` is a literal dot, not a separator."""
    match = _LABEL_PATH.match(path.replace("\\.", _ESCAPED_DOT_PLACEHOLDER))
    if match is None:
        raise LabelError(f"label {path!r} has an empty segment; remove the doubled or trailing dot")
    parent, order, name = match.group(1) or "", match.group(2), match.group(3)
    return (
        parent.replace(_ESCAPED_DOT_PLACEHOLDER, "\\."),
        int(order) if order else _NO_ORDER,
        name.replace(_ESCAPED_DOT_PLACEHOLDER, "."),
    )


def container_blocks(container: LabelledContainer) -> list[Block]:
    """The top-level blocks that one container's labels describe (before merging)."""
    top: list[Block] = []
    by_path: dict[str, Block] = {}

    def block_at(path: str) -> Block:
        if path in by_path:
            return by_path[path]
        parent_path, order, name = _split_path(path)
        block = Block(order=order)
        if parent_path:
            block.keys.append(name)
            block_at(parent_path).children.append(block)
        else:
            top.append(block)
        by_path[path] = block
        return block

    # Go iterates the label map in random order; sorting makes equal inputs give equal output.
    for label, value in sorted(caddy_labels(container.labels).items()):
        text = expand_upstreams(value, container.addresses, f"{container.name}: label {label}")
        try:
            block_at(label).keys.extend(caddy_tokens(text))
        except LabelError as error:
            raise LabelError(f"{container.name}: label {label}: {error}") from None
    return top


# --- merge (caddyfile/merge.go) -----------------------------------------------------------------


def _is_matcher_token(value: str) -> bool:
    return value == "*" or value.startswith(("/", "@"))


def _matcher_of(block: Block) -> str:
    return block.keys[1] if len(block.keys) > 1 and _is_matcher_token(block.keys[1]) else "*"


def merge_blocks(into: list[Block], incoming: Iterable[Block]) -> None:
    """Merge ``incoming`` blocks into the sibling list ``into`` the way caddy-docker-proxy does."""
    for block in incoming:
        for existing in (b for b in into if b.first_key == block.first_key):
            if block.first_key in ("reverse_proxy", "php_fastcgi") and _matcher_of(existing) == _matcher_of(
                block
            ):
                # same upstream directive for the same requests: one proxy with all upstreams
                existing.keys.extend(
                    key for index, key in enumerate(block.keys[1:]) if index > 0 or not _is_matcher_token(key)
                )
                merge_blocks(existing.children, block.children)
                break
            if existing.keys == block.keys:
                merge_blocks(existing.children, block.children)
                break
        else:
            into.append(block)


# --- sort and write (caddyfile/marshal.go) ------------------------------------------------------


def _compare(a: Block, b: Block) -> int:
    for a_first, b_first in (
        (a.is_global, b.is_global),
        (a.is_snippet, b.is_snippet),
        (a.is_matcher, b.is_matcher),
    ):
        if a_first != b_first:
            return -1 if a_first else 1
    if a.order != b.order:
        return -1 if a.order < b.order else 1
    for key_a, key_b in zip(a.keys, b.keys, strict=False):
        if key_a != key_b:
            return -1 if key_a < key_b else 1
    if len(a.keys) != len(b.keys):
        return -1 if len(a.keys) < len(b.keys) else 1
    for child_a, child_b in zip(a.children, b.children, strict=False):
        result = _compare(child_a, child_b)
        if result:
            return result
    if len(a.children) != len(b.children):
        return -1 if len(a.children) < len(b.children) else 1
    return 0


def _sorted(blocks: list[Block]) -> list[Block]:
    for block in blocks:
        block.children = _sorted(block.children)
    return sorted(blocks, key=cmp_to_key(_compare))  # stable, like Go's sort.SliceStable


def _quote(token: str) -> str:
    if "\n" in token or '"' in token:
        return "`" + token.replace("`", "\\`") + "`"
    if " " in token:
        return '"' + token.replace('"', '\\"') + '"'
    return token


def _write(block: Block, level: int, out: list[str]) -> None:
    line = "\t" * level + " ".join(_quote(key) for key in block.keys)
    if block.children:
        out.append(line + (" {" if block.keys else "{"))
        for child in block.children:
            _write(child, level + 1, out)
        out.append("\t" * level + "}")
    else:
        out.append(line)


def marshal(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in _sorted(blocks):
        _write(block, 0, out)
    return "".join(line + "\n" for line in out)


def caddyfile_from_containers(containers: Iterable[LabelledContainer]) -> str:
    """The Caddyfile caddy-docker-proxy generates for these containers (before its "process" step)."""
    merged: list[Block] = []
    for container in containers:
        merge_blocks(merged, container_blocks(container))
    global_blocks = [block for block in merged if block.is_global]
    rest = [block for block in merged if not block.is_global]
    text = marshal(global_blocks) + marshal(rest)
    return text or "# Empty caddyfile"


# --- CLI ------------------------------------------------------------------------------------------


def read_containers(path: Path) -> list[LabelledContainer]:
    """Containers from a LABELS.json file: ``[{"labels": {...}, "address": "host"}, ...]``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LabelError(f"{path}: cannot read a JSON list of containers: {error}") from None
    if not isinstance(document, list):
        raise LabelError(f'{path}: expected a JSON list of {{"labels": {{...}}, "address": "host"}} objects')
    containers = []
    for index, item in enumerate(document):
        where = f"{path}[{index}]"
        if not isinstance(item, dict) or set(item) - {"labels", "address", "name"}:
            raise LabelError(f'{where}: expected {{"labels": {{...}}, "address": "host"}} and nothing else')
        labels, address = item.get("labels"), item.get("address")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise LabelError(f'{where}: "labels" must be an object of string values')
        if not isinstance(address, str) or not address:
            raise LabelError(f'{where}: "address" must be the container\'s address, e.g. "172.18.0.5"')
        containers.append(LabelledContainer(labels, (address,), str(item.get("name", where))))
    return containers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.caddy_docker_proxy",
        description="Print the Caddyfile caddy-docker-proxy would build from these containers' labels.",
    )
    parser.add_argument("labels_json", type=Path, metavar="LABELS.json")
    arguments = parser.parse_args(argv)
    try:
        sys.stdout.write(caddyfile_from_containers(read_containers(arguments.labels_json)))
    except LabelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2  # ExitCode.USAGE
    return 0  # ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
