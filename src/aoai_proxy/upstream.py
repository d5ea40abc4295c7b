"""The one pooled HTTP client to Azure OpenAI, its Entra ID token, and upstream error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from .config import Settings
from .errors import UpstreamTimeout, UpstreamUnreachable
from .paths import confined

log = logging.getLogger(__name__)

TokenProvider = Callable[[], Awaitable[str]]

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


class Upstream:
    """Opens upstream responses; the caller relays and closes them.

    No retries here: APIM and the client own retries, so a 429 reaches the caller with its
    retry-after headers.
    """

    def __init__(self, settings: Settings, token_provider: TokenProvider | None) -> None:
        self._settings = settings
        self._token_provider = token_provider
        self._client = httpx.AsyncClient(
            base_url=settings.openai_endpoint,
            # Open connections are bounded by the Functions per-instance HTTP concurrency, not
            # here: every SSE stream holds one for its whole length. Idle ones kept for reuse stay
            # few: httpcore scans the whole pool on every request start and close
            # (encode/httpcore#1035), which made 256 cost 3-4x CPU after a burst (docs/benchmarks.md).
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            follow_redirects=False,
            trust_env=False,
        )

    async def open(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        *,
        stream: bool,
        deadline: float,
    ) -> httpx.Response:
        """Sends the call and returns once response headers arrive (body not read yet).

        `deadline` (event-loop time) bounds the token, the connection and the response headers.
        """
        # The last check before anything goes out: the path stays under /openai/ whatever the
        # HTTP client would make of it (both httpx and yarl resolve dot segments).
        target = confined(path) + ("?" + query if query else "")
        settings = self._settings
        # Streams: a generous gap between chunks (reasoning models can think for minutes after
        # the first event). Non-streamed: the caller's deadline bounds the whole answer.
        read = settings.stream_idle_timeout if stream else settings.response_timeout
        timeout = httpx.Timeout(connect=settings.connect_timeout, read=read, write=read, pool=read)
        try:
            async with asyncio.timeout_at(deadline):
                # httpx would otherwise advertise gzip/br and decode: the relay needs wire bytes.
                request_headers = [*headers, (b"accept-encoding", b"identity")]
                if self._token_provider is not None:
                    request_headers.append((b"authorization", b"Bearer " + await self._token()))
                request = self._client.build_request(
                    method,
                    target,
                    headers=request_headers,
                    content=body if body or method not in _BODYLESS else None,
                    timeout=timeout,
                )
                return await self._client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise UpstreamUnreachable(
                    "Azure OpenAI did not accept a connection in time."
                ) from exc
            raise UpstreamTimeout(
                f"Azure OpenAI sent no response within {settings.response_timeout:g} s. "
                "Long generations should use stream=true."
            ) from exc
        except httpx.TransportError as exc:
            # The details (host, errno) go to the log with the traceback, not to the caller.
            raise UpstreamUnreachable("Azure OpenAI could not be reached.") from exc

    async def _token(self) -> bytes:
        assert self._token_provider is not None
        try:
            return (await self._token_provider()).encode("ascii")
        except Exception as exc:
            log.exception("could not get an Entra ID token for Azure OpenAI")
            raise UpstreamUnreachable(
                "Could not get an Entra ID token for Azure OpenAI; check the Function's "
                "managed identity and its role assignment."
            ) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
