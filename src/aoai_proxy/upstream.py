"""The one upstream HTTP client to Azure OpenAI, its Entra ID token, and upstream error mapping.

aiohttp (already installed for azure-identity's async transport) parses responses with llhttp, in
C, and its pool takes a free connection without scanning the others: measured in
docs/benchmarks.md. Its defaults suit a browser-like client, not a relay, so every one that would
change the call is set here: no total timeout (streams last minutes), no connection limit (each
stream holds one; the Functions per-instance concurrency bounds them), no decompression, no URL
re-normalisation, no cookie jar, and no header the caller did not send but Host, Content-Length and
`Accept-Encoding: identity`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from yarl import URL

from .config import Settings
from .credentials import token_failure_hint
from .errors import BadRequest, UpstreamTimeout, UpstreamUnreachable
from .paths import confined

TokenProvider = Callable[[], Awaitable[str]]
RawHeaders = list[tuple[bytes, bytes]]

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
# aiohttp adds these unless told not to: the upstream gets the caller's, or none.
_NOT_ADDED = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Idle pooled connections are closed before a uvicorn upstream (the simulator) closes them at 5 s,
# so a request is never written to a connection the server is closing (docs/benchmarks.md,
# finding 2). Azure OpenAI keeps idle connections longer.
_KEEPALIVE_S = 4.0
_MAX_HEAD_BYTES = 100 * 1024


class UpstreamBodyError(Exception):
    """The upstream response body could not be read to its end."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class UpstreamResponse:
    """An upstream response whose body has not been read yet. `close()` it once done."""

    __slots__ = ("_body", "_response", "headers", "raw_headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers  # case-insensitive lookups
        self.raw_headers: RawHeaders = list(response.raw_headers)  # the exact wire bytes, in order
        self._body: bytes | None = None

    @property
    def is_event_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    async def read_chunk(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some), as sent: b"" at the end."""
        try:
            return await self._response.content.readany()
        except TimeoutError as exc:
            raise UpstreamBodyError(str(exc) or "read timed out", timed_out=True) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamBodyError(repr(exc), timed_out=False) from exc

    async def read(self) -> bytes:
        """The whole body (kept: a second call returns it again)."""
        if self._body is None:
            chunks = []
            while chunk := await self.read_chunk():
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    def close(self) -> None:
        """Back to the pool when the body was read to its end; otherwise the connection is closed,
        which is how the upstream learns that nobody reads the rest."""
        if self._response.content.is_eof():
            self._response.release()
        else:
            self._response.close()


class Upstream:
    """Opens upstream responses; the caller relays and closes them. One per process.

    No retries here: APIM and the client own retries, so a 429 reaches the caller with its
    retry-after headers.
    """

    def __init__(self, settings: Settings, token_provider: TokenProvider | None) -> None:
        self._settings = settings
        self._token_provider = token_provider
        self._base = settings.openai_endpoint.rstrip("/")
        # Streams: a generous gap between chunks (reasoning models can think for minutes after
        # the first event). Non-streamed: the caller's deadline bounds the whole answer.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=settings.stream_idle_timeout
        )
        self._response_timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=settings.response_timeout
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=_KEEPALIVE_S
            ),
            timeout=self._stream_timeout,
            auto_decompress=False,
            skip_auto_headers=_NOT_ADDED,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            # aiohttp refuses a response header line over 8 KiB (a 502 here); httpx took heads
            # up to 100 KiB. Azure's are small, but a relay should not be the stricter hop.
            max_line_size=_MAX_HEAD_BYTES,
            max_field_size=_MAX_HEAD_BYTES,
            max_headers=256,
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
        settings = self._settings
        # The last check before anything goes out: the path stays under /openai/ whatever a
        # later hop would make of it. It is already percent-encoded (inbound encodes the checked
        # segments; the query is the caller's): encoded=True sends these exact bytes instead of
        # letting yarl re-normalise them.
        target = confined(path) + ("?" + query if query else "")
        url = URL(self._base + target, encoded=True)
        request_headers = _header_strings(headers)
        # The relay needs the wire bytes: never a compressed body.
        request_headers.append(("accept-encoding", "identity"))
        try:
            async with asyncio.timeout_at(deadline):
                if self._token_provider is not None:
                    request_headers.append(("authorization", "Bearer " + await self._token()))
                response = await self._session.request(
                    method,
                    url,
                    headers=request_headers,
                    data=body if body or method not in _BODYLESS else None,
                    allow_redirects=False,
                    timeout=self._stream_timeout if stream else self._response_timeout,
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamUnreachable("Azure OpenAI did not accept a connection in time.") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"Azure OpenAI sent no response within {settings.response_timeout:g} s. "
                "Long generations should use stream=true."
            ) from exc
        except aiohttp.ClientError as exc:
            # The details (host, errno) go to the log, not to the caller (proxy._answer_with_error).
            raise UpstreamUnreachable("Azure OpenAI could not be reached.") from exc
        return UpstreamResponse(response)

    async def _token(self) -> str:
        assert self._token_provider is not None
        try:
            return await self._token_provider()
        except Exception as exc:
            # Logged once, with this cause, where the 502 is answered (proxy._answer_with_error).
            hint = token_failure_hint(self._settings.managed_identity_client_id)
            raise UpstreamUnreachable(hint) from exc

    async def aclose(self) -> None:
        await self._session.close()


def _header_strings(headers: RawHeaders) -> list[tuple[str, str]]:
    """aiohttp writes header values as UTF-8, so values decoded from UTF-8 go out as the caller's
    exact bytes (ASCII included). Other bytes cannot be written back exactly: a clear 400."""
    strings = []
    for name, value in headers:
        try:
            strings.append((name.decode("latin-1"), value.decode("utf-8")))
        except UnicodeDecodeError:
            raise BadRequest(
                f"The value of the {name.decode('latin-1')!r} header is not valid UTF-8."
            ) from None
    return strings
