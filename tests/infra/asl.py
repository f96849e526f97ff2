"""Render a synthesized state machine's ``DefinitionString`` into Amazon States Language as a dict.

CDK writes the definition as ``{"Fn::Join": ["", [str | token, ...]]}``: JSON text cut where a
CloudFormation token (``Ref``, ``Fn::GetAtt``, ``Fn::ImportValue``) stands for a value known only at
deployment. Each token becomes a placeholder string (:func:`ref`, :func:`get_att`, :func:`import_value`),
so tests compare a state's field with the placeholder of the resource it must name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

# state types that end a path of the graph
TERMINAL_TYPES = frozenset({"Succeed", "Fail"})


def ref(logical_id: str) -> str:
    return f"<Ref:{logical_id}>"


def get_att(logical_id: str, attribute: str) -> str:
    return f"<GetAtt:{logical_id}.{attribute}>"


def import_value(name: str) -> str:
    return f"<ImportValue:{name}>"


def token(value: Any) -> str:
    """A piece of the joined definition: literal text, or the placeholder of a token."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((intrinsic, argument),) = value.items()
        if intrinsic == "Ref" and isinstance(argument, str):
            return ref(argument)
        if intrinsic == "Fn::GetAtt" and isinstance(argument, list) and len(argument) == 2:
            return get_att(str(argument[0]), str(argument[1]))
        if intrinsic == "Fn::ImportValue" and isinstance(argument, str):
            return import_value(argument)
    raise ValueError(f"unsupported token in a state machine definition: {value!r}")


def render(definition_string: Any) -> dict[str, Any]:
    """``DefinitionString`` (plain JSON text or an ``Fn::Join`` of text and tokens) as a dict."""
    if isinstance(definition_string, str):
        text = definition_string
    elif isinstance(definition_string, dict) and set(definition_string) == {"Fn::Join"}:
        delimiter, parts = definition_string["Fn::Join"]
        text = str(delimiter).join(token(part) for part in parts)
    else:
        raise ValueError(f"unsupported DefinitionString: {definition_string!r}")
    definition: dict[str, Any] = json.loads(text)
    return definition


def nested_scopes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The state graphs inside a Map (ItemProcessor or Iterator) or a Parallel (Branches)."""
    scopes: list[dict[str, Any]] = []
    for key in ("ItemProcessor", "Iterator"):
        if key in state:
            scopes.append(state[key])
    scopes.extend(state.get("Branches", []))
    return scopes


def scopes(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state graph (``StartAt`` + ``States``), the top level first, with a readable path."""
    pending: list[tuple[str, dict[str, Any]]] = [("", definition)]
    while pending:
        path, scope = pending.pop(0)
        yield path, scope
        for name, state in scope["States"].items():
            for index, inner in enumerate(nested_scopes(state)):
                pending.append((f"{path}{name}[{index}]/", inner))


def all_states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state of the definition by name, nested ones included (names are unique in ASL)."""
    found: dict[str, dict[str, Any]] = {}
    for _path, scope in scopes(definition):
        for name, state in scope["States"].items():
            assert name not in found, f"state name {name} is used twice"
            found[name] = state
    return found


def successors(state: dict[str, Any]) -> list[str]:
    """The states a state may go to next in its own graph (Next, Choice rules and Default, Catch)."""
    targets = [state["Next"]] if "Next" in state else []
    targets += [rule["Next"] for rule in state.get("Choices", [])]
    if "Default" in state:
        targets.append(state["Default"])
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return targets


def reachable_without_cycles(graph: dict[str, dict[str, Any]], start: str) -> set[str]:
    """The states reachable from ``start``; fails on a cycle (a loop the run could go round)."""
    seen: set[str] = set()
    on_path: list[str] = []

    def visit(name: str) -> None:
        if name in on_path:
            raise AssertionError(f"cycle in the state graph: {[*on_path, name]}")
        if name in seen:
            return
        seen.add(name)
        on_path.append(name)
        for following in successors(graph[name]):
            visit(following)
        on_path.pop()

    visit(start)
    return seen
