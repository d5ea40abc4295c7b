"""Chat completions: what the simulated model answers, as one JSON body or as SSE chunks.

The non-streamed body follows the recording chat_completion.json (keys in alphabetical order);
chat_stream.py turns the same plan into chunks. Every content event of a stream stands for one
completion token, so usage matches what was streamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import text, wire
from .controls import Controls
from .tool_calls import ToolCall, plan_tool_calls
from .usage import Usage


@dataclass(frozen=True, slots=True)
class ChatPlan:
    choices: tuple[tuple[str, ...], ...]  # the tokens of each choice
    finish_reason: str
    tool_calls: tuple[ToolCall, ...]
    filtered: bool
    usage: Usage
    async_filter: bool = False  # Azure's Asynchronous Filter streaming mode


@dataclass(frozen=True, slots=True)
class CallMeta:
    """Identity of one generated answer, shared by all of its chunks."""

    id: str
    created: int
    model: str
    system_fingerprint: str


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
        async_filter=controls.content_filter == "async",
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
