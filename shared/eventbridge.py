"""What an EventBridge rule target receives: the event, its ``Input``, ``InputPath`` or ``InputTransformer``.

One definition for the local stage's dispatcher (``local.events``) and for ``mlpipe events
run-schedule``, which starts a schedule's targets the way EventBridge would. Plain Python.

The rules, as the EventBridge API reference and user guide state them:

- A target has at most one of ``Input`` (a JSON text sent instead of the event), ``InputPath``
  (the part of the event at a JSON path) and ``InputTransformer``; none sends the whole event.
- JSON paths use dot notation (``$.detail.bucket.name``; names with letters, digits, ``_``, ``-``
  and ``/``) and array indices (``$.resources[0]``); wildcards are not supported here.
- ``InputTransformer``: ``InputPathsMap`` names at most 100 variables (a name may not start with
  ``aws.``); ``InputTemplate`` has ``<name>`` placeholders. Besides the map's variables there are
  the predefined ``aws.events.rule-arn``, ``aws.events.rule-name``,
  ``aws.events.event.ingestion-time``, ``aws.events.event`` (the event without ``detail``) and
  ``aws.events.event.json`` (the whole event); the last two only as the value of a JSON field.
  A ``<...>`` that names no variable is literal text.
- A template that is a JSON object or array is filled in as JSON: a placeholder that is a value
  (not inside quotes) becomes the value's JSON (a string is quoted, a number or an object is
  not); a placeholder inside a JSON string gets the value's text *without escaping*, an object or
  array with its quotes removed. A placeholder may not be an object key. The result must be
  valid JSON, or the delivery fails.
- Any other template is text: placeholders get the values' text, and the target receives that
  text (a JSON string for a Lambda function or a state machine).
- A path that matches nothing creates no variable: its placeholder is replaced by nothing in
  text and strings, and by ``null`` where it is a JSON value (so the template stays JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MAX_VARIABLES = 100
RULE_ARN, RULE_NAME = "aws.events.rule-arn", "aws.events.rule-name"
INGESTION_TIME = "aws.events.event.ingestion-time"
EVENT, EVENT_JSON = "aws.events.event", "aws.events.event.json"
PREDEFINED = (RULE_ARN, RULE_NAME, INGESTION_TIME, EVENT, EVENT_JSON)
JSON_ONLY = frozenset({EVENT, EVENT_JSON})  # only as the value of a JSON field

_PATH = re.compile(r"^\$((\.[A-Za-z0-9_/-]+)|(\[\d+\]))*$")
_STEP = re.compile(r"\.([A-Za-z0-9_/-]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_./-]+)>")
_KEY_AFTER = re.compile(r"\s*:")


class TargetInputError(ValueError):
    """A target's input settings that EventBridge would reject, or a transformed input that is not JSON."""


def check_path(path: Any, field: str) -> str:
    """``path`` if it is a JSON path EventBridge takes (and this module reads), else TargetInputError."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise TargetInputError(
            f"{field} {path!r} is not a JSON path in dot notation with array indices (e.g. $.detail.name)"
        )
    return path


def read_path(event: Any, path: str) -> tuple[bool, Any]:
    """(found, value) at ``path`` in ``event``; (False, None) when some step matches nothing."""
    value = event
    for name, index in _STEP.findall(path):
        if name:
            if not isinstance(value, Mapping) or name not in value:
                return False, None
            value = value[name]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return False, None
            value = value[int(index)]
    return True, value


def check_target_input(target: Mapping[str, Any]) -> None:
    """TargetInputError when the target's ``Input``/``InputPath``/``InputTransformer`` is not valid."""
    given = [key for key in ("Input", "InputPath", "InputTransformer") if key in target]
    if len(given) > 1:
        raise TargetInputError(f"a target takes one of Input, InputPath and InputTransformer, not {given}")
    if "Input" in target:
        text = target["Input"]
        if not isinstance(text, str):
            raise TargetInputError("Input is not a literal JSON string")
        try:
            json.loads(text)
        except ValueError as err:
            raise TargetInputError(f"Input is not valid JSON: {err}") from None
    if "InputPath" in target:
        check_path(target["InputPath"], "InputPath")
    if "InputTransformer" in target:
        transformer = target["InputTransformer"]
        if not isinstance(transformer, Mapping) or not isinstance(transformer.get("InputTemplate"), str):
            raise TargetInputError("InputTransformer.InputTemplate is missing or not a string")
        paths = transformer.get("InputPathsMap", {})
        if not isinstance(paths, Mapping):
            raise TargetInputError("InputTransformer.InputPathsMap is not an object")
        if len(paths) > MAX_VARIABLES:
            raise TargetInputError(f"InputTransformer.InputPathsMap has {len(paths)} variables (at most 100)")
        for name, path in paths.items():
            if not isinstance(name, str) or name.startswith("aws."):
                raise TargetInputError(f"InputTransformer.InputPathsMap key {name!r} may not start with aws.")
            check_path(path, f"InputTransformer.InputPathsMap.{name}")


def _text(value: Any) -> str:
    """A value as it appears inside a string or a text template."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":")).replace('"', "")
    return json.dumps(value)


def render_template(template: str, variables: Mapping[str, tuple[bool, Any]]) -> Any:
    """``template`` filled in with ``variables`` (name -> (found, value)); the target's input."""
    is_json = template.strip()[:1] in {"{", "["}
    out: list[str] = []
    in_string, position = False, 0
    while position < len(template):
        char = template[position]
        if is_json and in_string and char == "\\":
            out.append(template[position : position + 2])
            position += 2
            continue
        if is_json and char == '"':
            in_string = not in_string
        placeholder = _PLACEHOLDER.match(template, position) if char == "<" else None
        if placeholder is None or placeholder[1] not in variables:
            out.append(char)
            position += 1
            continue
        name = placeholder[1]
        found, value = variables[name]
        as_value = is_json and not in_string
        if as_value and _KEY_AFTER.match(template, placeholder.end()):
            raise TargetInputError(f"InputTemplate: placeholder <{name}> is used as an object key")
        if name in JSON_ONLY and not as_value:
            raise TargetInputError(f"InputTemplate: <{name}> can only be the value of a JSON field")
        if as_value:
            out.append(json.dumps(value) if found else "null")
        else:
            out.append(_text(value) if found else "")
        position = placeholder.end()
    rendered = "".join(out)
    if not is_json:
        return rendered
    try:
        return json.loads(rendered)
    except ValueError as err:
        raise TargetInputError(f"the transformed input is not valid JSON ({err}): {rendered[:200]}") from None


def target_input(
    target: Mapping[str, Any],
    event: Mapping[str, Any],
    *,
    rule_name: str,
    rule_arn: str,
    ingestion_time: str,
) -> Any:
    """What the target receives for ``event`` (a JSON-compatible value); TargetInputError if invalid."""
    check_target_input(target)
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        return read_path(event, target["InputPath"])[1]
    transformer = target.get("InputTransformer")
    if transformer is None:
        return dict(event)
    variables: dict[str, tuple[bool, Any]] = {
        RULE_ARN: (True, rule_arn),
        RULE_NAME: (True, rule_name),
        INGESTION_TIME: (True, ingestion_time),
        EVENT: (True, {k: v for k, v in event.items() if k != "detail"}),
        EVENT_JSON: (True, dict(event)),
    }
    for name, path in transformer.get("InputPathsMap", {}).items():
        variables[name] = read_path(event, path)
    return render_template(transformer["InputTemplate"], variables)


__all__ = [
    "PREDEFINED",
    "TargetInputError",
    "check_path",
    "check_target_input",
    "read_path",
    "render_template",
    "target_input",
]
