"""The operations behind the routes: each turns a validated `Call` into an ASGI response.

`Call` carries the per-request state (settings, controls, body, record); nothing here is kept on
shared objects, so concurrent streams cannot see each other's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp

from . import errors, wire
from .chat import CallMeta, chat_body, plan_chat
from .chat_stream import chat_events
from .completions import completion_body, completion_events, plan_completion
from .controls import Controls, accepts_stream_options
from .embeddings import BadInput, embeddings_body
from .recorder import RecordedRequest
from .responses_api import plan_response, response_body, response_events
from .settings import SimulatorSettings
from .streaming import DelayedBody, PacedStream


@dataclass(slots=True)
class Call:
    settings: SimulatorSettings
    record: RecordedRequest
    controls: Controls
    headers: Headers
    body: dict[str, Any]
    deployment: str
    api_version: str | None
    v1: bool

    def response_headers(self, content_type: str, tokens_used: int) -> dict[str, str]:
        s = self.settings
        return wire.response_headers(
            content_type=content_type,
            deployment=self.deployment,
            region=s.region,
            model_session=s.model_session,
            limit_requests=s.rate_limit_requests,
            limit_tokens=s.rate_limit_tokens,
            tokens_used=tokens_used,
            client_request_id=self.headers.get("x-ms-client-request-id", "Not-Set")
            if self.v1
            else None,
        )

    def json_answer(self, body: bytes, tokens_used: int, generated: int) -> ASGIApp:
        # A non-streamed answer arrives when the whole generation would have finished.
        delay = self.controls.ttft_s + generated * self.controls.token_s
        headers = self.response_headers(wire.JSON, tokens_used)
        return DelayedBody(body, status=200, headers=headers, record=self.record, delay_s=delay)

    def stream_answer(self, events: Iterable[wire.Event], tokens_used: int) -> ASGIApp:
        return PacedStream(
            events,
            headers=self.response_headers(wire.EVENT_STREAM, tokens_used),
            record=self.record,
            ttft_s=self.controls.ttft_s,
            token_s=self.controls.token_s,
            fail_after=self.controls.fail_after,
        )

    def error(self, answer: errors.ErrorAnswer) -> ASGIApp:
        return error_answer(answer, self.record)


def error_answer(answer: errors.ErrorAnswer, record: RecordedRequest) -> ASGIApp:
    return DelayedBody(answer.body, status=answer.status, headers=answer.headers, record=record)


Handler = Callable[[Call], ASGIApp]


@dataclass(frozen=True, slots=True)
class Operation:
    azure_name: str  # as Azure names it in 429 messages
    handler: Handler
    v1: bool = False
    json_body: bool = True


def _stream_options(call: Call, stream: bool) -> errors.ErrorAnswer | None:
    if "stream_options" not in call.body:
        return None
    if not call.v1 and not accepts_stream_options(call.api_version):
        return errors.unrecognized_argument(call.settings, "stream_options")
    if not stream:
        return errors.invalid_request(
            call.settings,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    return None


def _meta(call: Call, prefix: str, length: int) -> CallMeta:
    s = call.settings
    return CallMeta(wire.random_id(prefix, length), int(time.time()), s.model, s.system_fingerprint)


def chat(call: Call) -> ASGIApp:
    body = call.body
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return call.error(errors.missing_parameter(call.settings, "messages"))
    stream = body.get("stream") is True
    refused = _stream_options(call, stream)
    if refused is not None:
        return call.error(refused)
    options = body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    plan = plan_chat(body, call.controls)
    meta = _meta(call, "chatcmpl-", 29)
    used = plan.usage.total_tokens
    if stream:
        events = chat_events(
            plan,
            meta,
            include_usage=options.get("include_usage") is True,
            obfuscate=options.get("include_obfuscation", True) is not False,
        )
        return call.stream_answer(events, used)
    return call.json_answer(chat_body(plan, meta), used, plan.usage.completion_tokens)


def completions(call: Call) -> ASGIApp:
    stream = call.body.get("stream") is True
    if "stream_options" in call.body:
        # Only chat completions know stream_options.
        return call.error(errors.unrecognized_argument(call.settings, "stream_options"))
    plan = plan_completion(call.body, call.controls)
    meta = _meta(call, "cmpl-", 29)
    used = plan.usage.total_tokens
    if stream:
        return call.stream_answer(completion_events(plan, meta), used)
    return call.json_answer(completion_body(plan, meta), used, plan.usage.completion_tokens)


def embeddings(call: Call) -> ASGIApp:
    try:
        body = embeddings_body(
            call.body, call.settings.embedding_dimensions, call.settings.embedding_model
        )
    except BadInput as exc:
        return call.error(errors.invalid_request(call.settings, str(exc), "input"))
    return call.json_answer(body, 0, 0)


def responses(call: Call) -> ASGIApp:
    if "stream_options" in call.body:
        return call.error(errors.unknown_parameter(call.settings, "stream_options"))
    plan = plan_response(call.body, call.controls, call.settings.model)
    used = plan.usage.total_tokens
    if call.body.get("stream") is True:
        events = response_events(plan)
        return call.stream_answer(events, used)
    if call.body.get("background"):
        return call.json_answer(response_body(plan), 0, 0)
    return call.json_answer(response_body(plan), used, plan.usage.completion_tokens)


def models(call: Call) -> ASGIApp:
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "system"}
        for name in call.settings.deployments
    ]
    payload = wire.dumps({"data": data, "object": "list"}).encode()
    return DelayedBody(payload, status=200, headers={"Content-Type": wire.JSON}, record=call.record)


CHAT = Operation("ChatCompletions_Create", chat)
COMPLETIONS = Operation("Completions_Create", completions)
EMBEDDINGS = Operation("Embeddings_Create", embeddings)
RESPONSES = Operation("Responses_Create", responses)
MODELS = Operation("Models_List", models, json_body=False)
V1_CHAT = Operation("ChatCompletions_Create", chat, v1=True)
V1_EMBEDDINGS = Operation("Embeddings_Create", embeddings, v1=True)
V1_RESPONSES = Operation("Responses_Create", responses, v1=True)
V1_MODELS = Operation("Models_List", models, v1=True, json_body=False)
