"""scripts/smoke_test.py, the origin's contract: its two calls to `<gateway>/openai/aoaifn` send the
origin README's bodies with the subscription key, and pass only when their records name the aoaifn
route with exact usage and the stream arrives over time. Loopback servers under uvicorn; the
end-to-end case puts the real proxy behind an APIM stand-in that does what the aoaifn operation does."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from scripts import smoke_test as st
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.infra.test_apim_smoke_test import ENV, completion_json, gateway_event, sse_body
from tests.integration.test_aoaifn import NON_STREAMING, STREAMING

from aoai_proxy.routes import AOAIFN_ROUTE

ROOT = Path(__file__).resolve().parents[2]
ORIGIN_CALLS = (st.AOAIFN_NON_STREAMED, st.AOAIFN_STREAMED)


def origin_clients(base_url: str) -> list[tuple[str, Any, bool]]:
    settings = st.Settings.from_env({**ENV, "APIM_GATEWAY_URL": base_url})
    return [c for c in st.make_clients(settings, "sub-key") if c[0] in ORIGIN_CALLS]


def gateway_app(*, gap_seconds: float) -> tuple[Starlette, list[tuple[bytes, str | None]]]:
    """The aoaifn operation answering as Azure does, stream events `gap_seconds` apart (0: buffered);
    it keeps each request's body and api-key."""
    seen: list[tuple[bytes, str | None]] = []
    events = [e + b"\n\n" for e in sse_body().split(b"\n\n") if e]

    async def aoaifn(request: Request) -> Response:
        body = await request.body()
        seen.append((body, request.headers.get("api-key")))
        headers = {"x-usage-record-id": f"r{len(seen)}"}
        if b'"stream": true' not in body:
            return JSONResponse(completion_json(), headers=headers)

        async def stream() -> AsyncIterator[bytes]:
            for event in events:
                yield event
                await asyncio.sleep(gap_seconds)

        if not gap_seconds:
            return Response(sse_body(), media_type="text/event-stream", headers=headers)
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return Starlette(routes=[Route(st.AOAIFN_PATH, aoaifn, methods=["POST"])]), seen


def test_the_origin_calls_send_its_readme_bodies_with_the_key(
    serve_asgi: Callable[..., str],
) -> None:
    # Well over STREAM_MIN_SPREAD_SECONDS: a loaded machine may read the first event late.
    app, seen = gateway_app(gap_seconds=0.3)
    outcomes = st.run_calls(origin_clients(serve_asgi(app)), "chat")

    assert [(o.name, o.status, o.content_ok, o.error) for o in outcomes] == [
        (st.AOAIFN_NON_STREAMED, 200, True, None),
        (st.AOAIFN_STREAMED, 200, True, None),
    ]
    assert [o.streamed_ok for o in outcomes] == [None, True]
    assert [o.usage_record_id for o in outcomes] == ["r1", "r2"]
    # The origin README's bodies, as the repository's own aoaifn tests send them; the streamed one
    # with the smoke test's long prompt in place of the README's one sentence.
    readme_stream = json.loads(STREAMING)
    readme_stream["messages"][-1]["content"] = st.STREAM_PROMPT
    assert seen[0] == (NON_STREAMING, "sub-key")
    assert (json.loads(seen[1][0]), seen[1][1]) == (readme_stream, "sub-key")


def test_a_buffered_origin_stream_fails(serve_asgi: Callable[..., str]) -> None:
    app, _ = gateway_app(gap_seconds=0)
    _, streamed = st.run_calls(origin_clients(serve_asgi(app)), "chat")
    assert streamed.content_ok
    assert streamed.streamed_ok is False
    events = [aoaifn_record("r2", "q2"), gateway_event("q2")]
    assert not st.passed([streamed], st.match([streamed], events))


def test_an_origin_call_refused_is_reported_with_its_status(serve_asgi: Callable[..., str]) -> None:
    async def refuse(request: Request) -> Response:
        return JSONResponse({"statusCode": 404, "message": "Resource not found"}, status_code=404)

    app = Starlette(routes=[Route(st.AOAIFN_PATH, refuse, methods=["POST"])])
    outcomes = st.run_calls(origin_clients(serve_asgi(app)), "chat")
    assert [(o.status, o.usage_record_id) for o in outcomes] == [(404, None), (404, None)]
    assert all(o.error and "404" in o.error for o in outcomes)
    assert not st.passed(outcomes, st.match(outcomes, []))


def test_the_smoke_test_calls_the_route_apim_publishes_and_the_proxy_names() -> None:
    assert AOAIFN_ROUTE.name == st.AOAIFN_ROUTE
    api = (ROOT / "infra" / "modules" / "apim-api.bicep").read_text(encoding="utf-8")
    assert "path: 'openai'" in api
    assert "urlTemplate: '/aoaifn'" in api
    assert st.AOAIFN_PATH == "/openai/aoaifn"


# ---------------------------------------------------------------- matching


def aoaifn_record(
    record_id: str, request_id: str, *, route: str = "aoaifn", source: str = "provider"
) -> dict[str, Any]:
    return {
        "type": "usage",
        "record_id": record_id,
        "caller": {"request_id": request_id, "subscription_id": "first-consumer"},
        "request": {"route": route, "operation": "chat", "deployment": "chat"},
        "usage": {"source": source, "source_reason": None, "total_tokens": 46},
    }


def outcome(name: str, record_id: str) -> st.CallOutcome:
    return st.CallOutcome(name, 200, record_id, content_ok=True, streamed_ok=None)


def test_origin_records_naming_the_aoaifn_route_pass() -> None:
    outcomes = [outcome(st.AOAIFN_NON_STREAMED, "r1"), outcome(st.AOAIFN_STREAMED, "r2")]
    events = [
        aoaifn_record("r1", "q1"),
        gateway_event("q1"),
        aoaifn_record("r2", "q2", source="injected"),  # the streamed one takes either source
        gateway_event("q2"),
    ]
    checks = st.match(outcomes, events)
    assert [c.passed for c in checks] == [True, True], [c.detail for c in checks]
    assert st.passed(outcomes, checks)
    assert st.expected_landing(checks) == {"r1": 46, "r2": 46}  # looked for in the workspace too


@pytest.mark.parametrize(
    ("name", "record", "detail"),
    [
        (st.AOAIFN_NON_STREAMED, None, "usage record r1 not found"),
        (
            st.AOAIFN_NON_STREAMED,
            aoaifn_record("r1", "q1", route="chat_completions"),
            "request.route chat_completions, operation chat: expected route aoaifn",
        ),
        (
            st.AOAIFN_STREAMED,
            {**aoaifn_record("r1", "q1"), "request": {"route": "aoaifn", "operation": "other"}},
            "operation other: expected route aoaifn, operation chat",
        ),
        (st.AOAIFN_STREAMED, {**aoaifn_record("r1", "q1"), "request": None}, "request.route None"),
        (
            st.AOAIFN_NON_STREAMED,
            aoaifn_record("r1", "q1", source="injected"),
            "usage.source is injected, expected provider",
        ),
        (st.AOAIFN_STREAMED, aoaifn_record("r1", "q1", source="none"), "no exact token counts"),
    ],
)
def test_an_origin_record_missing_or_naming_another_route_fails(
    name: str, record: dict[str, Any] | None, detail: str
) -> None:
    call = outcome(name, "r1")
    events = [gateway_event("q1")] + ([record] if record else [])
    (check,) = st.match([call], events)
    assert not check.passed
    assert detail in check.detail
    assert not st.passed([call], [check])


# ---------------------------------------------------------------- end to end, the real proxy


def apim_stand_in(function_url: str, calls: list[str]) -> Starlette:
    """What the aoaifn operation does: POST /openai/aoaifn -> the Function's /api/aoaifn, with the
    caller headers the API policy sets (its request id and the subscription), streamed through."""

    async def aoaifn(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        calls.append(request_id)
        client = httpx.AsyncClient(timeout=10)
        upstream = await client.send(
            client.build_request(
                "POST",
                f"{function_url.rstrip('/')}/{AOAIFN_ROUTE.template}",
                content=await request.body(),
                headers={
                    "content-type": request.headers["content-type"],
                    "x-apim-request-id": request_id,
                    "x-apim-subscription-id": "first-consumer",
                },
            ),
            stream=True,
        )
        kept = {
            k: v for k, v in upstream.headers.items() if k in ("content-type", "x-usage-record-id")
        }
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=kept,
            background=BackgroundTask(client.aclose),
        )

    return Starlette(routes=[Route(st.AOAIFN_PATH, aoaifn, methods=["POST"])])


def test_the_real_proxys_records_of_both_origin_calls_pass_the_matching(
    serve_asgi: Callable[..., str], proxy_factory: Any
) -> None:
    proxy = proxy_factory(aoaifn_deployment="chat")
    calls: list[str] = []
    outcomes = st.run_calls(
        origin_clients(serve_asgi(apim_stand_in(proxy.base_url, calls))), "chat"
    )
    assert [(o.status, o.content_ok, o.error) for o in outcomes] == [(200, True, None)] * 2

    records = proxy.records(2)
    events = [*records, *(gateway_event(request_id) for request_id in calls)]
    checks = st.match(outcomes, events)
    assert [c.passed for c in checks] == [True, True], [c.detail for c in checks]
    assert [r["request"]["route"] for r in records] == ["aoaifn", "aoaifn"]
    assert [c.record and c.record["usage"]["source"] for c in checks] == ["provider", "provider"]
