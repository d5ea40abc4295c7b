"""The one pooled HTTP client to Azure OpenAI, its Entra ID token, and upstream error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from .config import Settings
from .errors import UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger(__name__)

TokenProvider = Callable[[], Awaitable[str]]


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
            # Pool size is bounded by the Functions per-instance HTTP concurrency, not here:
            # every SSE stream holds one connection for its whole length.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            follow_redirects=False,
            trust_env=False,
        )

    async def open(
        self,
        method: str,
        path: str,
        query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        stream: bool,
    ) -> httpx.Response:
        """Sends the call and returns once response headers arrive (body not read yet)."""
        settings = self._settings
        request_headers = list(headers)
        # httpx would otherwise advertise gzip/br and decode: the relay must see the wire bytes.
        request_headers.append(("Accept-Encoding", "identity"))
        if self._token_provider is not None:
            try:
                token = await self._token_provider()
            except Exception as exc:
                log.exception("could not get an Entra ID token for Azure OpenAI")
                raise UpstreamUnreachable(
                    "Could not get an Entra ID token for Azure OpenAI; check the Function's "
                    "managed identity and its role assignment."
                ) from exc
            request_headers.append(("Authorization", f"Bearer {token}"))
        # Streams: a generous gap between chunks (reasoning models can think for minutes after
        # the first event). Non-streamed: one deadline below the 230 s Azure allows a silent call.
        read = settings.stream_idle_timeout if stream else settings.response_timeout
        timeout = httpx.Timeout(connect=settings.connect_timeout, read=read, write=read, pool=read)
        request = self._client.build_request(
            method,
            path + ("?" + query if query else ""),
            headers=request_headers,
            content=body if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS") else None,
            timeout=timeout,
        )
        try:
            async with asyncio.timeout(settings.response_timeout):
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

    async def aclose(self) -> None:
        await self._client.aclose()
