"""Parse and validate an incoming call: route, query, body, caller context, headers to forward."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qs, quote, unquote, unquote_plus

from .azure_rules import api_version_problem, deployment_problem
from .errors import BadRequest, PayloadTooLarge, ProxyError
from .paths import SEGMENT_SAFE, check_request_path, encode_path
from .routes import Operation, RouteSpec

RawHeaders = list[tuple[bytes, bytes]]

# Headers APIM sets for us (infra/modules/apim policies); the record's caller context.
CALLER_HEADERS = {
    "x-apim-request-id": "request_id",
    "x-apim-subscription-id": "subscription_id",
    "x-apim-subscription-name": "subscription_name",
    "x-apim-product-id": "product_id",
    "x-apim-user-id": "user_id",
    "x-apim-client-ip": "client_ip",
}

_CALLER_HEADER_NAMES = [(header.encode(), key) for header, key in CALLER_HEADERS.items()]

# Never forwarded upstream: hop-by-hop headers (RFC 9110 section 7.6.1), what the client recomputes,
# the caller's credentials (upstream gets our Entra token only), and what the Functions front end
# and APIM add about the inbound hop.
_DROP_EXACT = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"accept-encoding",
        b"authorization",
        b"api-key",
        b"ocp-apim-subscription-key",
        b"x-functions-key",
        b"cookie",
        b"max-forwards",
        b"client-ip",
        b"disguised-host",
        b"was-default-hostname",
        b"x-site-deployment-id",
        b"x-appservice-proto",
        b"x-ms-invocation-id",
        b"forwarded",
        b"expect",
    }
)
# App Service built-in authentication (Entra mode) adds x-ms-client-principal, -id, -name, -idp and,
# with a token store, x-ms-token-*: identity of the inbound hop, never forwarded
# (learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
_DROP_PREFIXES = (
    b"x-apim-",
    b"x-forwarded-",
    b"x-arr-",
    b"x-original-",
    b"x-waws-",
    b"x-ms-client-principal",
    b"x-ms-token-",
)
# Arrays and objects nested deeper than this are refused with a 400 before parsing: Python's parser
# recurses per level (a 5,000-level body was a RecursionError, a 500), and so does every later walk
# of the payload. Real bodies stay far below it: structured-output schemas allow 10 levels of
# nesting (platform.openai.com/docs/guides/structured-outputs), about 3 JSON levels each.
MAX_JSON_DEPTH = 128
_SCAN_CHUNK = 65_536
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKET_STEP = [1 if b in b"[{" else -1 for b in range(256)]
# Credentials in the query string stay here like their headers: the Functions host accepts the
# function key as ?code=... (x-functions-key), Azure OpenAI and Azure AI services an api-key or
# subscription-key (api-key, Ocp-Apim-Subscription-Key); APIM's policy deletes api-key and code too.
_CREDENTIAL_PARAMS = frozenset({"code", "api-key", "subscription-key"})


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
    forward_headers: RawHeaders  # the wire bytes of the headers to forward
    caller: CallerContext
    is_v1: bool = field(default=False)
    # Why the call must not be forwarded (a path outside /openai/, a name Azure would refuse):
    # found while parsing, answered by the request path once the call can be recorded.
    problem: ProxyError | None = field(default=None)
    route: str = field(default="")  # the RouteSpec that served the call

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
    headers: RawHeaders | Mapping[str, str],
    request_path: str | None = None,
) -> Call:
    """What is known before the body is read: enough for a record even if the body is rejected.

    `request_path` is the whole path as the server decoded it (ASGI scope["path"]); it is checked
    as well as the route values, which a router may have cut short.

    `headers` are the request's as the ASGI server passed them: (name, value) wire bytes, which
    are forwarded as they are, UTF-8 or not. Text names and values (latin-1 decoded, as Starlette
    decodes them) stand for the same bytes.
    """
    raw = (
        [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        if isinstance(headers, Mapping)
        else headers
    )
    lowered = {name.lower(): value for name, value in raw}
    connection = lowered.get(b"connection", b"").decode("latin-1")
    hop_by_hop = {token.strip().lower().encode("latin-1") for token in connection.split(",")}
    # Route values come from the Functions host in Azure: match names case-insensitively and
    # treat a missing catch-all tail as empty, rather than fail on them.
    route_values = {name.lower(): str(value) for name, value in path_params.items()}
    decoded_path = spec.upstream_path(route_values)
    problem: ProxyError | None = None
    try:
        if request_path is not None:
            check_request_path(request_path)
        path = encode_path(decoded_path)
    except BadRequest as exc:
        # Recorded as received (escaped, so the record stays one clean line), never forwarded.
        received = decoded_path if request_path is None else request_path
        path = quote(received, safe="/" + SEGMENT_SAFE, errors="backslashreplace")
        problem = exc
    deployment = route_values.get("deployment") if spec.deployment_in_path else None
    named = _path_deployment(path)
    if problem is None and named is not None:
        problem = deployment_problem(named)
    forward_query = _without_credentials(query)
    api_versions = parse_qs(forward_query, keep_blank_values=True).get("api-version", [])
    if problem is None:
        problem = api_version_problem(api_versions)
    return Call(
        method=method,
        operation=spec.operation if method == "POST" else "other",
        path=path,
        query=forward_query,
        api_version=api_versions[0] if api_versions else None,
        deployment=deployment,
        body=b"",
        payload=None,
        stream=False,
        forward_headers=[
            (name, value)
            for name, value in raw
            if _forwardable(lowered_name := name.lower()) and lowered_name not in hop_by_hop
        ],
        caller=CallerContext(
            fields={key: _text(lowered.get(header)) for header, key in _CALLER_HEADER_NAMES},
            traceparent=_text(lowered.get(b"traceparent")),
        ),
        is_v1=path.startswith("/openai/v1/"),
        problem=problem,
        route=spec.name,
    )


def _path_deployment(path: str) -> str | None:
    """The deployment segment of /openai/deployments/{name}/..., on any route (unescaped)."""
    segments = path.split("/")
    if len(segments) > 3 and segments[2].lower() == "deployments":
        return unquote(segments[3])
    return None


def _without_credentials(query: str) -> str:
    """The query minus `code=`, `api-key=` and `subscription-key=`: every other parameter keeps
    its exact bytes and order."""
    if not query:
        return query
    kept = [
        part
        for part in query.split("&")
        if unquote_plus(part.partition("=")[0]).lower() not in _CREDENTIAL_PARAMS
    ]
    return "&".join(kept)


def add_body(call: Call, body: bytes) -> None:
    """Completes `call` with its body and what the body says; a JSON route's body must be a JSON
    object (else BadRequest, and the call stays as it was). In place: a copy of the call per
    request cost more than the rest of this step."""
    payload = _json_object(body) if call.operation != "other" else None
    if call.deployment is None and payload is not None and isinstance(payload.get("model"), str):
        call.deployment = payload["model"]
    call.body = body
    call.payload = payload
    call.stream = payload is not None and payload.get("stream") is True


def _json_object(body: bytes) -> dict[str, Any]:
    depth = _nesting_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(
            f"The request body nests JSON arrays and objects {depth} levels deep; "
            f"the limit is {MAX_JSON_DEPTH}."
        )
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    return value


def _nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest in `body` (brackets inside strings do not count), or a
    number past MAX_JSON_DEPTH as soon as one is seen.

    Each step runs in C: escaped backslashes and quotes go, then everything but quotes and
    brackets, then what lies between quote pairs (the strings). A body with few brackets, the
    common case, cannot nest deeply and is not scanned at all."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    depth = deepest = 0
    for start in range(0, len(structure), _SCAN_CHUNK):
        chunk = structure[start : start + _SCAN_CHUNK]
        levels = list(accumulate(map(_BRACKET_STEP.__getitem__, chunk), initial=depth))
        deepest, depth = max(deepest, *levels), levels[-1]
        if deepest > MAX_JSON_DEPTH:
            break
    return deepest


def _text(value: bytes | None) -> str | None:
    """A header value as Starlette gives it (latin-1 decoded); None when absent or empty."""
    return value.decode("latin-1") if value else None


def _forwardable(name: bytes) -> bool:
    return name not in _DROP_EXACT and not name.startswith(_DROP_PREFIXES)


def _too_large(size: int, limit: int) -> str:
    return f"The request body ({size} bytes or more) exceeds the limit of {limit} bytes."
