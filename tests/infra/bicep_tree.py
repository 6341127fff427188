"""Reads the Bicep under infra/ with tree-sitter-bicep, for tests that check what it declares."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

from tests.support import ROOT

INFRA = ROOT / "infra"

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))

# tree-sitter-bicep 1.1.0, the newest release, predates Bicep's `extension` statement (Bicep 0.30),
# which the Microsoft Graph extension needs. Only a whole-line statement naming an extension from
# Microsoft's registry is blanked (same length, so positions hold); everything else is parsed as
# written, and test_infra_bicep checks which extensions the deployment uses.
EXTENSION_STATEMENT = re.compile(
    rb"^extension '(br:mcr\.microsoft\.com/bicep/extensions/[^'\s]+)'[ \t]*$", re.MULTILINE
)


def extensions(source: bytes) -> list[str]:
    """The registry references of the source's extension statements."""
    return [match.decode() for match in EXTENSION_STATEMENT.findall(source)]


def _parseable(source: bytes) -> bytes:
    return EXTENSION_STATEMENT.sub(lambda match: b" " * len(match.group(0)), source)


def bicep_files() -> list[Path]:
    """Every Bicep file this deployment owns (infra/local/ belongs to the local setup)."""
    local = INFRA / "local"
    return sorted(path for path in INFRA.rglob("*.bicep") if local not in path.parents)


def syntax_errors(source: bytes) -> list[str]:
    """Where tree-sitter-bicep found an ERROR or MISSING node; empty when the source parses."""
    found: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, column = node.start_point
            kind = "missing" if node.is_missing else "error"
            found.append(f"{kind} at {row + 1}:{column + 1}: {_text(node)[:60]!r}")
        for child in node.children:
            walk(child)

    walk(_PARSER.parse(_parseable(source)).root_node)
    return found


@functools.cache
def root(path: Path) -> tree_sitter.Node:
    return _PARSER.parse(_parseable(path.read_bytes())).root_node


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode()


def text(node: tree_sitter.Node) -> str:
    """The node's source text."""
    return _text(node)


def literal(node: tree_sitter.Node | None) -> str | None:
    """The value of a string literal without interpolation, else None."""
    if node is None or node.type != "string":
        return None
    if any(child.type == "interpolation" for child in node.named_children):
        return None
    return "".join(_text(child) for child in node.named_children if child.type == "string_content")


def properties(obj: tree_sitter.Node) -> dict[str, tree_sitter.Node]:
    """An object's top-level properties: key (identifier or quoted string) to value node."""
    found: dict[str, tree_sitter.Node] = {}
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        name = literal(key) if key.type == "string" else _text(key)
        if name is not None:
            found[name] = value
    return found


def _body(declaration: tree_sitter.Node) -> tree_sitter.Node | None:
    """The object of a resource or module, looking through `if (...)` and `[for ...]`."""
    for child in declaration.named_children:
        if child.type == "object":
            return child
        if child.type in {"if_statement", "for_statement", "array"}:
            inner = _body(child)
            if inner is not None:
                return inner
    return None


@dataclass(frozen=True)
class Declaration:
    """A resource or module declaration: its symbol, type or path string, and body object."""

    symbol: str
    target: str
    body: tree_sitter.Node

    @property
    def props(self) -> dict[str, tree_sitter.Node]:
        return properties(self.body)


def _declarations(path: Path, kind: str) -> list[Declaration]:
    found: list[Declaration] = []
    for node in root(path).named_children:
        if node.type != kind:
            continue
        symbol, target = node.named_children[0], node.named_children[1]
        body = _body(node)
        if body is not None:
            found.append(Declaration(_text(symbol), literal(target) or "", body))
    return found


def resources(path: Path) -> list[Declaration]:
    return _declarations(path, "resource_declaration")


def modules(path: Path) -> list[Declaration]:
    return _declarations(path, "module_declaration")


@dataclass(frozen=True)
class Param:
    name: str
    default: tree_sitter.Node | None


def params(path: Path) -> dict[str, Param]:
    """A file's parameters by name, with the default value's node when there is one."""
    found: dict[str, Param] = {}
    for node in root(path).named_children:
        if node.type != "parameter_declaration":
            continue
        named = node.named_children
        default = named[2] if len(named) > 2 else None
        found[_text(named[0])] = Param(_text(named[0]), default)
    return found


def param_decorators(path: Path, name: str) -> dict[str, str]:
    """The decorators of parameter ``name``: decorator function to its arguments' source text."""
    for node in root(path).named_children:
        if node.type == "parameter_declaration" and _text(node.named_children[0]) == name:
            before = node.prev_named_sibling
            if before is None or before.type != "decorators":
                return {}
            found: dict[str, str] = {}
            for decorator in before.named_children:
                call = decorator.named_children[0]
                function = call.child_by_field_name("function")
                arguments = call.child_by_field_name("arguments")
                if function is not None and arguments is not None:
                    found[_text(function)] = _text(arguments)[1:-1]
            return found
    raise KeyError(name)


def variables(path: Path) -> dict[str, tree_sitter.Node]:
    """A file's variables by name, to the value's node."""
    found: dict[str, tree_sitter.Node] = {}
    for node in root(path).named_children:
        if node.type == "variable_declaration":
            name, value = node.named_children[0], node.named_children[-1]
            found[_text(name)] = value
    return found


def outputs(path: Path) -> dict[str, str]:
    """A file's outputs by name, to the source text of the value."""
    return {
        _text(node.named_children[0]): _text(node.named_children[-1])
        for node in root(path).named_children
        if node.type == "output_declaration"
    }


def identifiers(path: Path) -> set[str]:
    """Every identifier and property key in a file: the names it mentions."""
    found: set[str] = set()

    def walk(node: tree_sitter.Node) -> None:
        if node.type in {"identifier", "property_identifier"}:
            found.add(_text(node))
        for child in node.children:
            walk(child)

    walk(root(path))
    return found


def strings(path: Path) -> set[str]:
    """Every plain string literal in a file: resource names, enum values, property values."""
    found: set[str] = set()

    def walk(node: tree_sitter.Node) -> None:
        value = literal(node)
        if value is not None:
            found.add(value)
        for child in node.children:
            walk(child)

    walk(root(path))
    return found


# What a name may be besides a file's own declarations: Bicep's namespaces. Functions are called, and
# a call's name is not checked (Bicep has a hundred of them).
_NAMESPACES = frozenset({"az", "sys"})
_DECLARATIONS = frozenset(
    {
        "parameter_declaration",
        "variable_declaration",
        "resource_declaration",
        "module_declaration",
        "type_declaration",
        "user_defined_function",
    }
)


def _declared_names(tree: tree_sitter.Node) -> set[str]:
    """Every name a file declares: top-level symbols, loop variables, lambda and function parameters."""
    names = {_text(node.named_children[0]) for node in tree.named_children if node.type in _DECLARATIONS}

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "resource_declaration":  # a nested resource, named as parent::child
            names.add(_text(node.named_children[0]))
        elif node.type in {"loop_variable", "loop_enumerator"}:
            names.add(_text(node))
        elif node.type == "for_statement" and node.named_children[0].type == "identifier":
            names.add(_text(node.named_children[0]))
        elif node.type == "lambda_expression":
            head = node.named_children[0]
            names.update(_text(n) for n in [head, *head.named_children] if n.type == "identifier")
        elif node.type == "parameter" and node.parent is not None and node.parent.type == "parameters":
            names.add(_text(node.named_children[0]))
        for child in node.children:
            walk(child)

    walk(tree)
    return names


def _is_reference(node: tree_sitter.Node) -> bool:
    """Whether an identifier stands for a value: not a declaration's name, a property key or a call's name."""
    parent = node.parent
    if parent is None:
        return False
    first = parent.named_children[0] if parent.named_children else None
    naming = {*_DECLARATIONS, "output_declaration", "object_property", "call_expression", "parameter"}
    if parent.type in naming and first == node:
        return False
    # tree-sitter-bicep 1.1.0 reads a call inside a one-line array, `[resourceGroup().id]`, as a name
    # followed by `().id`: a name right before an opening parenthesis is a call's name all the same.
    following = node.next_sibling
    return following is None or not _text(following).startswith("(")


def undeclared(source: bytes) -> list[str]:
    """Names the source uses but never declares (Bicep's error BCP057), with their line; empty when none."""
    tree = _PARSER.parse(_parseable(source)).root_node
    known = _declared_names(tree) | _NAMESPACES
    found: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "identifier" and _is_reference(node) and _text(node) not in known:
            found.append(f"{_text(node)} at line {node.start_point[0] + 1}")
        for child in node.children:
            walk(child)

    walk(tree)
    return found
