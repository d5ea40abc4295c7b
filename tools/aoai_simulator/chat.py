"""Chat completions: what the simulated model answers, as one JSON body or as SSE chunks.

Shapes follow the recordings chat_completion.json, chat_stream(.sse|_usage.sse) and
tools_stream.sse: the prompt-filter event first (`"choices":[]`, empty id/model), then a role
chunk, one chunk per token (or tool-call fragment) with `content_filter_results`, a finish chunk
with `"delta":{}`, the usage chunk only with include_usage, and `data: [DONE]`.
Every content event stands for one completion token, so usage matches what was streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import text, wire
from .controls import Controls
from .usage import Usage


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    fragments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChatPlan:
    choices: tuple[tuple[str, ...], ...]  # the tokens of each choice
    finish_reason: str
    tool_calls: tuple[ToolCall, ...]
    filtered: bool
    usage: Usage


@dataclass(frozen=True, slots=True)
class CallMeta:
    """Identity of one generated answer, shared by all of its chunks."""

    id: str
    created: int
    model: str
    system_fingerprint: str


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


def output_budget(requested: int, limit: Any, reasoning: int) -> tuple[int, bool]:
    """(visible tokens, hit the limit): reasoning tokens count against the limit first."""
    if isinstance(limit, int) and not isinstance(limit, bool) and reasoning + requested > limit:
        return max(0, limit - reasoning), True
    return requested, False


def plan_chat(body: dict[str, Any], controls: Controls) -> ChatPlan:
    messages = body.get("messages")
    prompt_tokens = text.chat_prompt_tokens(messages, body.get("tools"))
    seed = text.seed_of(text.prompt_text(messages))
    requested_n = body.get("n")
    n = requested_n if isinstance(requested_n, int) and requested_n > 0 else 1
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    reasoning = controls.reasoning_tokens
    calls = plan_tool_calls(body, controls)
    filtered = controls.content_filter == "completion"
    if calls:
        events = sum(1 + len(c.fragments) for c in calls)
        return ChatPlan(
            choices=((),),
            finish_reason="tool_calls",
            tool_calls=calls,
            filtered=False,
            usage=Usage(prompt_tokens, events + reasoning, controls.cached_tokens, reasoning),
        )
    visible, truncated = output_budget(controls.tokens, limit, reasoning)
    finish = "length" if truncated else "stop"
    if filtered:
        visible, finish = max(1, visible // 2) if visible else 0, "content_filter"
    choices = tuple(tuple(text.tokens(visible, seed + i)) for i in range(n))
    completion = visible * n + reasoning
    return ChatPlan(
        choices=choices,
        finish_reason=finish,
        tool_calls=(),
        filtered=filtered,
        usage=Usage(prompt_tokens, completion, controls.cached_tokens, reasoning),
    )


# --- non-streamed body ---------------------------------------------------------------------------
def chat_body(plan: ChatPlan, meta: CallMeta) -> bytes:
    choices: list[dict[str, Any]] = []
    if plan.tool_calls:
        message: dict[str, Any] = {
            "annotations": [],
            "content": None,
            "refusal": None,
            "role": "assistant",
            "tool_calls": [
                {
                    "function": {"arguments": c.arguments, "name": c.name},
                    "id": c.id,
                    "type": "function",
                }
                for c in plan.tool_calls
            ],
        }
        choices.append(_message_choice({}, plan.finish_reason, 0, message))
    else:
        filters = wire.COMPLETION_FILTER_BLOCKED if plan.filtered else wire.COMPLETION_FILTER
        for index, tokens in enumerate(plan.choices):
            message = {
                "annotations": [],
                "content": "".join(tokens),
                "refusal": None,
                "role": "assistant",
            }
            choices.append(_message_choice(filters, plan.finish_reason, index, message))
    body = {
        "choices": choices,
        "created": meta.created,
        "id": meta.id,
        "model": meta.model,
        "object": "chat.completion",
        "prompt_filter_results": wire.prompt_filter_results(),
        "system_fingerprint": meta.system_fingerprint,
        "usage": plan.usage.chat(),
    }
    return wire.dumps(body).encode()


def _message_choice(
    filters: dict[str, Any], finish: str, index: int, message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "content_filter_results": filters,
        "finish_reason": finish,
        "index": index,
        "logprobs": None,
        "message": message,
    }


# --- stream ----------------------------------------------------------------------------------------
class _Envelope:
    """The chunk fields around `choices`, serialised once per stream (1,000 concurrent streams
    should not re-encode the same id/model/fingerprint for every token)."""

    def __init__(self, meta: CallMeta, include_usage: bool, obfuscate: bool) -> None:
        self._mid = (
            f'],"created":{meta.created},"id":{wire.dumps(meta.id)},'
            f'"model":{wire.dumps(meta.model)},'
        )
        self._tail = (
            f'"object":"chat.completion.chunk","system_fingerprint":'
            f"{wire.dumps(meta.system_fingerprint)}"
        )
        self._usage_null = ',"usage":null}' if include_usage else "}"
        self._obfuscate = obfuscate
        self._seq = 0

    def _obf(self) -> str:
        self._seq += 1
        return f'"obfuscation":"{wire.obfuscation(self._seq)}",' if self._obfuscate else ""

    def chunk(self, choice: dict[str, Any], content: bool = False) -> wire.Event:
        payload = '{"choices":[' + wire.dumps(choice) + self._mid + self._obf() + self._tail
        return wire.data_event(payload + self._usage_null, content)

    def usage_chunk(self, usage: Usage) -> wire.Event:
        payload = '{"choices":[' + self._mid + self._obf() + self._tail
        return wire.data_event(payload + ',"usage":' + wire.dumps(usage.chat()) + "}")


def prompt_filter_event(prompts: int = 1) -> wire.Event:
    first = {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": wire.prompt_filter_results(prompts),
    }
    return wire.data_event(wire.dumps(first))


def _delta(
    index: int, delta: dict[str, Any], filters: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "content_filter_results": {} if filters is None else filters,
        "delta": delta,
        "finish_reason": None,
        "index": index,
        "logprobs": None,
    }


def chat_events(
    plan: ChatPlan, meta: CallMeta, include_usage: bool, obfuscate: bool = True
) -> Iterator[wire.Event]:
    env = _Envelope(meta, include_usage, obfuscate)
    yield prompt_filter_event()
    if plan.tool_calls:
        yield env.chunk(_delta(0, {"content": None, "role": "assistant"}))
        for k, call in enumerate(plan.tool_calls):
            head = {
                "function": {"arguments": "", "name": call.name},
                "id": call.id,
                "index": k,
                "type": "function",
            }
            yield env.chunk(_delta(0, {"tool_calls": [head]}), content=True)
            for fragment in call.fragments:
                part = {"function": {"arguments": fragment}, "index": k}
                yield env.chunk(_delta(0, {"tool_calls": [part]}), content=True)
    else:
        for index in range(len(plan.choices)):
            role = {"content": "", "refusal": None, "role": "assistant"}
            yield env.chunk(_delta(index, role))
        # n>1: choices advance together, one token each in turn, as OpenAI interleaves them.
        for position in range(max(len(t) for t in plan.choices)):
            for index, tokens in enumerate(plan.choices):
                if position < len(tokens):
                    delta = {"content": tokens[position]}
                    yield env.chunk(_delta(index, delta, wire.CHUNK_FILTER), content=True)
    for index in range(len(plan.choices)):
        finish = _delta(index, {}, wire.CHUNK_FILTER_BLOCKED if plan.filtered else {})
        finish["finish_reason"] = plan.finish_reason
        yield env.chunk(finish)
    if include_usage:
        yield env.usage_chunk(plan.usage)
    yield wire.Event(wire.DONE)
