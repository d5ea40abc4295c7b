"""The request path, top to bottom: parse -> forward -> relay -> record -> emit.

Both adapters (the Azure Function and the local ASGI app) call `handle` with a Starlette request
(the Functions HTTP streaming extension passes FastAPI's, which is the same class). Every call ends
in exactly one usage record, whatever happens; errors become the Azure OpenAI shape here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Scope

from .caller import verify_caller
from .config import ConfigError
from .errors import (
    InternalError,
    ProxyError,
    ServiceMisconfigured,
    UpstreamTimeout,
    UpstreamUnreachable,
    one_line,
)
from .inbound import Call, add_body, describe_call, read_body
from .inject import injected_body, injection_decision, rejects_stream_options, uninject
from .origin import origin_target
from .relay import RECORD_ID_HEADER, CancelOnDisconnect, buffered, streamed
from .routes import UNROUTED, RouteSpec
from .runtime import Runtime, RuntimeHolder
from .upstream import UpstreamBodyError, UpstreamResponse
from .usage import UsageMeter, now_ms

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class ClientGone(Exception):
    """The caller disconnected before the response started."""


async def handle(request: Request, spec: RouteSpec, holder: RuntimeHolder) -> Response:
    started, started_at = now_ms(), datetime.now(UTC)
    try:
        runtime = await holder.get()
    except ConfigError as exc:
        # No sink can be trusted with a bad configuration: the log line is the record.
        log.error("configuration error: %s", exc)
        return error_response(ServiceMisconfigured(str(exc)), record_id=None)
    path_params, query = dict(request.path_params), _query(request.scope)
    misconfigured: ProxyError | None = None
    if spec.upstream is not None:  # the origin's POST /api/aoaifn
        try:
            path_params, query = origin_target(runtime.settings, query)
        except ProxyError as exc:
            misconfigured = exc
    call = describe_call(
        spec=spec,
        method=request.method,
        path_params=path_params,
        query=query,
        headers=request.headers.raw,
        request_path=request.scope.get("path"),
    )
    call.problem = misconfigured or call.problem
    meter = _meter(runtime, call, started, started_at)
    emit = _emitter(runtime)
    try:
        if call.problem is not None:
            raise call.problem
        if runtime.settings.allowed_caller_client_id is not None:
            verify_caller(request.headers, runtime.settings.allowed_caller_client_id)
        body = await read_body(
            request.stream(),
            request.headers.get("content-length"),
            runtime.settings.max_request_bytes,
        )
        add_body(call, body)  # the meter's call too
        return await _unless_client_leaves(request, forward(runtime, call, meter, emit))
    except ProxyError as exc:
        return _answer_with_error(runtime, meter, exc)
    except (ClientDisconnect, ClientGone):
        # Nobody to answer; the record says what happened and the upstream call (if any) is closed.
        meter.disconnected()
        if not meter.finished:
            emit(meter)
        return Response(status_code=400)
    except Exception:
        # A bug, not the caller's fault: the traceback goes to the log, never to the client.
        log.exception("unexpected error while handling %s %s", request.method, call.path)
        if meter.finished:  # the response was built; the failure came after the record
            raise
        return _answer_with_error(runtime, meter, InternalError("The proxy failed unexpectedly."))


async def forward(
    runtime: Runtime, call: Call, meter: UsageMeter, emit: Callable[[UsageMeter], None]
) -> Response:
    settings = runtime.settings
    # One deadline for the token, the connection and the response headers, and for a non-streamed
    # call the whole body: Azure ends an HTTP-triggered call that has sent nothing after 230 s.
    deadline = asyncio.get_running_loop().time() + settings.response_timeout
    reason = injection_decision(call, settings, runtime.rejected_versions)
    body = injected_body(call) if reason is None else call.body
    if body is None:
        reason, body = "body_not_reinjectable", call.body
    meter.injected = reason is None
    meter.injection_skipped_reason = reason
    upstream = await _open(runtime, call, body, deadline)
    if meter.injected and await _refuses_stream_options(upstream):
        # Upstream does not know stream_options here: resend the caller's own body. Remember it
        # only when the caller's body had none and that resend was accepted.
        upstream = await _open(runtime, call, call.body, deadline)
        meter.injected = False
        meter.injection_skipped_reason = "api_version_rejected_stream_options"
        if "stream_options" not in (call.payload or {}) and upstream.status != 400:
            runtime.rejected_versions.add(call)
    meter.upstream_headers(upstream.status, upstream.headers)
    if upstream.is_event_stream:
        return streamed(upstream, meter, emit, uninject if meter.injected else None)
    try:
        return await buffered(upstream, meter, emit, deadline)
    except TimeoutError as exc:
        raise _unfinished(settings.response_timeout) from exc
    except UpstreamBodyError as exc:
        if exc.timed_out:
            raise _unfinished(settings.response_timeout) from exc
        raise UpstreamUnreachable("The connection to Azure OpenAI failed mid-response.") from exc


def _unfinished(timeout: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"Azure OpenAI did not finish the response within {timeout:g} s. "
        "Long generations should use stream=true."
    )


async def _unless_client_leaves(request: Request, work: Awaitable[_T]) -> _T:
    """Runs `work`, cancelled at once if the caller disconnects first (waiting for upstream
    headers can take minutes with reasoning models). Once the response starts, the streaming
    response watches for the disconnect itself; in Azure the disconnect may never arrive, and
    then `work` simply runs to its end."""
    with CancelOnDisconnect(request.receive):
        return await work
    raise ClientGone


async def unrouted(request: Request, holder: RuntimeHolder, error: ProxyError) -> Response:
    """A call no route serves (404, 405): answered in Azure's shape, recorded like any call."""
    try:
        runtime = await holder.get()
    except ConfigError:
        return error_response(error, record_id=None)
    call = describe_call(
        spec=UNROUTED,
        method=request.method,
        path_params={"path": request.url.path.lstrip("/")},
        query=request.url.query,
        headers=request.headers.raw,
    )
    return _answer_with_error(runtime, _meter(runtime, call, now_ms(), datetime.now(UTC)), error)


def _query(scope: Scope) -> str:
    """The query string as Starlette's `request.url.query` gives it (urlsplit drops a fragment),
    without building a URL object for the whole request first."""
    query_string: bytes = scope.get("query_string", b"")
    return urlsplit("?" + query_string.decode()).query


async def _open(runtime: Runtime, call: Call, body: bytes, deadline: float) -> UpstreamResponse:
    return await runtime.upstream.open(
        call.method,
        call.path,
        call.query,
        call.forward_headers,
        body,
        stream=call.stream,
        deadline=deadline,
    )


async def _refuses_stream_options(upstream: UpstreamResponse) -> bool:
    """A 400 naming stream_options. Its body is read (and kept, for the relay) first."""
    if upstream.status != 400 or upstream.is_event_stream:
        return False
    return rejects_stream_options(upstream.status, await _read_error(upstream))


async def _read_error(upstream: UpstreamResponse) -> bytes:
    try:
        return await upstream.read()
    except UpstreamBodyError as exc:
        raise UpstreamUnreachable("The connection to Azure OpenAI failed mid-response.") from exc
    finally:
        upstream.close()


def _meter(runtime: Runtime, call: Call, started: float, started_at: datetime) -> UsageMeter:
    settings = runtime.settings
    return UsageMeter(
        call,
        instance_id=settings.instance_id,
        capture_limit=settings.capture_max_bytes if settings.capture_content else None,
        started_ms=started,
        started_at=started_at,
    )


def _emitter(runtime: Runtime) -> Callable[[UsageMeter], None]:
    sink = runtime.sink

    def emit(meter: UsageMeter) -> None:
        sink.submit(meter.finish())

    return emit


def _answer_with_error(runtime: Runtime, meter: UsageMeter, exc: ProxyError) -> Response:
    if exc.status >= 500:
        # One line with the cause: in Azure every log line is an Application Insights trace, and a
        # 502 burst must not write a traceback per call. The traceback is there at DEBUG.
        cause = exc.__cause__
        because = f" ({one_line(cause)})" if cause is not None else ""
        log.warning("answering %d %s: %s%s", exc.status, exc.code, exc.message, because)
        if cause is not None:
            log.debug("cause of the %d answer", exc.status, exc_info=cause)
    meter.proxy_error(exc.status, exc.code, exc.message)
    runtime.sink.submit(meter.finish())
    return error_response(exc, record_id=meter.record_id)


def error_response(exc: ProxyError, *, record_id: str | None) -> Response:
    headers = {RECORD_ID_HEADER: record_id} if record_id else None
    return Response(
        exc.body(), status_code=exc.status, media_type="application/json", headers=headers
    )


async def health(holder: RuntimeHolder) -> Response:
    try:
        runtime = await holder.get()
    except ConfigError as exc:
        # Anonymous route: the details (which may quote a setting's value) go to the log only.
        log.error("configuration error: %s", exc)
        problem = {"status": "misconfigured", "error": "invalid settings; see the application log"}
        return Response(json.dumps(problem), status_code=503, media_type="application/json")
    body: dict[str, Any] = {"status": "ok", "delivery": dict(runtime.sink.health())}
    return Response(json.dumps(body), media_type="application/json")
