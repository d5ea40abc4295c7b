"""scripts/smoke_test.py, the parts that decide whether Entra mode can become the default: the
streamed call must arrive in reads spread over time (a buffering hop fails it), and in Entra mode
calls straight to the Function App must get 401. Both run against loopback servers under uvicorn."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from scripts import smoke_test as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.infra.test_apim_smoke_test import ENV, sse_body

CHAT_PATH = "/openai/deployments/{deployment}/chat/completions"


def gateway_app(*, gap_seconds: float) -> Starlette:
    """A gateway answering a streamed chat with Azure's events, `gap_seconds` apart (0: buffered)."""
    events = [e + b"\n\n" for e in sse_body().split(b"\n\n") if e]

    async def chat(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for event in events:
                yield event
                if gap_seconds:
                    await asyncio.sleep(gap_seconds)

        if gap_seconds:
            return StreamingResponse(
                body(), media_type="text/event-stream", headers={"x-usage-record-id": "r1"}
            )
        return Response(
            sse_body(), media_type="text/event-stream", headers={"x-usage-record-id": "r1"}
        )

    return Starlette(routes=[Route(CHAT_PATH, chat, methods=["POST"])])


def streamed_outcome(base_url: str) -> st.CallOutcome:
    settings = st.Settings.from_env({**ENV, "APIM_GATEWAY_URL": base_url})
    (_, azure, _), *_ = st.make_clients(settings, "sub-key")
    return st.run_calls([("azure streamed", azure, True)], "chat")[0]


def test_a_stream_whose_chunks_arrive_over_time_passes(serve_asgi: Callable[..., str]) -> None:
    outcome = streamed_outcome(serve_asgi(gateway_app(gap_seconds=0.15)))
    assert outcome.error is None, outcome.error
    assert outcome.content_ok
    assert outcome.streamed_ok is True


def test_a_buffered_stream_fails_the_smoke_test(serve_asgi: Callable[..., str]) -> None:
    outcome = streamed_outcome(serve_asgi(gateway_app(gap_seconds=0)))
    assert outcome.content_ok
    assert outcome.streamed_ok is False
    record = {
        "type": "usage",
        "record_id": "r1",
        "usage": {"source": "injected", "total_tokens": 3},
    }
    record["caller"] = {"request_id": "q1", "subscription_id": "s"}
    gateway = {"type": "gateway", "request_id": "q1", "subscription_id": "s", "status": 200}
    checks = st.match([outcome], [record, gateway])
    assert checks[0].passed  # the record and the event are there...
    assert not st.passed([outcome], checks)  # ...but the response was not streamed
    assert "FAIL" in st.render_table([outcome], checks).splitlines()[2].split()[4]


@pytest.mark.parametrize(
    ("times", "expected"),
    [([], False), ([1.0], False), ([1.0, 1.05], False), ([1.0, 1.02, 1.2], True)],
)
def test_two_reads_spread_over_time_make_a_stream(times: list[float], expected: bool) -> None:
    assert st.arrived_as_a_stream(times) is expected


def test_the_streamed_call_asks_for_a_long_enough_answer(serve_asgi: Callable[..., str]) -> None:
    bodies: list[dict[str, Any]] = []
    app = gateway_app(gap_seconds=0)

    async def capture(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            bodies.append(json.loads(b"".join(chunks)))
            replay = iter([{"type": "http.request", "body": b"".join(chunks)}])

            async def again() -> Any:
                return next(replay)

            await app(scope, again, send)
        else:
            await app(scope, receive, send)

    streamed_outcome(serve_asgi(capture))
    (body,) = bodies
    assert body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": st.STREAM_PROMPT}]
    assert st.STREAM_PROMPT != st.PROMPT


# ---------------------------------------------------------------- Entra mode

APIM_CLIENT_ID = "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"


def function_app(*, easy_auth: bool) -> tuple[Starlette, list[dict[str, str]]]:
    """The Function App as seen from outside: with App Service authentication every call without a
    bearer token is 401; without it (a misconfiguration) the forged principal would get through."""
    seen: list[dict[str, str]] = []

    async def chat(request: Request) -> Response:
        seen.append(dict(request.headers))
        if easy_auth and not request.headers.get("authorization", "").startswith("Bearer "):
            return Response(status_code=401)
        if request.headers.get("x-ms-client-principal"):
            return JSONResponse({"choices": []})
        return JSONResponse({"error": {"code": "401", "message": "no principal"}}, status_code=401)

    return Starlette(routes=[Route(CHAT_PATH, chat, methods=["POST"])]), seen


def entra_settings(function_url: str) -> st.Settings:
    return st.Settings.from_env(
        {
            **ENV,
            "APIM_FUNCTION_AUTH": "entra",
            "SERVICE_API_URI": function_url,
            "APIM_IDENTITY_CLIENT_ID": APIM_CLIENT_ID,
        }
    )


def test_entra_mode_passes_when_the_function_refuses_both_direct_calls(
    serve_asgi: Callable[..., str],
) -> None:
    app, seen = function_app(easy_auth=True)
    settings = entra_settings(serve_asgi(app))
    with httpx.Client() as http:
        refusals = st.direct_calls_refused(http, settings)
    assert [(r.name, r.status, r.passed) for r in refusals] == [
        ("direct call, no token", 401, True),
        ("direct call, forged principal", 401, True),
    ]
    forged = json.loads(base64.b64decode(seen[1]["x-ms-client-principal"]))
    assert {"typ": "azp", "val": APIM_CLIENT_ID} in forged["claims"]
    assert "authorization" not in seen[0]
    assert "PASS" in st.render_refusals(refusals)


def test_entra_mode_fails_when_a_forged_principal_gets_through(
    serve_asgi: Callable[..., str],
) -> None:
    app, _ = function_app(easy_auth=False)
    with httpx.Client() as http:
        refusals = st.direct_calls_refused(http, entra_settings(serve_asgi(app)))
    assert [r.passed for r in refusals] == [True, False]
    assert "FAIL (expected 401)" in st.render_refusals(refusals)


def test_an_unreachable_function_is_a_failure_not_a_crash(free_port: int) -> None:
    with httpx.Client() as http:
        refusals = st.direct_calls_refused(http, entra_settings(f"http://127.0.0.1:{free_port}"))
    assert [r.status for r in refusals] == [None, None]
    assert not any(r.passed for r in refusals)


def test_entra_mode_needs_the_function_url_and_apims_identity() -> None:
    with pytest.raises(st.SmokeTestError, match="SERVICE_API_URI, APIM_IDENTITY_CLIENT_ID"):
        st.Settings.from_env({**ENV, "APIM_FUNCTION_AUTH": "entra"})
    assert st.Settings.from_env(ENV).function_auth == "key"
