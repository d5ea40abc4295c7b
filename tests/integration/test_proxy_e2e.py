"""The proxy under a real uvicorn server on 127.0.0.1, driven by the openai SDK and httpx,
against the local Azure OpenAI simulator (tools/aoai_simulator)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from aoai_proxy.config import InjectionPolicy
from aoai_proxy.sse import SSEFramer, parse_event

API_VERSION = "2025-04-01-preview"
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
MESSAGES = [{"role": "user", "content": "What is 4200 + 42?"}]


def sdk(proxy: Any, **kw: Any) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=proxy.base_url,
        api_key="caller-key-never-forwarded",
        api_version=API_VERSION,
        max_retries=0,
        timeout=10,
        **kw,
    )


def sse_data(stream: bytes) -> list[str]:
    framer = SSEFramer()
    return [e.data for raw in framer.feed(stream) if (e := parse_event(raw)) is not None]


def post_stream(
    proxy: Any, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(CHAT, json=body, headers=headers or {})
        response.read()
        return response


# -- non-streamed ------------------------------------------------------------------------------


def test_non_streamed_chat_through_the_sdk_records_exact_usage(proxy: Any, upstream: Any) -> None:
    completion = sdk(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content
    record = proxy.records(1)[0]
    assert record["usage"]["prompt_tokens"] == completion.usage.prompt_tokens
    assert record["usage"]["completion_tokens"] == completion.usage.completion_tokens
    assert record["usage"]["source"] == "provider"
    assert record["request"]["operation"] == "chat"
    assert record["request"]["deployment"] == "gpt-4o-mini"
    assert record["response"]["status"] == 200
    assert record["response"]["id"] == completion.id


def test_non_streamed_body_and_headers_are_relayed_byte_for_byte(proxy: Any, upstream: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES})
    sent = upstream.tap.last()
    assert response.content == sent.body
    for name in ("apim-request-id", "x-request-id", "x-ms-region", "x-ratelimit-remaining-tokens"):
        assert response.headers[name] == sent.headers[name]
    assert response.headers["x-usage-record-id"] == proxy.records(1)[0]["record_id"]


# -- streamed ----------------------------------------------------------------------------------


def test_stream_with_client_usage_is_byte_identical_and_provider_sourced(
    proxy: Any, upstream: Any
) -> None:
    response = post_stream(
        proxy, {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    )
    received = upstream.recorder.last()
    assert response.content == b"".join(received.events)
    assert "content-length" not in response.headers
    record = proxy.records(1)[0]
    assert record["usage"]["source"] == "provider"
    assert record["usage"]["completion_tokens"] == 20


def test_stream_without_include_usage_still_records_tokens(proxy: Any, upstream: Any) -> None:
    response = post_stream(proxy, {"messages": MESSAGES, "stream": True}, {"x-sim-tokens": "7"})
    received = upstream.recorder.last()
    assert received.json()["stream_options"] == {"include_usage": True}
    # The client gets what Azure sends without include_usage: no usage member, no usage event.
    assert b'"usage"' not in response.content
    sent = [d for d in sse_data(b"".join(received.events))]
    received = sse_data(response.content)
    assert len(received) == len(sent) - 1
    for got, original in zip(received, sent[:-2], strict=False):
        expected = json.loads(original)
        expected.pop("usage", None)
        assert json.loads(got) == expected
    assert received[-1] == "[DONE]"
    record = proxy.records(1)[0]
    assert record["usage"]["source"] == "injected"
    assert record["usage"]["completion_tokens"] == 7
    assert record["usage"]["total_tokens"] == record["usage"]["prompt_tokens"] + 7


def test_sdk_streaming_chat_and_tool_calls(proxy: Any, upstream: Any) -> None:
    client = sdk(proxy)
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        if chunk.choices
    )
    assert text
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    calls: dict[int, str] = {}
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=tools,
        stream=True,
        extra_headers={"x-sim-tool-calls": "2"},
    ):
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                calls[delta.index] = calls.get(delta.index, "") + (delta.function.arguments or "")
    assert len(calls) == 2
    assert all(json.loads(arguments) is not None for arguments in calls.values())
    text_record, tool_record = proxy.records(2)
    assert text_record["usage"]["source"] == "injected"
    assert tool_record["response"]["tool_calls"] == 2
    assert tool_record["response"]["finish_reasons"] == ["tool_calls"]
    assert tool_record["usage"]["completion_tokens"] is not None


def test_first_event_reaches_the_client_while_upstream_still_holds_the_second(
    proxy: Any, upstream: Any
) -> None:
    with (
        httpx.Client(base_url=proxy.base_url, timeout=10) as client,
        client.stream(
            "POST",
            CHAT,
            json={"messages": MESSAGES, "stream": True},
            headers={"x-sim-ttft-ms": "0", "x-sim-token-ms": "400", "x-sim-tokens": "3"},
        ) as response,
    ):
        chunks = response.iter_raw()
        first = next(chunks)
        got_first = time.monotonic()
        assert first.startswith(b"data: ")
        rest = b"".join(chunks)
    received = upstream.recorder.last()
    assert got_first < received.event_times[1]
    assert first + rest == uninject_view(received.events)


def uninject_view(events: list[bytes]) -> bytes:
    from aoai_proxy.inject import uninject

    return uninject(events)


def test_replayed_azure_recordings_pass_byte_for_byte(proxy: Any, recorded: Path) -> None:
    for name, body in (
        ("chat_stream_usage", {"stream": True, "stream_options": {"include_usage": True}}),
        ("tools_stream", {"stream": True, "tools": []}),
        ("long_stream", {"stream": True, "max_tokens": 50}),
        ("chat_completion", {}),
    ):
        response = post_stream(proxy, {"messages": MESSAGES, **body}, {"x-sim-replay": name})
        suffix = "json" if name == "chat_completion" else "sse"
        assert response.content == (recorded / f"{name}.{suffix}").read_bytes(), name
    records = proxy.records(4)
    assert records[0]["usage"]["total_tokens"] == 27
    assert records[1]["response"]["tool_calls"] == 2
    assert records[2]["response"]["finish_reasons"] == ["length"]


# -- other routes --------------------------------------------------------------------------------


def test_embeddings_v1_and_responses_routes_through_the_sdk(proxy: Any, upstream: Any) -> None:
    embedding = sdk(proxy).embeddings.create(model="text-embedding-3-small", input="hello")
    assert embedding.data[0].embedding
    v1 = openai.OpenAI(
        base_url=f"{proxy.base_url}/openai/v1/", api_key="k", max_retries=0, timeout=10
    )
    chat = v1.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert chat.choices[0].message.content
    stream = v1.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    kinds = [event.type for event in stream]
    assert kinds[-1] == "response.completed"
    models = v1.models.list()
    assert models.data
    embedding_record, chat_record, responses_record, models_record = proxy.records(4)
    assert embedding_record["request"]["operation"] == "embeddings"
    assert embedding_record["usage"]["prompt_tokens"] > 0
    assert chat_record["request"]["deployment"] == "gpt-4o-mini"
    assert chat_record["request"]["path"] == "/openai/v1/chat/completions"
    assert responses_record["request"]["operation"] == "responses"
    assert responses_record["usage"]["completion_tokens"] > 0
    assert responses_record["usage"]["source"] == "provider"
    assert responses_record["timings"]["first_token_ms"] is not None
    assert models_record["request"]["operation"] == "other"
    assert models_record["request"]["method"] == "GET"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 400, 401])
def test_upstream_errors_pass_through_with_headers(proxy: Any, upstream: Any, status: int) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(
            CHAT, json={"messages": MESSAGES, "stream": True}, headers={"x-sim-status": str(status)}
        )
    sent = upstream.tap.last()
    assert response.status_code == status
    assert response.content == sent.body
    if status == 429:
        assert response.headers["retry-after"] == sent.headers["retry-after"]
        assert response.headers["retry-after-ms"] == sent.headers["retry-after-ms"]
    record = proxy.records(1)[0]
    assert record["response"]["status"] == status
    assert record["response"]["outcome"] == "upstream_error"
    assert record["response"]["error_code"]
    if status == 400:
        assert record["response"]["prompt_filtered"] is True


def test_sdk_sees_429_as_rate_limit_error_with_retry_after(proxy: Any) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-sim-status": "429"}
        )
    assert caught.value.response.headers["retry-after"]


def test_malformed_json_is_a_400_without_calling_upstream(proxy: Any, upstream: Any) -> None:
    before = len(upstream.recorder)
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        bad = client.post(
            CHAT,
            content=b"{not json",
            headers={"content-type": "application/json", "x-apim-subscription-id": "sub-7"},
        )
        array = client.post(CHAT, json=[1, 2])
    for response in (bad, array):
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"code", "message"}
    assert len(upstream.recorder) == before
    records = proxy.records(2)
    assert all(r["response"]["outcome"] == "proxy_error" for r in records)
    assert records[0]["response"]["status"] == 400
    # What was known before the body was rejected is kept: who called, which route.
    assert records[0]["caller"]["subscription_id"] == "sub-7"
    assert records[0]["request"]["deployment"] == "gpt-4o-mini"
    assert records[0]["usage"]["source_reason"] == "proxy_error"


def test_oversized_body_is_413_and_unknown_route_is_404(proxy: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        big = client.post(CHAT, content=b"x" * (proxy.settings.max_request_bytes + 1))
        unknown = client.get("/not-openai/anything")
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    assert unknown.status_code == 404
    assert "error" in unknown.json()
    too_large, not_found = proxy.records(2)
    assert too_large["response"]["status"] == 413
    assert not_found["response"]["status"] == 404
    assert not_found["request"]["path"] == "/not-openai/anything"


def test_upstream_down_is_502_in_the_azure_error_shape(proxy_factory: Any, free_port: int) -> None:
    proxy = proxy_factory(openai_endpoint=f"http://127.0.0.1:{free_port}")
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert proxy.records(1)[0]["response"]["status"] == 502


def test_upstream_slower_than_the_deadline_is_504(proxy_factory: Any, upstream: Any) -> None:
    proxy = proxy_factory(response_timeout=0.3)
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        response = client.post(CHAT, json={"messages": MESSAGES}, headers={"x-sim-ttft-ms": "2000"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_mid_stream_failure_ends_with_an_in_band_error_and_no_done(
    proxy: Any, upstream: Any
) -> None:
    response = post_stream(proxy, {"messages": MESSAGES, "stream": True}, {"x-sim-fail-after": "3"})
    data = sse_data(response.content)
    assert "[DONE]" not in data
    assert json.loads(data[-1])["error"]["code"] == "upstream_stream_failed"
    with pytest.raises(openai.APIError):
        for _ in sdk(proxy).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-sim-fail-after": "3"},
        ):
            pass
    record = proxy.records(2)[0]
    assert record["response"]["outcome"] == "stream_failed"
    assert record["usage"]["source"] == "none"
    assert record["usage"]["source_reason"] == "stream_failed_before_usage"


def test_client_disconnect_closes_the_upstream_stream_and_is_recorded(
    proxy: Any, upstream: Any
) -> None:
    with (
        httpx.Client(base_url=proxy.base_url, timeout=10) as client,
        client.stream(
            "POST",
            CHAT,
            json={"messages": MESSAGES, "stream": True},
            headers={"x-sim-ttft-ms": "0", "x-sim-token-ms": "200", "x-sim-tokens": "100"},
        ) as response,
    ):
        chunks = response.iter_raw()
        for _ in range(4):  # the filter event, the role delta, then some content
            next(chunks)
    deadline = time.monotonic() + 5
    while not upstream.recorder.last().disconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    received = upstream.recorder.last()
    assert received.disconnected
    assert len(received.events) < 20  # closed long before the 100-token stream would have ended
    record = proxy.records(1)[0]
    assert record["response"]["client_disconnected"] is True
    assert 0 < record["response"]["output_events"] < 20  # the partial count known so far
    assert record["response"]["outcome"] == "client_disconnected"
    assert record["usage"]["source_reason"] == "client_disconnected_before_usage"


# -- headers and identity --------------------------------------------------------------------------


def test_caller_credentials_never_reach_upstream_and_apim_context_is_recorded(
    proxy: Any, upstream: Any
) -> None:
    headers = {
        "api-key": "caller-key",
        "Authorization": "Bearer caller-token",
        "Ocp-Apim-Subscription-Key": "sub-key",
        "x-functions-key": "host-key",
        "x-apim-subscription-id": "sub-42",
        "x-apim-request-id": "apim-req-1",
        "x-apim-product-id": "starter",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        client.post(CHAT, json={"messages": MESSAGES}, headers=headers)
    received = upstream.recorder.last()
    for name in (
        "api-key",
        "authorization",
        "ocp-apim-subscription-key",
        "x-functions-key",
        "x-apim-subscription-id",
    ):
        assert received.header(name) is None, name
    assert received.header("accept-encoding") == "identity"
    assert received.header("traceparent") == headers["traceparent"]
    record = proxy.records(1)[0]
    assert record["caller"]["subscription_id"] == "sub-42"
    assert record["caller"]["request_id"] == "apim-req-1"
    assert record["caller"]["product_id"] == "starter"
    assert record["caller"]["user_id"] is None


def test_old_api_version_that_rejects_stream_options_is_resent_once_then_remembered(
    proxy_factory: Any, upstream: Any
) -> None:
    proxy = proxy_factory(injection=InjectionPolicy(extra=frozenset({"2024-06-01"})))
    path = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-06-01"
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        first = client.post(path, json={"messages": MESSAGES, "stream": True})
        upstream.recorder.clear()
        second = client.post(path, json={"messages": MESSAGES, "stream": True})
    assert first.status_code == second.status_code == 200
    assert len(upstream.recorder) == 1  # remembered: no second injection attempt
    assert "stream_options" not in upstream.recorder.last().json()
    records = proxy.records(2)
    assert [r["usage"]["source_reason"] for r in records] == [
        "api_version_rejected_stream_options"
    ] * 2


def test_concurrent_streams_each_get_their_own_record(proxy: Any, upstream: Any) -> None:
    async def one(client: httpx.AsyncClient, tokens: int) -> str:
        response = await client.post(
            CHAT,
            json={"messages": MESSAGES, "stream": True},
            headers={"x-sim-tokens": str(tokens), "x-sim-token-ms": "5", "x-sim-ttft-ms": "20"},
        )
        assert response.status_code == 200
        return response.headers["x-usage-record-id"]

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=proxy.base_url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client, 1 + n % 40) for n in range(200)))

    ids = asyncio.run(run())
    records = {r["record_id"]: r for r in proxy.records(200)}
    assert set(records) == set(ids)
    for n, record_id in enumerate(ids):
        usage = records[record_id]["usage"]
        assert usage["completion_tokens"] == 1 + n % 40
        assert usage["source"] == "injected"


def test_healthz_answers_without_upstream(proxy_factory: Any, free_port: int) -> None:
    proxy = proxy_factory(openai_endpoint=f"http://127.0.0.1:{free_port}")
    response = httpx.get(f"{proxy.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_local_adapter_answers_unserved_methods_and_paths_in_azure_shape(proxy: Any) -> None:
    with httpx.Client(base_url=proxy.base_url, timeout=10, follow_redirects=False) as client:
        post_health = client.post("/healthz")
        bare = client.get("/openai")
    assert post_health.status_code == 405
    assert post_health.json()["error"]["code"] == "405"
    assert bare.status_code == 404  # no redirect: Azure OpenAI does not redirect either
    assert [r["response"]["status"] for r in proxy.records(2)] == [405, 404]


def test_a_failing_sink_never_fails_a_request(proxy_factory: Any, tmp_path: Path) -> None:
    # The JSONL path is a directory: every write fails, every call must still be answered.
    proxy = proxy_factory(usage_log_path=str(tmp_path))
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        streamed = client.post(CHAT, json={"messages": MESSAGES, "stream": True})
        plain = client.post(CHAT, json={"messages": MESSAGES})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            health = client.get("/healthz").json()["delivery"]
            if health["failed"] >= 2:
                break
            time.sleep(0.02)
    assert streamed.status_code == plain.status_code == 200
    assert streamed.content.endswith(b"data: [DONE]\n\n")
    assert health["failed"] == 2
    assert health["written"] == 0


def test_log_sink_writes_one_line_per_record(
    proxy_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = proxy_factory(sink="log")
    with (
        caplog.at_level("INFO", logger="aoai_proxy.usage"),
        httpx.Client(base_url=proxy.base_url, timeout=10) as client,
    ):
        response = client.post(CHAT, json={"messages": MESSAGES})
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "aoai_proxy.usage"]
    assert len(lines) == 1
    assert (
        json.loads(lines[0].removeprefix("usage "))["record_id"]
        == response.headers["x-usage-record-id"]
    )
