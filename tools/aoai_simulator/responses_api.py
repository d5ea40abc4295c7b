"""Responses API (`/openai/v1/responses`, `/openai/responses`): the response object and its
named-event stream.

Stream order (OpenAI Responses streaming reference): response.created, response.in_progress,
then per output item output_item.added, [content_part.added, output_text.delta..,
output_text.done, content_part.done | function_call_arguments.delta.., .done], output_item.done,
and finally response.completed (or response.incomplete) carrying `response.usage`. Every data
object has `type` and `sequence_number`; there is no `[DONE]`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import text, wire
from .chat import output_budget
from .controls import Controls
from .tool_calls import ToolCall, plan_tool_calls
from .usage import Usage


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    id: str
    created_at: int
    model: str
    message_id: str
    tokens: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    tool_item_ids: tuple[str, ...]
    incomplete_reason: str | None  # max_output_tokens / content_filter
    usage: Usage
    request: dict[str, Any]


def plan_response(body: dict[str, Any], controls: Controls, model: str) -> ResponsePlan:
    source = body.get("input")
    instructions = body.get("instructions")
    instructions = instructions if isinstance(instructions, str) else ""
    prompt_tokens = text.chat_prompt_tokens(source, body.get("tools")) + text.words(instructions)
    calls = plan_tool_calls(body, controls)
    reasoning = controls.reasoning_tokens
    reason: str | None = None
    if calls:
        visible = 0
        completion = sum(1 + len(c.fragments) for c in calls) + reasoning
    else:
        visible, truncated = output_budget(
            controls.tokens, body.get("max_output_tokens"), reasoning
        )
        if truncated:
            reason = "max_output_tokens"
        if controls.content_filter == "completion":
            visible, reason = max(1, visible // 2) if visible else 0, "content_filter"
        completion = visible + reasoning
    return ResponsePlan(
        id=wire.random_id("resp_", 48),
        created_at=int(time.time()),
        model=model,
        message_id=wire.random_id("msg_", 48),
        tokens=tuple(text.tokens(visible, text.seed_of(text.prompt_text(source)))),
        tool_calls=calls,
        tool_item_ids=tuple(wire.random_id("fc_", 48) for _ in calls),
        incomplete_reason=reason,
        usage=Usage(prompt_tokens, completion, controls.cached_tokens, reasoning),
        request=body,
    )


def _text_part(content: str) -> dict[str, Any]:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": content}


def _message(plan: ResponsePlan, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": plan.message_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _function_call(item_id: str, call: ToolCall, status: str, arguments: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call.id,
        "name": call.name,
    }


def _final_output(plan: ResponsePlan) -> list[dict[str, Any]]:
    if plan.tool_calls:
        return [
            _function_call(item_id, call, "completed", call.arguments)
            for item_id, call in zip(plan.tool_item_ids, plan.tool_calls, strict=True)
        ]
    status = "incomplete" if plan.incomplete_reason else "completed"
    return [_message(plan, status, [_text_part("".join(plan.tokens))])]


def response_object(
    plan: ResponsePlan, status: str, output: list[dict[str, Any]], usage: Usage | None
) -> dict[str, Any]:
    req = plan.request
    incomplete = (
        {"reason": plan.incomplete_reason}
        if status == "incomplete" and plan.incomplete_reason
        else None
    )
    return {
        "id": plan.id,
        "object": "response",
        "created_at": plan.created_at,
        "status": status,
        "background": bool(req.get("background", False)),
        "error": None,
        "incomplete_details": incomplete,
        "instructions": req.get("instructions"),
        "max_output_tokens": req.get("max_output_tokens"),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls", True),
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": req.get("store", True),
        "temperature": req.get("temperature", 1.0),
        "text": {"format": {"type": "text"}},
        "tool_choice": req.get("tool_choice", "auto"),
        "tools": req.get("tools", []),
        "top_p": req.get("top_p", 1.0),
        "truncation": req.get("truncation", "disabled"),
        "usage": usage.responses() if usage else None,
        "user": req.get("user"),
        "metadata": req.get("metadata", {}),
    }


def _terminal_status(plan: ResponsePlan) -> str:
    return "incomplete" if plan.incomplete_reason else "completed"


def response_body(plan: ResponsePlan) -> bytes:
    if plan.request.get("background"):
        # A background call is only queued: no output and no usage yet.
        return wire.dumps(response_object(plan, "queued", [], None)).encode()
    return wire.dumps(
        response_object(plan, _terminal_status(plan), _final_output(plan), plan.usage)
    ).encode()


class _Sequencer:
    def __init__(self) -> None:
        self.n = -1

    def event(self, kind: str, fields: dict[str, Any], content: bool = False) -> wire.Event:
        self.n += 1
        payload = {"type": kind, "sequence_number": self.n, **fields}
        return wire.named_event(kind, wire.dumps(payload), content)


def response_events(plan: ResponsePlan, obfuscate: bool = True) -> Iterator[wire.Event]:
    seq = _Sequencer()
    yield seq.event(
        "response.created", {"response": response_object(plan, "in_progress", [], None)}
    )
    yield seq.event(
        "response.in_progress", {"response": response_object(plan, "in_progress", [], None)}
    )
    if plan.tool_calls:
        yield from _function_call_events(plan, seq, obfuscate)
    else:
        yield from _message_events(plan, seq, obfuscate)
    status = _terminal_status(plan)
    final = response_object(plan, status, _final_output(plan), plan.usage)
    yield seq.event(f"response.{status}", {"response": final})


def _message_events(plan: ResponsePlan, seq: _Sequencer, obfuscate: bool) -> Iterator[wire.Event]:
    where = {"item_id": plan.message_id, "output_index": 0, "content_index": 0}
    yield seq.event(
        "response.output_item.added", {"output_index": 0, "item": _message(plan, "in_progress", [])}
    )
    yield seq.event("response.content_part.added", {**where, "part": _text_part("")})
    for token in plan.tokens:
        fields: dict[str, Any] = {**where, "delta": token, "logprobs": []}
        if obfuscate:
            fields["obfuscation"] = wire.obfuscation(seq.n)
        yield seq.event("response.output_text.delta", fields, content=True)
    answer = "".join(plan.tokens)
    yield seq.event("response.output_text.done", {**where, "text": answer, "logprobs": []})
    yield seq.event("response.content_part.done", {**where, "part": _text_part(answer)})
    yield seq.event(
        "response.output_item.done", {"output_index": 0, "item": _final_output(plan)[0]}
    )


def _function_call_events(
    plan: ResponsePlan, seq: _Sequencer, obfuscate: bool
) -> Iterator[wire.Event]:
    for index, (item_id, call) in enumerate(zip(plan.tool_item_ids, plan.tool_calls, strict=True)):
        added = _function_call(item_id, call, "in_progress", "")
        yield seq.event(
            "response.output_item.added", {"output_index": index, "item": added}, content=True
        )
        for fragment in call.fragments:
            fields: dict[str, Any] = {"item_id": item_id, "output_index": index, "delta": fragment}
            if obfuscate:
                fields["obfuscation"] = wire.obfuscation(seq.n)
            yield seq.event("response.function_call_arguments.delta", fields, content=True)
        yield seq.event(
            "response.function_call_arguments.done",
            {"item_id": item_id, "output_index": index, "arguments": call.arguments},
        )
        done = _function_call(item_id, call, "completed", call.arguments)
        yield seq.event("response.output_item.done", {"output_index": index, "item": done})
