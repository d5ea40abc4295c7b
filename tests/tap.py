"""An ASGI middleware that keeps what an app sent back (status, headers, body bytes), so tests can
compare the proxy's output with the upstream's exact output."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(eq=False)
class TappedResponse:
    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ResponseTap:
    def __init__(self, app: ASGIApp, maxlen: int = 2000) -> None:
        self.app = app
        self.responses: deque[TappedResponse] = deque(maxlen=maxlen)

    def last(self) -> TappedResponse:
        return self.responses[-1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tapped = TappedResponse(path=scope["path"])
        self.responses.append(tapped)

        async def tap_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                tapped.status = message["status"]
                tapped.headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]
                }
            elif message["type"] == "http.response.body":
                tapped.body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, tap_send)


def tap_of(app: Any) -> ResponseTap:
    assert isinstance(app, ResponseTap)
    return app
