"""The two expression languages of CloudWatch alarms that the local stage evaluates, parsed here.

Metric math (the subset the templates use): numbers, metric ids, ``+ - * /``, unary minus,
comparisons ``> >= < <=``, ``IF(condition, then, else)`` and ``FILL(series, value)``, parentheses.
Composite alarm rules: ``ALARM("name")``, ``OK("name")``, ``INSUFFICIENT_DATA("name")``, ``TRUE``,
``FALSE``, ``AND``, ``OR``, ``NOT``, parentheses.

A recursive-descent parser of our own rather than ``ast.parse``: the alarm evaluator runs on a
background thread, and CPython 3.11.7's ``ast.parse`` keeps its recursion-depth counter in
interpreter-wide state, so two threads building Python ASTs at once can fail one of them with
``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905, fixed in 3.11.8;
it failed an integration test in CI while hypothesis parsed on the test's thread). Nothing here is
evaluated as Python, so no expression can reach anything but the values it names.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

Node = tuple[Any, ...]

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r'|(?P<string>"[^"]*")'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>>=|<=|[-+*/()<>,]))"
)

_ARITHMETIC: Mapping[str, Callable[[float, float], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_FUNCTIONS = {"IF": 3, "FILL": 2}
_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"{text!r}: unexpected {text[position:].strip()[:20]!r}")
        kind = str(match.lastgroup)  # every alternative is a named group
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, *values: str) -> str | None:
        token = self.peek()
        if token is not None and token[1] in values:
            self.index += 1
            return token[1]
        return None

    def expect(self, value: str) -> None:
        if self.take(value) is None:
            found = self.peek()
            raise ValueError(f"{self.text!r}: expected {value!r}, found {found[1] if found else 'the end'!r}")

    def done(self, node: Node) -> Node:
        if self.peek() is not None:
            raise ValueError(f"{self.text!r}: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    # metric math
    def comparison(self) -> Node:
        left = self.additive()
        op = self.take(">", ">=", "<", "<=")
        return ("op", op, left, self.additive()) if op else left

    def additive(self) -> Node:
        node = self.term()
        while op := self.take("+", "-"):
            node = ("op", op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while op := self.take("*", "/"):
            node = ("op", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.take("-"):
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Node:
        token = self.peek()
        if token is None:
            raise ValueError(f"{self.text!r}: ends early")
        kind, value = token
        if self.take("("):
            node = self.comparison()
            self.expect(")")
            return node
        self.index += 1
        if kind == "number":
            return ("number", float(value))
        if kind == "name" and self.take("("):
            if value not in _FUNCTIONS:
                raise ValueError(f"{self.text!r}: function {value} is not emulated")
            args = [self.comparison()]
            while self.take(","):
                args.append(self.comparison())
            self.expect(")")
            if len(args) != _FUNCTIONS[value]:
                raise ValueError(f"{self.text!r}: {value} takes {_FUNCTIONS[value]} arguments")
            return ("call", value, *args)
        if kind == "name":
            return ("name", value)
        raise ValueError(f"{self.text!r}: unexpected {value!r}")

    # composite rules
    def either(self) -> Node:
        node = self.both()
        while self.take("OR"):
            node = ("or", node, self.both())
        return node

    def both(self) -> Node:
        node = self.negation()
        while self.take("AND"):
            node = ("and", node, self.negation())
        return node

    def negation(self) -> Node:
        if self.take("NOT"):
            return ("not", self.negation())
        if self.take("("):
            node = self.either()
            self.expect(")")
            return node
        if constant := self.take("TRUE", "FALSE"):
            return ("constant", constant == "TRUE")
        state = self.take(*_STATES)
        if state is None:
            found = self.peek()
            raise ValueError(f"{self.text!r}: unexpected {found[1] if found else 'end'!r}")
        self.expect("(")
        token = self.peek()
        if token is None or token[0] != "string":
            raise ValueError(f"{self.text!r}: {state}( takes a quoted alarm name")
        self.index += 1
        self.expect(")")
        return ("state", state, token[1][1:-1])


@functools.lru_cache(maxsize=256)
def parse_expression(expression: str) -> Node:
    parser = _Parser(expression)
    return parser.done(parser.comparison())


@functools.lru_cache(maxsize=256)
def parse_rule(rule: str) -> Node:
    parser = _Parser(rule)
    return parser.done(parser.either())


def evaluate_expression(expression: str, names: Mapping[str, float | None]) -> float | None:
    """A metric-math expression for one period; None: no data (a missing operand or a division by 0)."""

    def value(node: Node) -> float | None:  # noqa: PLR0911 (one return per node kind)
        kind = node[0]
        if kind == "number":
            return float(node[1])
        if kind == "name":
            return names.get(node[1])
        if kind == "neg":
            inner = value(node[1])
            return None if inner is None else -inner
        if kind == "op":
            left, right = value(node[2]), value(node[3])
            if left is None or right is None or (node[1] == "/" and right == 0):
                return None
            return float(_ARITHMETIC[node[1]](left, right))
        if node[1] == "FILL":
            filled = value(node[2])
            return value(node[3]) if filled is None else filled
        condition = value(node[2])  # IF
        if condition is None:
            return None
        return value(node[3]) if condition else value(node[4])

    return value(parse_expression(expression))


def expression_names(expression: str) -> set[str]:
    """The metric ids a metric-math expression reads (``ValueError`` for one it cannot parse)."""

    def names(node: Node) -> set[str]:
        if node[0] == "name":
            return {str(node[1])}
        return set().union(*(names(child) for child in node[1:] if isinstance(child, tuple)))

    return names(parse_expression(expression))


def rule_holds(rule: str, states: Mapping[str, str]) -> bool:
    """A composite alarm rule against the current states (a rule naming an unknown alarm is refused)."""

    def holds(node: Node) -> bool:
        kind = node[0]
        if kind == "constant":
            return bool(node[1])
        if kind == "not":
            return not holds(node[1])
        if kind == "and":
            return holds(node[1]) and holds(node[2])
        if kind == "or":
            return holds(node[1]) or holds(node[2])
        return bool(states[node[2]] == node[1])

    tree = parse_rule(rule)
    unknown = sorted(_alarm_names(tree) - set(states))
    if unknown:
        raise ValueError(f"composite rule names unknown alarm {unknown[0]!r}")
    return holds(tree)


def _alarm_names(node: Node) -> set[str]:
    if node[0] == "state":
        return {node[2]}
    return set().union(*(_alarm_names(child) for child in node[1:] if isinstance(child, tuple)))
