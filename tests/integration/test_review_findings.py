"""Edge cases of the request path found in review: non-ASCII and malformed input, credentials in the
query, injection refusals, platform headers, metering failures, deadlines and early disconnects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from aoai_proxy.asgi import create_app as create_proxy_app
from aoai_proxy.config import Settings
from aoai_proxy.inbound import Call, CallerContext
from aoai_proxy.inject import injected_body
from aoai_proxy.proxy import handle
from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.runtime import RuntimeHolder

API_VERSION = "2025-04-01-preview"
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
MESSAGES = [{"role": "user", "content": "What is 4200 + 42?"}]


def _proxy_in_front_of(
    serve_asgi: Callable[..., str], upstream_app: Any, tmp_path: Path, **overrides: Any
) -> tuple[str, Path]:
    upstream_url = serve_asgi(upstream_app)
    log = tmp_path / "usage.jsonl"
    settings = Settings(
        openai_endpoint=upstream_url,
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(log),
        **overrides,
    )
    return serve_asgi(create_proxy_app(lambda: settings)), log


def _records(log: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.02)
    lines = log.read_text().splitlines() if log.exists() else []
    assert len(lines) == count, f"expected {count} records, found {len(lines)}"
    return [json.loads(line) for line in lines]


# -- 1. inbound headers -------------------------------------------------------------------------


def test_non_ascii_header_value_is_forwarded_not_a_500(proxy: Any, upstream: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(
            CHAT,
            json={"messages": MESSAGES},
            headers=[(b"x-caller-name", "Zoë".encode())],  # UTF-8 bytes on the wire
        )
    assert response.status_code == 200, response.text
    assert upstream.recorder.last().header("x-caller-name") is not None


# -- 2. injection re-serialisation -----------------------------------------------------------------


def test_lone_surrogate_escape_in_an_injected_stream_is_not_a_500(proxy: Any) -> None:
    body = b'{"messages":[{"role":"user","content":"cut emoji \\ud83d"}],"stream":true}'
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


def test_injected_body_is_valid_json_whatever_the_numbers() -> None:
    call = Call(
        method="POST",
        operation="chat",
        path="/openai/deployments/d/chat/completions",
        query=f"api-version={API_VERSION}",
        api_version=API_VERSION,
        deployment="d",
        body=b'{"stream":true,"messages":[],"logit_bias":{"42":1e400}}',
        payload={"stream": True, "messages": [], "logit_bias": {"42": float("inf")}},
        stream=True,
        forward_headers=[],
        caller=CallerContext(fields={}, traceparent=None),
    )

    def strict(token: str) -> Any:
        raise ValueError(f"not JSON: {token}")

    json.loads(injected_body(call), parse_constant=strict)


# -- 3. credentials in the query string ---------------------------------------------------------------


def test_function_key_in_the_query_string_never_reaches_upstream(proxy: Any, upstream: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(f"{CHAT}&code=host-key-secret", json={"messages": MESSAGES})
    assert response.status_code == 200
    assert "host-key-secret" not in upstream.recorder.last().query


def test_api_keys_in_the_query_string_never_reach_upstream(proxy: Any, upstream: Any) -> None:
    """Like the api-key and Ocp-Apim-Subscription-Key headers (and like APIM's policy, which
    deletes the api-key query parameter): upstream gets the proxy's Entra ID token only."""
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(
            f"{CHAT}&api-key=aoai-key-secret&Subscription-Key=sub-key-secret&keep=me",
            json={"messages": MESSAGES},
        )
    assert response.status_code == 200
    query = upstream.recorder.last().query
    assert "key-secret" not in query
    assert query.endswith("&keep=me")


# -- 4. the 400-resend fallback ------------------------------------------------------------------------


def _strict_stream_options_upstream() -> Starlette:
    """An upstream that accepts stream_options but validates its members, as Azure does."""

    async def chat(request: Request) -> Response:
        payload = await request.json()
        options = payload.get("stream_options") or {}
        if not isinstance(options.get("include_obfuscation", False), bool):
            error = {
                "error": {
                    "code": "invalid_type",
                    "message": "Invalid type for 'stream_options.include_obfuscation': expected "
                    "a boolean.",
                }
            }
            return Response(json.dumps(error), 400, media_type="application/json")
        usage = options.get("include_usage") is True

        async def events() -> Any:
            tail = ',"usage":null}' if usage else "}"
            yield f'data: {{"choices":[{{"delta":{{"content":"hi"}},"index":0}}],"id":"c1","model":"m"{tail}\n\n'.encode()
            if usage:
                yield (
                    b'data: {"choices":[],"id":"c1","model":"m","usage":{"completion_tokens":1,'
                    b'"prompt_tokens":2,"total_tokens":3}}\n\n'
                )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/openai/deployments/{d}/chat/completions", chat, methods=["POST"])]
    )


def test_one_callers_bad_stream_options_does_not_disable_injection_for_everyone(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    base, log = _proxy_in_front_of(serve_asgi, _strict_stream_options_upstream(), tmp_path)
    with httpx.Client(base_url=base, timeout=10) as client:
        bad = client.post(
            CHAT,
            json={
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_obfuscation": "x"},
            },
        )
        good = client.post(CHAT, json={"messages": MESSAGES, "stream": True})
    assert bad.status_code == 400  # the caller's own mistake, passed through: correct
    assert good.status_code == 200
    assert _records(log, 2)[1]["usage"]["source"] == "injected"


# -- 5. records lost in the sink -----------------------------------------------------------------------


def test_a_lone_surrogate_in_the_body_never_loses_the_usage_record(proxy: Any) -> None:
    body = b'{"model":"gpt-4o-mini\\udc80","messages":[{"role":"user","content":"hi"}]}'
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        client.post(
            "/openai/v1/chat/completions",
            content=body,
            headers={"content-type": "application/json"},
        )
    assert len(proxy.records(1)) == 1


# -- 6. path params as the Functions worker fills them ----------------------------------------------------


def test_handle_answers_in_azure_shape_when_a_route_value_is_missing(tmp_path: Path) -> None:
    spec = next(s for s in PROXY_ROUTES if s.template == "openai/{*path}")
    settings = Settings(
        openai_endpoint="http://127.0.0.1:9",
        upstream_auth="none",
        sink="jsonl",
        usage_log_path=str(tmp_path / "u.jsonl"),
    )
    holder = RuntimeHolder(lambda: settings)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/openai/",
        "raw_path": b"/openai/",
        "query_string": b"",
        "headers": [],
        # What the worker's sync_route_params leaves for `/openai/` when the host has no `path`
        # value: binding data minus Headers/Query (here only the query parameter).
        "path_params": {"api-version": API_VERSION},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run() -> Response:
        try:
            return await handle(Request(scope, receive), spec, holder)
        finally:
            await holder.aclose()

    response = asyncio.run(run())
    assert response.status_code in (400, 404, 502)
    assert json.loads(bytes(response.body))["error"]["code"]


# -- 7. the non-streamed deadline -------------------------------------------------------------------


def _slow_headers_then_slow_body_upstream(headers_s: float, body_s: float) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(headers_s)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id":"x",', "more_body": True})
        await asyncio.sleep(body_s)
        await send({"type": "http.response.body", "body": b'"choices":[]}', "more_body": False})

    return app


def test_non_streamed_deadline_covers_headers_and_body_together(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    base, _ = _proxy_in_front_of(
        serve_asgi, _slow_headers_then_slow_body_upstream(0.7, 0.9), tmp_path, response_timeout=1.0
    )
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES})
    elapsed = time.monotonic() - started
    # Each phase alone is within the deadline: only one deadline for both gives a 504, and it cuts
    # the call at 1.0 s, well before the 1.6 s the upstream needs (the margin is for a loaded CI).
    assert response.status_code == 504, (response.status_code, round(elapsed, 2))
    assert elapsed < 1.55


# -- 8. disconnects before the first byte --------------------------------------------------------------


def test_client_leaving_before_the_first_event_closes_the_upstream_promptly(
    proxy: Any, upstream: Any
) -> None:
    with (
        httpx.Client(base_url=proxy.base_url, timeout=httpx.Timeout(10, read=0.3)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(
            CHAT,
            json={"messages": MESSAGES, "stream": True},
            headers={"x-sim-ttft-ms": "3000"},
        )
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not upstream.recorder.last().disconnected:
        time.sleep(0.02)
    assert upstream.recorder.last().disconnected  # well before the 3 s first event


# -- 9. what else reaches upstream -----------------------------------------------------------------------


def test_functions_host_plumbing_headers_are_not_forwarded(proxy: Any, upstream: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        client.post(
            CHAT,
            json={"messages": MESSAGES},
            headers={
                "x-ms-invocation-id": "0f0e",
                "x-ms-token-aad-access-token": "eyJ-user-token",
                "forwarded": "for=10.0.0.1",
            },
        )
    received = upstream.recorder.last()
    assert received.header("x-ms-token-aad-access-token") is None
    assert received.header("x-ms-invocation-id") is None
    assert received.header("forwarded") is None


# -- 10. the meter runs inside the relay -------------------------------------------------------------------


def _odd_but_valid_sse_upstream() -> Starlette:
    async def chat(request: Request) -> Response:
        async def events() -> Any:
            yield b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
            yield b'data: {"id":"c1","model":"m","choices":7}\n\n'  # valid JSON, unexpected shape
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/openai/deployments/{d}/chat/completions", chat, methods=["POST"])]
    )


def test_an_unexpected_event_shape_never_breaks_the_relay(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    base, log = _proxy_in_front_of(serve_asgi, _odd_but_valid_sse_upstream(), tmp_path)
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES, "stream": True})
    assert response.content.endswith(b"data: [DONE]\n\n")
    assert len(_records(log, 1)) == 1


def _odd_but_valid_json_upstream() -> Starlette:
    async def chat(request: Request) -> Response:
        return Response(b'{"id":"c1","choices":7}', media_type="application/json")

    return Starlette(
        routes=[Route("/openai/deployments/{d}/chat/completions", chat, methods=["POST"])]
    )


def test_an_unexpected_body_shape_is_still_relayed(
    serve_asgi: Callable[..., str], tmp_path: Path
) -> None:
    base, _ = _proxy_in_front_of(serve_asgi, _odd_but_valid_json_upstream(), tmp_path)
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES})
    assert response.status_code == 200
    assert response.content == b'{"id":"c1","choices":7}'


# -- 11. a client that leaves during the upload ----------------------------------------------------------


def test_client_leaving_during_the_upload_is_recorded_as_a_disconnect(proxy: Any) -> None:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(proxy.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"messages": ['
        )
        time.sleep(0.2)
    record = proxy.records(1)[0]
    assert record["response"]["client_disconnected"] is True
    assert record["response"]["error_code"] != "internal_error"
