"""Parse and validate an incoming call: route, query, body, caller context, headers to forward."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus

from .errors import BadRequest, PayloadTooLarge
from .routes import Operation, RouteSpec

# Headers APIM sets for us (infra/modules/apim policies); the record's caller context.
CALLER_HEADERS = {
    "x-apim-request-id": "request_id",
    "x-apim-subscription-id": "subscription_id",
    "x-apim-subscription-name": "subscription_name",
    "x-apim-product-id": "product_id",
    "x-apim-user-id": "user_id",
    "x-apim-client-ip": "client_ip",
}

# Never forwarded upstream: hop-by-hop headers (RFC 9110 section 7.6.1), what httpx recomputes,
# the caller's credentials (upstream gets our Entra token only), and what the Functions front end
# and APIM add about the inbound hop.
_DROP_EXACT = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "authorization",
        "api-key",
        "ocp-apim-subscription-key",
        "x-functions-key",
        "cookie",
        "max-forwards",
        "client-ip",
        "disguised-host",
        "was-default-hostname",
        "x-site-deployment-id",
        "x-appservice-proto",
        "x-ms-client-principal",
        "x-ms-client-principal-id",
        "x-ms-client-principal-name",
        "x-ms-client-principal-idp",
        "x-ms-invocation-id",
        "forwarded",
        "expect",
    }
)
# x-ms-token-*: Easy Auth's token store (user tokens) if authentication is ever switched on.
_DROP_PREFIXES = ("x-apim-", "x-forwarded-", "x-arr-", "x-original-", "x-waws-", "x-ms-token-")
# The Functions host accepts the function key as ?code=...; like x-functions-key it stays here.
_FUNCTION_KEY_PARAM = "code"


@dataclass(frozen=True, slots=True)
class CallerContext:
    fields: Mapping[str, str | None]
    traceparent: str | None


@dataclass(slots=True)
class Call:
    """One inbound call, as forwarded upstream (the body may later get stream_options injected)."""

    method: str
    operation: Operation
    path: str  # upstream path, e.g. /openai/deployments/gpt-4o/chat/completions
    query: str  # raw query string as forwarded: unchanged but for the function key (?code=)
    api_version: str | None
    deployment: str | None
    body: bytes
    payload: dict[str, Any] | None  # the parsed JSON object on JSON routes
    stream: bool
    forward_headers: list[tuple[bytes, bytes]]  # the wire bytes of the headers to forward
    caller: CallerContext
    is_v1: bool = field(default=False)

    @property
    def include_usage_requested(self) -> bool:
        options = (self.payload or {}).get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


async def read_body(stream: AsyncIterator[bytes], content_length: str | None, limit: int) -> bytes:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(_too_large(int(content_length), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def describe_call(
    *,
    spec: RouteSpec,
    method: str,
    path_params: Mapping[str, str],
    query: str,
    headers: Mapping[str, str] | list[tuple[str, str]],
) -> Call:
    """What is known before the body is read: enough for a record even if the body is rejected.

    Header values arrive latin-1 decoded (ASGI/Starlette), so encoding them back as latin-1
    forwards the caller's exact bytes, UTF-8 included.
    """
    items = list(headers.items()) if isinstance(headers, Mapping) else headers
    lowered = {name.lower(): value for name, value in items}
    hop_by_hop = {token.strip().lower() for token in lowered.get("connection", "").split(",")}
    # Route values come from the Functions host in Azure: match names case-insensitively and
    # treat a missing catch-all tail as empty, rather than fail on them.
    route_values = {name.lower(): str(value) for name, value in path_params.items()}
    path = spec.upstream_path(
        {name: quote(value, safe="/:@-._~!$&'()*+,;=") for name, value in route_values.items()}
    )
    forward_query = _without_function_key(query)
    return Call(
        method=method,
        operation=spec.operation if method == "POST" else "other",
        path=path,
        query=forward_query,
        api_version=parse_qs(forward_query).get("api-version", [None])[0],
        deployment=route_values.get("deployment") if spec.deployment_in_path else None,
        body=b"",
        payload=None,
        stream=False,
        forward_headers=[
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in items
            if _forwardable(name.lower()) and name.lower() not in hop_by_hop
        ],
        caller=CallerContext(
            fields={key: lowered.get(header) or None for header, key in CALLER_HEADERS.items()},
            traceparent=lowered.get("traceparent") or None,
        ),
        is_v1=path.startswith("/openai/v1/"),
    )


def _without_function_key(query: str) -> str:
    """The query minus `code=`: every other parameter keeps its exact bytes and order."""
    if not query:
        return query
    kept = [
        part
        for part in query.split("&")
        if unquote_plus(part.partition("=")[0]).lower() != _FUNCTION_KEY_PARAM
    ]
    return "&".join(kept)


def with_body(call: Call, body: bytes) -> Call:
    """The call with its body; a JSON route's body must be a JSON object (else BadRequest)."""
    payload = _json_object(body) if call.operation != "other" else None
    deployment = call.deployment
    if deployment is None and payload is not None and isinstance(payload.get("model"), str):
        deployment = payload["model"]
    return replace(
        call,
        body=body,
        payload=payload,
        deployment=deployment,
        stream=payload is not None and payload.get("stream") is True,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    return value


def _forwardable(name: str) -> bool:
    return name not in _DROP_EXACT and not name.startswith(_DROP_PREFIXES)


def _too_large(size: int, limit: int) -> str:
    return f"The request body ({size} bytes or more) exceeds the limit of {limit} bytes."
