"""Tool calls the simulated model makes when `tools` are given: which function, arguments built
from its JSON schema, and the argument fragments a stream carries (shape of tools_stream.sse:
a head delta with id/name/empty arguments, then argument pieces of a few characters)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import wire
from .controls import Controls


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    fragments: tuple[str, ...]


def _example_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "simulated"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return 42
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example_value(schema.get("items"))]
    if kind == "object":
        return _example_object(schema)
    return "simulated"


def _example_object(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    return {name: _example_value(sub) for name, sub in props.items()}


# Argument fragments of 4-6 characters, like the recorded `{"pa`, `sswor`, `d": "m`.
_FRAGMENT_SIZES = (4, 5, 6, 4, 3)


def _fragments(arguments: str) -> tuple[str, ...]:
    out: list[str] = []
    pos = 0
    i = 0
    while pos < len(arguments):
        size = _FRAGMENT_SIZES[i % len(_FRAGMENT_SIZES)]
        out.append(arguments[pos : pos + size])
        pos += size
        i += 1
    return tuple(out)


def _function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    found = []
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            found.append(tool["function"])
        elif isinstance(tool, dict) and tool.get("type") == "function" and "name" in tool:
            found.append(tool)  # Responses-API flat tool layout
    return found


def plan_tool_calls(body: dict[str, Any], controls: Controls) -> tuple[ToolCall, ...]:
    """Tool calls the model makes: none unless function tools are given and tool_choice allows."""
    functions = _function_tools(body)
    choice = body.get("tool_choice")
    if not functions or choice == "none":
        return ()
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
        functions = [f for f in functions if f.get("name") == wanted] or functions
    calls = []
    for i in range(controls.tool_calls):
        function = functions[i % len(functions)]
        # Python's default separators give `{"password": "mellon"}`, the recorded spacing.
        arguments = json.dumps(_example_object(function.get("parameters") or {}))
        calls.append(
            ToolCall(
                id=wire.random_id("call_", 24),
                name=str(function.get("name", "tool")),
                arguments=arguments,
                fragments=_fragments(arguments),
            )
        )
    return tuple(calls)
