"""ASGI responses that keep Azure's timing: the JSON body after the generation time, SSE events
on a schedule (first after ttft, then one per token interval).

Sleeping uses deadlines on the loop clock rather than fixed sleeps, so scheduling jitter does not
accumulate over long streams; nothing blocks the loop, so one process serves 1,000+ streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

import anyio
from anyio import CancelScope
from starlette.types import Receive, Scope, Send

from .recorder import RecordedRequest
from .wire import Event


class StreamCut(Exception):
    """Raised after the response started, on purpose: uvicorn then drops the connection without
    the end of the chunked body, which is what a mid-stream upstream failure looks like."""


def _raw(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _sleep_until(deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


class PacedStream:
    def __init__(
        self,
        events: Iterable[Event],
        *,
        headers: Mapping[str, str],
        record: RecordedRequest,
        ttft_s: float,
        token_s: float,
        fail_after: int | None = None,
        status: int = 200,
    ) -> None:
        self._events = events
        self._headers = _raw(headers)
        self._record = record
        self._ttft_s = ttft_s
        self._token_s = token_s
        self._fail_after = fail_after
        self._status = status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self._record
        record.status = self._status
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
            try:
                await self._send_events(send)
            except OSError:  # uvicorn's ClientDisconnected: the peer is gone
                record.disconnected = True
            group.cancel_scope.cancel()
        if record.cut:
            raise StreamCut(f"x-sim-fail-after={self._fail_after}: connection cut on purpose")

    async def _watch_disconnect(self, receive: Receive, scope: CancelScope) -> None:
        # Starlette only listens for http.disconnect on ASGI < 2.4; we want it always, so that a
        # proxy closing its upstream is noticed (and recorded) at once, not at the next send.
        while (await receive())["type"] != "http.disconnect":
            pass
        if not self._record.completed:
            self._record.disconnected = True
        scope.cancel()

    async def _send_events(self, send: Send) -> None:
        record = self._record
        due = asyncio.get_running_loop().time() + self._ttft_s
        started = False
        content_sent = 0
        for event in self._events:
            await _sleep_until(due)
            due += self._token_s
            if event.content and self._fail_after is not None and content_sent >= self._fail_after:
                record.cut = True
                return
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": self._status,
                        "headers": self._headers,
                    }
                )
                started = True
            record.event_times.append(time.monotonic())
            record.events.append(event.data)
            await send({"type": "http.response.body", "body": event.data, "more_body": True})
            content_sent += event.content
        if not started:
            await send(
                {"type": "http.response.start", "status": self._status, "headers": self._headers}
            )
        # Marked before the last send: a client that has seen the end must find it marked.
        record.completed = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class DelayedBody:
    """A complete body sent after `delay_s` (a non-streamed generation takes time too)."""

    def __init__(
        self,
        body: bytes,
        *,
        status: int,
        headers: Mapping[str, str],
        record: RecordedRequest,
        delay_s: float = 0.0,
    ) -> None:
        self._body = body
        self._status = status
        self._headers = _raw({**headers, "content-length": str(len(body))})
        self._record = record
        self._delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._record.status = self._status
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)
        try:
            await send(
                {"type": "http.response.start", "status": self._status, "headers": self._headers}
            )
            # Marked before the last send: a client that has seen the end must find it marked.
            self._record.event_times.append(time.monotonic())
            self._record.completed = True
            await send({"type": "http.response.body", "body": self._body, "more_body": False})
        except OSError:  # the caller gave up while the answer was being "generated"
            self._record.completed = False
            self._record.disconnected = True
