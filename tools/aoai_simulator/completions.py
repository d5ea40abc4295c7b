"""Legacy text completions (`/completions`): `text_completion` objects, streamed or not.

Key order follows the recorded completions.json (id, object, created, model, ...), which differs
from chat's alphabetical order. Streams start with the same prompt-filter event as chat.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import text, wire
from .chat import CallMeta, output_budget
from .controls import Controls
from .usage import Usage


@dataclass(frozen=True, slots=True)
class CompletionPlan:
    prompts: int
    tokens: tuple[str, ...]
    finish_reason: str
    usage: Usage


def _prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return [prompt if isinstance(prompt, str) else ""]


def plan_completion(body: dict[str, Any], controls: Controls) -> CompletionPlan:
    prompts = _prompts(body.get("prompt"))
    # Legacy completions default to 16 tokens when max_tokens is absent (API reference).
    limit = body.get("max_tokens", 16)
    visible, truncated = output_budget(controls.tokens, limit, 0)
    seed = text.seed_of(*prompts)
    prompt_tokens = sum(text.words(p) for p in prompts) or 1
    return CompletionPlan(
        prompts=len(prompts),
        tokens=tuple(text.tokens(visible, seed)),
        finish_reason="length" if truncated else "stop",
        usage=Usage(prompt_tokens, visible * len(prompts)),
    )


def _choice(text_: str, index: int, finish: str | None, filters: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": text_,
        "index": index,
        "finish_reason": finish,
        "logprobs": None,
        "content_filter_results": filters,
    }


def completion_body(plan: CompletionPlan, meta: CallMeta) -> bytes:
    answer = "".join(plan.tokens)
    body = {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "prompt_filter_results": wire.prompt_filter_results(plan.prompts, jailbreak=False),
        "choices": [
            _choice(answer, i, plan.finish_reason, wire.CHUNK_FILTER) for i in range(plan.prompts)
        ],
        "usage": plan.usage.legacy(),
    }
    return wire.dumps(body).encode()


def completion_events(plan: CompletionPlan, meta: CallMeta) -> Iterator[wire.Event]:
    head = f'{{"id":{wire.dumps(meta.id)},"object":"text_completion","created":{meta.created},'
    tail = f',"model":{wire.dumps(meta.model)}}}'
    first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": wire.prompt_filter_results(plan.prompts, jailbreak=False),
        "choices": [],
    }
    yield wire.data_event(wire.dumps(first))
    for token in plan.tokens:
        for index in range(plan.prompts):
            choice = _choice(token, index, None, wire.CHUNK_FILTER)
            yield wire.data_event(head + '"choices":[' + wire.dumps(choice) + "]" + tail, True)
    for index in range(plan.prompts):
        choice = _choice("", index, plan.finish_reason, {})
        yield wire.data_event(head + '"choices":[' + wire.dumps(choice) + "]" + tail)
    yield wire.Event(wire.DONE)
