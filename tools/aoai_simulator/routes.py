"""Request handling: one Endpoint per operation, sharing the checks every Azure call goes through.

Order of checks, as the service applies them: auth, api-version (404), simulated failures and
replays (x-sim-*), JSON body, then the operation itself. Per-request state lives in `Call`; the
app-lifetime objects (settings, recorder, replay cache) are only read here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import errors, wire
from .chat import CallMeta, chat_body, chat_events, plan_chat
from .completions import completion_body, completion_events, plan_completion
from .controls import BadControl, Controls, accepts_stream_options
from .embeddings import BadInput, embeddings_body
from .recorder import RecordedRequest, Recorder
from .replay import ReplayStore, UnknownRecording
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

    def stream_answer(self, events: Any, tokens_used: int) -> ASGIApp:
        return PacedStream(
            events,
            headers=self.response_headers(wire.EVENT_STREAM, tokens_used),
            record=self.record,
            ttft_s=self.controls.ttft_s,
            token_s=self.controls.token_s,
            fail_after=self.controls.fail_after,
        )

    def error(self, answer: errors.ErrorAnswer) -> ASGIApp:
        return _error(answer, self.record)


def _error(answer: errors.ErrorAnswer, record: RecordedRequest) -> ASGIApp:
    return DelayedBody(answer.body, status=answer.status, headers=answer.headers, record=record)


Handler = Callable[[Call], ASGIApp]


@dataclass(frozen=True, slots=True)
class Operation:
    azure_name: str  # as Azure names it in 429 messages
    handler: Handler
    v1: bool = False
    json_body: bool = True


# --- operations ------------------------------------------------------------------------------
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
        return call.error(
            errors.invalid_request(
                call.settings,
                "Missing required parameter: 'messages'.",
                "messages",
                "missing_required_parameter",
            )
        )
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
    model = call.body.get("model")
    plan = plan_response(call.body, call.controls, call.settings.model if model else "")
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


# --- the shared front half of every call -------------------------------------------------------
class Endpoint:
    """An ASGI endpoint for one operation (a class, so Starlette passes scope/receive/send and
    our own response objects can pace the stream)."""

    def __init__(
        self,
        operation: Operation | None,
        settings: SimulatorSettings,
        recorder: Recorder,
        replays: ReplayStore,
    ) -> None:
        self._op = operation
        self._settings = settings
        self._recorder = recorder
        self._replays = replays

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
            received_at=time.monotonic(),
        )
        self._recorder.add(record)
        app = await self._answer(request, body, record)
        await app(scope, receive, send)

    async def _answer(self, request: Request, raw: bytes, record: RecordedRequest) -> ASGIApp:
        settings = self._settings
        op = self._op
        if op is None:  # no such route
            return _error(errors.resource_not_found(settings), record)
        token = settings.required_bearer_token
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return _error(errors.unauthorized(settings), record)
        api_version = request.query_params.get("api-version")
        if not op.v1 and not api_version:
            return _error(errors.resource_not_found(settings), record)
        try:
            controls = Controls.from_headers(request.headers, settings)
        except BadControl as exc:
            return _error(errors.invalid_request(settings, str(exc)), record)
        if controls.replay is not None:
            return self._replay(controls, record)
        if controls.content_filter == "prompt":
            return _error(errors.content_filtered(settings), record)
        if controls.status is not None:
            answer = errors.for_status(
                settings,
                controls.status,
                op.azure_name,
                api_version or "v1",
                controls.retry_after_s,
            )
            return _error(answer, record)
        body: Any = {}
        if op.json_body:
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(errors.invalid_json(settings), record)
            if not isinstance(body, dict):
                return _error(
                    errors.invalid_request(settings, "The request body must be a JSON object."),
                    record,
                )
        deployment = request.path_params.get("deployment") or str(body.get("model") or "")
        call = Call(
            settings, record, controls, request.headers, body, deployment, api_version, op.v1
        )
        return op.handler(call)

    def _replay(self, controls: Controls, record: RecordedRequest) -> ASGIApp:
        assert controls.replay is not None
        try:
            recording = self._replays.get(controls.replay)
        except UnknownRecording as exc:
            return _error(errors.invalid_request(self._settings, str(exc)), record)
        if recording.is_stream:
            return PacedStream(
                recording.events(),
                headers=recording.headers,
                record=record,
                ttft_s=controls.ttft_s,
                token_s=controls.token_s,
                fail_after=controls.fail_after,
                status=recording.status,
            )
        return DelayedBody(
            recording.body,
            status=recording.status,
            headers=recording.headers,
            record=record,
            delay_s=controls.ttft_s,
        )
