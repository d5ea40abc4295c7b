"""Chat completion chunks as Azure streams them (recordings chat_stream.sse, chat_stream_usage.sse,
tools_stream.sse): the prompt-filter event first (`"choices":[]`, empty id/model), a role chunk,
one chunk per token or tool-call fragment with `content_filter_results`, a finish chunk with
`"delta":{}`, the usage chunk only with include_usage, then `data: [DONE]`."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from . import wire
from .chat import CallMeta, ChatPlan
from .usage import Usage


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
        return self.chunk_json(wire.dumps(choice), content)

    def chunk_json(self, choice: str, content: bool = False) -> wire.Event:
        payload = '{"choices":[' + choice + self._mid + self._obf() + self._tail
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


# Text chunks are most of all events: their choice is assembled from pre-serialised parts (the
# same bytes `wire.dumps(_delta(...))` gives; a unit test holds the two together).
_CONTENT_HEAD = (
    '{"content_filter_results":' + wire.dumps(wire.CHUNK_FILTER) + ',"delta":{"content":'
)
# Asynchronous Filter mode: tokens go out unannotated, the verdicts follow in separate events.
_UNFILTERED_HEAD = '{"content_filter_results":{},"delta":{"content":'
_token_json = lru_cache(maxsize=4096)(wire.dumps)


def content_choice(index: int, token: str, annotated: bool = True) -> str:
    head = _CONTENT_HEAD if annotated else _UNFILTERED_HEAD
    return f'{head}{_token_json(token)}}},"finish_reason":null,"index":{index},"logprobs":null}}'


# Asynchronous Filter annotations (learn.microsoft.com azure/foundry/openai/concepts/
# content-streaming): choice-only events with `content_filter_offsets`, empty id/model, sent
# after the text they judge, so the last ones arrive after finish_reason.
ANNOTATE_EVERY = 10


def annotation_event(index: int, start: int, end: int) -> wire.Event:
    choice = {
        "content_filter_offsets": {"check_offset": start, "start_offset": start, "end_offset": end},
        "content_filter_results": wire.CHUNK_FILTER,
        "finish_reason": None,
        "index": index,
    }
    event = {"choices": [choice], "created": 0, "id": "", "model": "", "object": ""}
    return wire.data_event(wire.dumps(event))


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
        yield from _text_chunks(plan, env)
    for index in range(len(plan.choices)):
        finish = _delta(index, {}, wire.CHUNK_FILTER_BLOCKED if plan.filtered else {})
        finish["finish_reason"] = plan.finish_reason
        yield env.chunk(finish)
    if plan.async_filter:
        yield from _late_annotations(plan)
    if include_usage:
        yield env.usage_chunk(plan.usage)
    yield wire.Event(wire.DONE)


def _text_chunks(plan: ChatPlan, env: _Envelope) -> Iterator[wire.Event]:
    annotated = not plan.async_filter
    checked = [0] * len(plan.choices)  # characters already annotated, per choice
    sent = [0] * len(plan.choices)
    # n>1: choices advance together, one token each in turn, as OpenAI interleaves them.
    for position in range(max(len(t) for t in plan.choices)):
        for index, tokens in enumerate(plan.choices):
            if position < len(tokens):
                token = tokens[position]
                yield env.chunk_json(content_choice(index, token, annotated), content=True)
                sent[index] += len(token)
                if plan.async_filter and (position + 1) % ANNOTATE_EVERY == 0:
                    yield annotation_event(index, checked[index], sent[index])
                    checked[index] = sent[index]


def _late_annotations(plan: ChatPlan) -> Iterator[wire.Event]:
    for index, tokens in enumerate(plan.choices):
        done = len(tokens) - len(tokens) % ANNOTATE_EVERY
        start = sum(len(t) for t in tokens[:done])
        end = start + sum(len(t) for t in tokens[done:])
        if end > start:
            yield annotation_event(index, start, end)
