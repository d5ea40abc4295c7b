"""The one upstream HTTP client to Azure OpenAI, its Entra ID token, and upstream error mapping.

The HTTP/1.1 work is aoai_proxy.http1: the request leaves as the caller's exact header bytes (non-
ASCII and non-UTF-8 values included) with only Host, Content-Length, `Accept-Encoding: identity`
and our token added; the response comes back undecoded. No total timeout (streams last minutes),
no connection limit (each stream holds one; the Functions per-instance concurrency bounds them),
no redirects, no retries of a call that reached Azure.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from .config import Settings
from .credentials import token_failure_hint
from .errors import BadRequest, UpstreamTimeout, UpstreamUnreachable
from .http1 import ConnectFailed, ConnectTimedOut, Origin, Response, ResponseFailed
from .http1 import RawHeaders as RawHeaders
from .http1 import UpstreamBodyError as UpstreamBodyError
from .paths import confined

TokenProvider = Callable[[], Awaitable[str]]
# The relay's view of an upstream response: status, headers, raw_headers, is_event_stream,
# read_chunk(), read(), close().
UpstreamResponse = Response

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
# Idle pooled connections are closed before a uvicorn upstream (the simulator) closes them at 5 s,
# so a request is never written to a connection the server is closing (docs/benchmarks.md,
# finding 2). Azure OpenAI keeps idle connections longer.
_KEEPALIVE_S = 4.0
# A relay should not be the stricter hop: heads up to 100 KiB and 256 header lines pass.
_MAX_HEAD_BYTES = 100 * 1024
_MAX_HEADERS = 256


class Upstream:
    """Opens upstream responses; the caller relays and closes them. One per process.

    No retries here: APIM and the client own retries, so a 429 reaches the caller with its
    retry-after headers.
    """

    def __init__(
        self,
        settings: Settings,
        token_provider: TokenProvider | None,
        *,
        ssl_context: ssl.SSLContext | None = None,  # tests: one that trusts a test CA
    ) -> None:
        self._settings = settings
        self._token_provider = token_provider
        # Streams: a generous gap between chunks (reasoning models can think for minutes after
        # the first event). Non-streamed: the caller's deadline bounds the whole answer.
        self._stream_read_timeout = settings.stream_idle_timeout
        self._response_read_timeout = settings.response_timeout
        self._origin = Origin(
            settings.openai_endpoint,
            connect_timeout=settings.connect_timeout,
            keepalive_s=_KEEPALIVE_S,
            max_head_bytes=_MAX_HEAD_BYTES,
            max_headers=_MAX_HEADERS,
            ssl_context=ssl_context,
        )

    async def open(
        self,
        method: str,
        path: str,
        query: str,
        headers: RawHeaders,
        body: bytes,
        *,
        stream: bool,
        deadline: float,
    ) -> UpstreamResponse:
        """Sends the call and returns once response headers arrive (body not read yet).

        `deadline` (event-loop time) bounds the token, the connection and the response headers.
        """
        settings, origin = self._settings, self._origin
        # The last check before anything goes out: the path stays under /openai/ whatever a
        # later hop would make of it. It is already percent-encoded (inbound encodes the checked
        # segments; the query is the caller's) and goes out as these exact bytes.
        target = origin.path_prefix + confined(path) + ("?" + query if query else "")
        # Latin-1: the query's bytes as the caller sent them (ASGI decodes them so).
        request_line = [method.encode("latin-1"), b" ", target.encode("latin-1"), b" HTTP/1.1"]
        lines = [*request_line, b"\r\nhost: ", origin.host_header, b"\r\n"]
        for name, value in headers:
            # No server in front lets these through; were one to, they would split the message.
            if b"\r" in value or b"\n" in value or b"\0" in value:
                raise BadRequest(f"The value of the {name.decode('latin-1')!r} header is invalid.")
            lines += (name, b": ", value, b"\r\n")
        if body or method not in _BODYLESS:
            lines += (b"content-length: ", str(len(body)).encode(), b"\r\n")
        # The relay needs the wire bytes: never a compressed body.
        lines.append(b"accept-encoding: identity\r\n")
        read_timeout = self._stream_read_timeout if stream else self._response_read_timeout
        try:
            async with asyncio.timeout_at(deadline):
                if self._token_provider is not None:
                    lines += (b"authorization: Bearer ", (await self._token()).encode(), b"\r\n")
                lines += (b"\r\n", body)
                return await origin.request(lines[0], b"".join(lines), read_timeout=read_timeout)
        except ConnectTimedOut as exc:
            raise UpstreamUnreachable("Azure OpenAI did not accept a connection in time.") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Azure OpenAI sent no response within {settings.response_timeout:g} s. "
                "Long generations should use stream=true."
            ) from exc
        except (ConnectFailed, ResponseFailed) as exc:
            # The details (host, errno) go to the log, not to the caller (proxy._answer_with_error).
            raise UpstreamUnreachable("Azure OpenAI could not be reached.") from exc

    async def _token(self) -> str:
        assert self._token_provider is not None
        try:
            return await self._token_provider()
        except Exception as exc:
            # Logged once, with this cause, where the 502 is answered (proxy._answer_with_error).
            hint = token_failure_hint(self._settings.managed_identity_client_id)
            raise UpstreamUnreachable(hint) from exc

    async def aclose(self) -> None:
        self._origin.close()
