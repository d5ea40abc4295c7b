"""Relay an upstream response to the client unchanged, teeing a copy to the usage meter.

Streams are relayed event by event as they arrive: the SSE framer only holds back the bytes of an
event whose end has not arrived yet, so an upstream failure can be reported as a clean in-band
error event instead of corrupting a half-sent one. The meter parses each event after it has been
handed on. Whatever happens (completion, upstream failure, client disconnect) the upstream
response is closed and the record is emitted exactly once, after the last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Self

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import stream_error_event
from .sse import SSEFramer, parse_event
from .upstream import RawHeaders, UpstreamBodyError, UpstreamResponse
from .usage import UsageMeter, now_ms

log = logging.getLogger(__name__)

RECORD_ID_HEADER = "x-usage-record-id"
_RECORD_ID_RAW = RECORD_ID_HEADER.encode()

# Response headers worth relaying: Azure's request ids, region, rate-limit state and retry hints.
_FORWARD_EXACT = frozenset(
    {
        b"content-type",
        b"apim-request-id",
        b"x-request-id",
        b"x-ms-region",
        b"x-ms-client-request-id",
        b"x-ms-deployment-name",
        b"retry-after",
        b"retry-after-ms",
        b"azureml-model-session",
        b"openai-processing-ms",
        b"policy-id",
        b"x-ms-rai-invoked",
    }
)
_FORWARD_PREFIXES = (b"x-ratelimit-", b"x-rate-limit-")

Finish = Callable[[UsageMeter], None]
EventFilter = Callable[[Iterable[bytes]], bytes]


def relayed_headers(upstream: UpstreamResponse, meter: UsageMeter) -> RawHeaders:
    """The upstream's headers worth relaying, as their exact bytes (non-ASCII values included)."""
    headers = [
        (lowered, value)
        for name, value in upstream.raw_headers
        if (lowered := name.lower()) in _FORWARD_EXACT or lowered.startswith(_FORWARD_PREFIXES)
    ]
    headers.append((_RECORD_ID_RAW, meter.record_id.encode()))
    return headers


async def buffered(
    upstream: UpstreamResponse, meter: UsageMeter, finish: Finish, deadline: float
) -> Response:
    """A non-streamed response: read it whole (by `deadline`, event-loop time), then answer byte
    for byte. The record is emitted once the body has been sent (or the send failed)."""
    try:
        async with asyncio.timeout_at(deadline):
            body = await upstream.read()
    finally:
        upstream.close()
    _metered(meter.observe_body, body)
    return RecordedResponse(
        body,
        status_code=upstream.status,
        headers=relayed_headers(upstream, meter),
        meter=meter,
        finish=finish,
    )


def streamed(
    upstream: UpstreamResponse,
    meter: UsageMeter,
    finish: Finish,
    event_filter: EventFilter | None,
) -> Response:
    return RelayStreamingResponse(upstream, meter, finish, event_filter)


class RelayStreamingResponse(Response):
    """Relays the upstream stream as it arrives and closes it however the response ends, with no
    record ever lost.

    One coroutine per stream reads a chunk, frames it, sends what is complete in one ASGI message
    and meters it: no async generator or task group in between (each was measurable per event).
    Like Starlette's StreamingResponse it stops at once when the client disconnects, watched by
    one watcher task (CancelOnDisconnect).
    """

    def __init__(
        self,
        upstream: UpstreamResponse,
        meter: UsageMeter,
        finish: Finish,
        event_filter: EventFilter | None,
    ) -> None:
        self.status_code = upstream.status
        self.raw_headers = relayed_headers(upstream, meter)
        self.background = None
        self._upstream = upstream
        self._meter = meter
        self._finish = finish
        self._filter = event_filter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with CancelOnDisconnect(receive), contextlib.suppress(OSError):  # OSError: could not write
            await self._relay(send)

    async def _relay(self, send: Send) -> None:
        upstream, meter, event_filter = self._upstream, self._meter, self._filter
        framer = SSEFramer()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            try:
                while chunk := await upstream.read_chunk():
                    received = now_ms()
                    events = framer.feed(chunk)
                    if not events:
                        continue
                    out = event_filter(events) if event_filter else b"".join(events)
                    if out:
                        meter.first_byte_sent()
                        meter.response_bytes += len(out)
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    _metered(_observe, meter, events, received)  # after the client has the bytes
                rest = framer.flush()  # a last event with no blank line after it
                if rest:
                    out = event_filter([rest]) if event_filter else rest
                    if out:
                        meter.first_byte_sent()
                        meter.response_bytes += len(out)
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                    _metered(_observe, meter, [rest], now_ms())
            except UpstreamBodyError as exc:
                await send(
                    {"type": "http.response.body", "body": _failed(meter, exc), "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (asyncio.CancelledError, OSError):
            meter.disconnected()
            raise
        finally:
            upstream.close()
            self._finish(meter)


def _failed(meter: UsageMeter, exc: UpstreamBodyError) -> bytes:
    """Records the failure; the in-band error event that ends the stream (no fake [DONE]: the
    partial event, if any, is dropped)."""
    log.warning("upstream stream failed after %d bytes: %s", meter.response_bytes, exc)
    if exc.timed_out:
        code = "upstream_timeout"
        message = "Azure OpenAI sent nothing for too long; the response is incomplete."
    else:
        code = "upstream_stream_failed"
        message = "The upstream stream ended unexpectedly; the response is incomplete."
    meter.fail("stream_failed", code, message)
    error_event = stream_error_event(code, message)
    meter.response_bytes += len(error_event)
    return error_event


def _metered(observe: Callable[..., None], *args: object) -> None:
    """Metering never touches the relayed bytes, and its failure must not stop them either."""
    try:
        observe(*args)
    except Exception:
        log.exception("usage metering failed; the response is relayed unchanged")


def _observe(meter: UsageMeter, events: Iterable[bytes], received_ms: float) -> None:
    for raw in events:
        event = parse_event(raw)
        if event is not None:
            meter.observe_event(event, received_ms)


class CancelOnDisconnect:
    """Cancels the task that runs the `with` block once the client disconnects, and ends the block
    quietly then (`left` tells). A cancellation from elsewhere (a server shutting down) goes on.

    The work stays in the caller's task, with one watcher task beside it: a task of its own for the
    work and an `asyncio.wait` on both cost more per call than the rest of the step.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.left = False

    def __enter__(self) -> Self:
        task = asyncio.current_task()
        assert task is not None, "entered outside a task"
        self._task = task
        self._watcher = asyncio.ensure_future(self._watch())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> bool:
        self._watcher.cancel()
        cancelled = kind is not None and issubclass(kind, asyncio.CancelledError)
        return cancelled and self.left and self._task.uncancel() == 0

    async def _watch(self) -> None:
        await client_disconnect(self._receive)
        self.left = True
        self._task.cancel()


async def client_disconnect(receive: Receive) -> None:
    """Returns when the client disconnects; never, if the server does not say so.

    With the request body read, an ASGI server's next message is the disconnect. A server that
    sends something else does not report it: stop reading rather than consume messages in a loop.
    """
    if (await receive())["type"] != "http.disconnect":
        await asyncio.Event().wait()


class RecordedResponse(Response):
    """A whole body, answered byte for byte; the record is emitted after the send, however it ends."""

    def __init__(
        self,
        content: bytes,
        *,
        status_code: int,
        headers: RawHeaders,
        meter: UsageMeter,
        finish: Finish,
    ) -> None:
        super().__init__(content, status_code=status_code)  # sets content-length
        self.raw_headers += headers
        self._meter = meter
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._meter.first_byte_sent()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._finish(self._meter)
