"""Request handling shared by every operation: the checks each Azure call goes through.

Order of checks, as the service applies them: auth, api-version (404), simulated failures and
replays (x-sim-*), JSON body, then the operation itself (operations.py). The app-lifetime objects
(settings, recorder, replay cache) are only read here.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from . import errors
from .controls import BadControl, Controls
from .operations import Call, Operation, error_answer
from .recorder import RecordedRequest, Recorder
from .replay import ReplayStore, UnknownRecording
from .settings import SimulatorSettings
from .streaming import DelayedBody, PacedStream


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
            return error_answer(errors.resource_not_found(settings), record)
        token = settings.required_bearer_token
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return error_answer(errors.unauthorized(settings), record)
        api_version = request.query_params.get("api-version")
        if not op.v1 and not api_version:
            return error_answer(errors.resource_not_found(settings), record)
        try:
            controls = Controls.from_headers(request.headers, settings)
        except BadControl as exc:
            return error_answer(errors.invalid_request(settings, str(exc)), record)
        if controls.replay is not None:
            return self._replay(controls, record)
        # Simulated failures come before the body is read; v1 names the deployment in the body,
        # which these answers only echo, so the path's (or none) is good enough here.
        named = request.path_params.get("deployment", "")
        if controls.content_filter == "prompt":
            return error_answer(errors.content_filtered(settings, named), record)
        if controls.status is not None:
            answer = errors.for_status(
                settings,
                controls.status,
                op.azure_name,
                api_version or "v1",
                controls.retry_after_s,
                named,
            )
            return error_answer(answer, record)
        body: Any = {}
        if op.json_body:
            try:
                body = json.loads(raw)
            except ValueError:
                return error_answer(errors.invalid_json(settings), record)
            if not isinstance(body, dict):
                return error_answer(
                    errors.invalid_request(settings, "The request body must be a JSON object."),
                    record,
                )
        deployment: str | None = request.path_params.get("deployment")
        if deployment is None and op.json_body:
            # v1 and Responses: the deployment is the body's `model`, which is then required.
            if not isinstance(body.get("model"), str) or not body["model"]:
                return error_answer(errors.missing_parameter(settings, "model"), record)
            deployment = body["model"]
        call = Call(
            settings, record, controls, request.headers, body, deployment or "", api_version, op.v1
        )
        return op.handler(call)

    def _replay(self, controls: Controls, record: RecordedRequest) -> ASGIApp:
        assert controls.replay is not None
        try:
            recording = self._replays.get(controls.replay)
        except UnknownRecording as exc:
            return error_answer(errors.invalid_request(self._settings, str(exc)), record)
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
