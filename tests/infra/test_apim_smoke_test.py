"""scripts/smoke_test.py offline: settings, retries, the key fetch, SDK calls, hub reading, the join.

The openai SDK runs for real against an in-memory transport (so the URLs and headers it sends are the
ones a consumer's SDK sends); Azure SDK clients are autospec'd from the real classes.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import httpx
import httpx2
import pytest
from azure.core.credentials import AccessToken
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient
from azure.eventhub.exceptions import AuthenticationError
from azure.identity import AzureCliCredential
from scripts import smoke_test as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

ENV = {
    "APIM_GATEWAY_URL": "https://apim-x.azure-api.net",
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_RESOURCE_GROUP": "rg-dev",
    "APIM_NAME": "apim-x",
    "APIM_SUBSCRIPTION_NAME": "first-consumer",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "evhns-x.servicebus.windows.net",
    "EVENTHUB_NAME": "usage",
    "AZURE_OPENAI_DEPLOYMENT": "chat",
    "LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID": "11111111-2222-3333-4444-555555555555",
}
SETTINGS = st.Settings.from_env(ENV)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------- settings


def test_azd_env_values_are_parsed_with_shell_quoting() -> None:
    text = 'A="x"\nB="with space"\n# comment\n\nC=plain\nD=""\nE="a=b"\n'
    assert st.parse_dotenv(text) == {"A": "x", "B": "with space", "C": "plain", "D": "", "E": "a=b"}


def test_azd_env_is_read_with_get_values() -> None:
    run = create_autospec(subprocess.run)
    run.return_value = subprocess.CompletedProcess(
        ["azd"], 0, stdout='APIM_NAME="apim-x"\n', stderr=""
    )
    assert st.read_azd_env(run) == {"APIM_NAME": "apim-x"}
    assert run.call_args.args[0] == ["azd", "env", "get-values"]
    run.return_value = subprocess.CompletedProcess(["azd"], 1, stdout="", stderr="no env")
    assert st.read_azd_env(run) == {}
    run.side_effect = FileNotFoundError("azd")
    assert st.read_azd_env(run) == {}


def test_missing_and_empty_settings_are_named() -> None:
    env = {**ENV, "APIM_NAME": "", "EVENTHUB_NAME": ""}
    del env["APIM_GATEWAY_URL"]
    with pytest.raises(st.SmokeTestError) as info:
        st.Settings.from_env(env)
    assert "APIM_GATEWAY_URL, APIM_NAME, EVENTHUB_NAME" in str(info.value)


def test_defaults_for_consumer_group_and_api_version() -> None:
    assert SETTINGS.consumer_group == "$Default"
    assert SETTINGS.api_version == "2025-04-01-preview"
    custom = st.Settings.from_env(
        {**ENV, "SMOKE_CONSUMER_GROUP": "smoke", "SMOKE_API_VERSION": "2025-04-01-preview"}
    )
    assert (custom.consumer_group, custom.api_version) == ("smoke", "2025-04-01-preview")


# ---------------------------------------------------------------- retries


def status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://example.invalid")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


def test_401_and_403_are_retried_with_backoff_until_success() -> None:
    clock = FakeClock()
    results: list[Any] = [status_error(403), status_error(401), "ok"]

    def attempt() -> str:
        value = results.pop(0)
        if isinstance(value, Exception):
            raise value
        return str(value)

    assert st.retry(attempt, what="t", clock=clock, sleep=clock.sleep, log=lambda _: None) == "ok"
    assert clock.sleeps == [5.0, 10.0]


def test_retries_stop_after_the_ten_minute_window() -> None:
    clock = FakeClock()

    def attempt() -> str:
        raise status_error(403)

    with pytest.raises(httpx.HTTPStatusError):
        st.retry(attempt, what="t", clock=clock, sleep=clock.sleep, log=lambda _: None)
    assert sum(clock.sleeps) <= st.RETRY_WINDOW_SECONDS
    assert max(clock.sleeps) == 60.0


def test_other_errors_are_not_retried() -> None:
    clock = FakeClock()
    calls = []

    def attempt() -> str:
        calls.append(1)
        raise status_error(404)

    with pytest.raises(httpx.HTTPStatusError):
        st.retry(attempt, what="t", clock=clock, sleep=clock.sleep, log=lambda _: None)
    assert calls == [1]
    assert clock.sleeps == []


def test_event_hubs_authentication_errors_are_retryable() -> None:
    assert st.is_retryable(AuthenticationError("amqp:unauthorized-access"))
    assert not st.is_retryable(ValueError("bad input"))


# ---------------------------------------------------------------- subscription key


def test_the_subscription_key_comes_from_list_secrets_with_an_entra_token() -> None:
    http = create_autospec(httpx.Client, instance=True)
    url = st.subscription_key_url(SETTINGS)
    http.post.return_value = httpx.Response(
        200, json={"primaryKey": "pk", "secondaryKey": "sk"}, request=httpx.Request("POST", url)
    )
    credential = create_autospec(AzureCliCredential, instance=True)
    credential.get_token.return_value = AccessToken("arm-token", 0)

    assert st.fetch_subscription_key(http, credential, SETTINGS) == "pk"
    credential.get_token.assert_called_once_with("https://management.azure.com/.default")
    assert http.post.call_args.args[0] == (
        "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001"
        "/resourceGroups/rg-dev/providers/Microsoft.ApiManagement/service/apim-x"
        "/subscriptions/first-consumer/listSecrets?api-version=2024-05-01"
    )
    assert http.post.call_args.kwargs["headers"] == {"Authorization": "Bearer arm-token"}


# ---------------------------------------------------------------- calls through the gateway


def completion_json() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "pong"},
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }


def sse_body() -> bytes:
    # Azure's first event: no choices, empty id/model, prompt_filter_results.
    events = [
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": [],
        },
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "po"}, "finish_reason": None}
            ],
        },
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "ng"}, "finish_reason": "stop"}],
        },
        # Asynchronous content filtering: an annotation-only event after finish_reason, with a
        # choice that has no delta (content-filter-streaming).
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": None,
                    "content_filter_offsets": {
                        "check_offset": 0,
                        "start_offset": 0,
                        "end_offset": 4,
                    },
                    "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                }
            ],
        },
    ]
    return (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )


class Gateway:
    """An in-memory APIM gateway: records requests, answers 403 first if asked (role propagation)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[httpx2.Request] = []
        self.fail_first = fail_first

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.fail_first:
            self.fail_first -= 1
            return httpx2.Response(403, json={"statusCode": 403, "message": "not yet"})
        record_id = f"rec-{len(self.requests)}"
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream", "x-usage-record-id": record_id},
                content=sse_body(),
            )
        return httpx2.Response(
            200, headers={"x-usage-record-id": record_id}, json=completion_json()
        )


def test_consumers_sdks_reach_the_gateway_with_the_key_in_api_key() -> None:
    gateway = Gateway()
    clients = st.make_clients(
        SETTINGS, "sub-key", http_client=httpx2.Client(transport=httpx2.MockTransport(gateway))
    )
    outcomes = st.run_calls(clients, "chat")

    assert [(o.name, o.status, o.content_ok, o.error) for o in outcomes] == [
        ("azure non-streamed", 200, True, None),
        ("azure streamed", 200, True, None),
        ("v1 non-streamed", 200, True, None),
        ("azure 2024-10-21 streamed", 200, True, None),
        ("aoaifn non-streamed", 200, True, None),
        ("aoaifn streamed", 200, True, None),
    ]
    assert [o.usage_record_id for o in outcomes] == [f"rec-{n}" for n in range(1, 7)]
    paths = [(r.url.path, r.url.params.get("api-version")) for r in gateway.requests]
    assert paths == [
        ("/openai/deployments/chat/chat/completions", "2025-04-01-preview"),
        ("/openai/deployments/chat/chat/completions", "2025-04-01-preview"),
        ("/openai/v1/chat/completions", None),
        ("/openai/deployments/chat/chat/completions", "2024-10-21"),
        # The origin's contract: no deployment, no api-version (the Function's settings give them).
        ("/openai/aoaifn", None),
        ("/openai/aoaifn", None),
    ]
    ga_body = json.loads(gateway.requests[3].content)
    assert ga_body["stream"] is True
    assert (
        "stream_options" not in ga_body
    )  # the record's tokens must come from the proxy's injection
    assert all(r.headers["api-key"] == "sub-key" for r in gateway.requests)
    assert json.loads(gateway.requests[2].content)["model"] == "chat"


def test_a_call_refused_while_roles_propagate_is_retried() -> None:
    gateway = Gateway(fail_first=2)
    clock = FakeClock()
    clients = st.make_clients(
        SETTINGS, "k", http_client=httpx2.Client(transport=httpx2.MockTransport(gateway))
    )
    outcomes = st.run_calls(clients[:1], "chat", clock=clock, sleep=clock.sleep, log=lambda _: None)
    assert outcomes[0].status == 200
    assert clock.sleeps == [5.0, 10.0]


def test_a_call_that_keeps_failing_is_reported_not_raised() -> None:
    def not_found(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, json={"error": {"code": "DeploymentNotFound", "message": "no"}})

    clients = st.make_clients(
        SETTINGS, "k", http_client=httpx2.Client(transport=httpx2.MockTransport(not_found))
    )
    (outcome,) = st.run_calls(clients[:1], "chat")
    assert outcome.status == 404
    assert outcome.error is not None
    assert outcome.error.startswith("NotFoundError")


# ---------------------------------------------------------------- reading the hub


def consumer_mock() -> Any:
    return create_autospec(EventHubConsumerClient, instance=True)


def test_positions_are_the_last_sequence_numbers_and_the_client_is_closed() -> None:
    consumer = consumer_mock()
    consumer.get_partition_ids.return_value = ["0", "1"]
    consumer.get_partition_properties.side_effect = [
        {"is_empty": False, "last_enqueued_sequence_number": 41},
        {"is_empty": True, "last_enqueued_sequence_number": -1},
    ]
    assert asyncio.run(st.snapshot_positions(consumer)) == {"0": 41, "1": -1}
    consumer.close.assert_awaited_once()


def test_events_are_read_after_the_positions_until_everything_is_found() -> None:
    consumer = consumer_mock()
    wanted = {"type": "usage", "record_id": "r1"}

    async def receive_batch(on_event_batch: Any, **kwargs: Any) -> None:
        # ints: the SDK reads a str as an offset, an int as a sequence number (what was noted).
        assert kwargs["starting_position"] == {"0": 41, "1": -1}
        assert all(type(p) is int for p in kwargs["starting_position"].values())
        assert kwargs["starting_position_inclusive"] is False
        await on_event_batch(
            None, [EventData("not json"), EventData(json.dumps({"type": "other"}))]
        )
        await on_event_batch(None, [EventData(json.dumps(wanted))])
        await asyncio.Event().wait()  # a real receiver runs until closed

    consumer.receive_batch.side_effect = receive_batch
    done = lambda events: wanted in events  # noqa: E731
    events = asyncio.run(st.collect_events(consumer, {"0": 41, "1": -1}, done, wait_seconds=5))
    assert events == [{"type": "other"}, wanted]
    consumer.close.assert_awaited_once()


def test_reading_gives_up_after_the_wait_and_still_closes() -> None:
    consumer = consumer_mock()

    async def receive_batch(on_event_batch: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    consumer.receive_batch.side_effect = receive_batch
    assert (
        asyncio.run(st.collect_events(consumer, {"0": 1}, lambda _: False, wait_seconds=0.05)) == []
    )
    consumer.close.assert_awaited_once()


def test_a_receiver_error_is_raised() -> None:
    consumer = consumer_mock()
    consumer.receive_batch.side_effect = AuthenticationError("unauthorized")
    with pytest.raises(AuthenticationError):
        asyncio.run(st.collect_events(consumer, {"0": 1}, lambda _: False, wait_seconds=5))


# ---------------------------------------------------------------- the join


def usage(
    record_id: str, request_id: str, subscription: str = "first-consumer", source: str = "injected"
) -> dict[str, Any]:
    counted = source != "none"
    return {
        "type": "usage",
        "record_id": record_id,
        "caller": {"request_id": request_id, "subscription_id": subscription},
        "usage": {
            "source": source,
            "source_reason": None if counted else "api_version_not_in_injection_allow_list",
            "total_tokens": 46 if counted else None,
        },
    }


def gateway_event(request_id: str, subscription: str = "first-consumer") -> dict[str, Any]:
    return {
        "type": "gateway",
        "request_id": request_id,
        "subscription_id": subscription,
        "status": 200,
    }


def outcome(name: str, record_id: str | None) -> st.CallOutcome:
    return st.CallOutcome(name, 200, record_id, content_ok=True)


def test_each_call_joins_its_usage_record_to_the_gateway_event() -> None:
    outcomes = [outcome("a", "r1"), outcome("b", "r2")]
    events = [
        usage("r1", "REQ-1"),
        gateway_event("req-1"),  # APIM's Guid text may differ in case
        usage("r2", "req-2"),
        gateway_event("req-2"),
        usage("other", "req-3"),
    ]
    checks = st.match(outcomes, events)
    assert [c.passed for c in checks] == [True, True]
    assert st.passed(outcomes, checks)
    assert st.all_found(outcomes)(events)


@pytest.mark.parametrize(
    ("events", "detail"),
    [
        ([], "usage record r1 not found"),
        ([usage("r1", "")], "no caller.request_id"),
        ([usage("r1", "q1")], "gateway event for request q1 not found"),
        ([usage("r1", "q1"), gateway_event("q1", "someone-else")], "subscription ids differ"),
        ([usage("r1", "q1", source="none"), gateway_event("q1")], "no exact token counts"),
    ],
)
def test_a_missing_or_mismatched_piece_fails_with_a_reason(
    events: list[dict[str, Any]], detail: str
) -> None:
    outcomes = [outcome("a", "r1")]
    (check,) = st.match(outcomes, events)
    assert not check.passed
    assert detail in check.detail
    assert not st.passed(outcomes, [check])


def test_the_ga_stream_must_be_metered_by_injection() -> None:
    ga = outcome(st.GA_STREAM, "r1")
    (injected,) = st.match([ga], [usage("r1", "q1"), gateway_event("q1")])
    assert injected.passed
    (provider,) = st.match([ga], [usage("r1", "q1", source="provider"), gateway_event("q1")])
    assert not provider.passed
    assert "expected injected" in provider.detail
    (none,) = st.match([ga], [usage("r1", "q1", source="none"), gateway_event("q1")])
    assert not none.passed
    # Other calls accept either exact source.
    (other,) = st.match(
        [outcome("a", "r1")], [usage("r1", "q1", "first-consumer", "provider"), gateway_event("q1")]
    )
    assert other.passed


def test_a_failed_call_fails_without_looking_for_records() -> None:
    failed = st.CallOutcome("a", 403, None, error="PermissionDeniedError: no")
    (check,) = st.match([failed], [usage("r1", "q1")])
    assert check.detail == "PermissionDeniedError: no"
    assert st.all_found([failed])([])  # nothing to wait for


def test_the_table_shows_one_row_per_call_with_pass_or_fail() -> None:
    outcomes = [
        outcome("azure streamed", "r1"),
        st.CallOutcome("v1 non-streamed", 404, None, error="NotFoundError"),
    ]
    checks = st.match(outcomes, [usage("r1", "q1"), gateway_event("q1")])
    lines = st.render_table(outcomes, checks).splitlines()
    assert lines[0].split()[:2] == ["call", "http"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert "azure streamed" in lines[2]
    assert lines[2].count("PASS") == 4
    assert " 46 " in lines[2]
    assert "v1 non-streamed" in lines[3]
    assert "FAIL" in lines[3]


def test_main_without_settings_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(st, "read_azd_env", lambda: {})
    for name in st.REQUIRED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert st.main([]) == 2
    assert "missing setting(s)" in capsys.readouterr().err


# ---------------------------------------------------------------- the real record and event formats

ROOT = Path(__file__).resolve().parents[2]


def documented_usage_records() -> list[dict[str, Any]]:
    """The example records of docs/usage-record.md (generated from real calls, schema-checked)."""
    text = (ROOT / "docs" / "usage-record.md").read_text(encoding="utf-8")
    records = []
    for block in re.findall(r"```json\n(.*?)\n```", text, re.DOTALL):
        value = json.loads(block)
        if isinstance(value, dict) and value.get("type") == "usage":
            records.append(value)
    return records


def gateway_event_as_the_fragment_writes_it(
    request_id: str, subscription_id: str
) -> dict[str, Any]:
    """A gateway event keyed by the JProperty names of the policy fragment itself."""
    fragment = (ROOT / "infra" / "modules" / "apim-gateway-event-fragment.xml").read_text(
        encoding="utf-8"
    )
    names = re.findall(r'new JProperty\("(\w+)"', fragment)
    values = {"request_id": request_id, "subscription_id": subscription_id, "status": 200}
    event: dict[str, Any] = {name: values.get(name, "") for name in names}
    event["type"] = re.search(r'new JProperty\("type", "(\w+)"\)', fragment).group(1)
    return event


def test_a_documented_usage_record_joins_a_gateway_event_from_the_policy() -> None:
    counted = [r for r in documented_usage_records() if r["usage"]["source"] != "none"]
    assert counted, "docs/usage-record.md has no example with exact token counts"
    record = counted[0]
    caller = record["caller"]
    # APIM prints the request id as a GUID; compare as the smoke test does, ignoring case.
    event = gateway_event_as_the_fragment_writes_it(
        caller["request_id"].upper(), caller["subscription_id"]
    )
    call = outcome("azure streamed", record["record_id"])
    (check,) = st.match([call], [event, record])
    assert check.passed, check.detail
    assert check.tokens == record["usage"]["total_tokens"]


# ---------------------------------------------------------------- hostile path probes


def test_hostile_paths_go_out_byte_for_byte_and_any_2xx_fails(recording_upstream: Any) -> None:
    """The recording upstream answers 200 to everything: a gateway that served these paths."""
    settings = st.Settings.from_env({**ENV, "APIM_GATEWAY_URL": recording_upstream.base_url})

    probes = st.probe_paths(settings, "the-key")

    sent = [
        (m.encode(), t.replace("{v}", settings.api_version).encode()) for m, t in st.PATH_PROBES
    ]
    received = [(r.method, r.target) for r in recording_upstream.requests]
    assert received == sent
    assert b"/openai/%2e%2e/healthz" in [target for _, target in received]
    assert all(r.header(b"api-key") == b"the-key" for r in recording_upstream.requests)
    assert [p.status for p in probes] == [200] * len(st.PATH_PROBES)
    assert not any(p.passed for p in probes)
    assert st.render_probes(probes).count("FAIL") == len(st.PATH_PROBES)


def test_hostile_paths_refused_in_any_way_pass() -> None:
    answers = iter([400, 404, None, 502, 401, 400, 400, 400, 400, 400])

    def refusing(base_url: str, method: str, target: str, headers: dict[str, str]) -> int | None:
        return next(answers)

    probes = st.probe_paths(SETTINGS, "k", exchange=refusing)
    assert len(probes) == len(st.PATH_PROBES)
    assert all(p.passed for p in probes)
    assert "FAIL" not in st.render_probes(probes)


def test_an_unreachable_gateway_is_reported_per_probe_not_raised(free_port: int) -> None:
    settings = st.Settings.from_env({**ENV, "APIM_GATEWAY_URL": f"http://127.0.0.1:{free_port}"})
    probes = st.probe_paths(settings, "k")
    assert all(p.status is None and p.error for p in probes)


# ---------------------------------------------------------------- time to first byte


def test_the_function_key_is_the_default_host_key_from_listkeys() -> None:
    settings = st.Settings.from_env(
        {
            **ENV,
            "AZURE_FUNCTION_NAME": "func-x",
            "SERVICE_API_URI": "https://func-x.azurewebsites.net",
        }
    )
    http = create_autospec(httpx.Client, instance=True)
    url = st.function_key_url(settings)
    http.post.return_value = httpx.Response(
        200,
        json={"masterKey": "mk", "functionKeys": {"default": "fk"}, "systemKeys": {}},
        request=httpx.Request("POST", url),
    )
    credential = create_autospec(AzureCliCredential, instance=True)
    credential.get_token.return_value = AccessToken("arm-token", 0)

    assert st.fetch_function_key(http, credential, settings) == "fk"
    assert http.post.call_args.args[0] == (
        "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001"
        "/resourceGroups/rg-dev/providers/Microsoft.Web/sites/func-x/host/default/listkeys"
        "?api-version=2024-11-01"
    )


def _slow_first_byte_app(seen: list[dict[str, str]], delay_s: float) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        seen.append({"path": request.url.path, **request.headers})
        await request.body()

        async def events() -> AsyncIterator[bytes]:
            await asyncio.sleep(delay_s)
            yield b'data: {"choices":[]}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/{path:path}", chat, methods=["POST"])])


def test_ttfb_is_measured_through_apim_and_straight_to_the_function(
    serve_asgi: Callable[..., str],
) -> None:
    seen: list[dict[str, str]] = []
    gateway = serve_asgi(_slow_first_byte_app(seen, 0.15))
    function = serve_asgi(_slow_first_byte_app(seen, 0.05))
    settings = st.Settings.from_env(
        {
            **ENV,
            "APIM_GATEWAY_URL": gateway,
            "AZURE_FUNCTION_NAME": "f",
            "SERVICE_API_URI": function,
        }
    )

    def management(request: httpx.Request) -> httpx.Response:  # Azure's side: not runnable here
        return httpx.Response(200, json={"functionKeys": {"default": "function-key"}})

    credential = create_autospec(AzureCliCredential, instance=True)
    credential.get_token.return_value = AccessToken("arm-token", 0)
    mounts = {"https://management.azure.com": httpx.MockTransport(management)}
    with httpx.Client(timeout=10, mounts=mounts) as http:
        report = st.ttfb_report(http, credential, settings, "apim-key", samples=3)

    apim_ms = float(re.search(r"through APIM: +([\d.]+) ms", report).group(1))  # type: ignore[union-attr]
    direct_ms = float(re.search(r"to the Function: +([\d.]+) ms", report).group(1))  # type: ignore[union-attr]
    assert 150 <= apim_ms < 1500
    assert 50 <= direct_ms < apim_ms
    assert "APIM adds" in report
    assert [s["api-key"] for s in seen[:3]] == ["apim-key"] * 3
    assert [s["x-functions-key"] for s in seen[3:]] == ["function-key"] * 3
    assert {s["path"] for s in seen} == {"/openai/deployments/chat/chat/completions"}
    assert "function-key" not in report
    assert "apim-key" not in report


def test_ttfb_without_the_function_settings_is_reported_not_measured(
    serve_asgi: Callable[..., str],
) -> None:
    gateway = serve_asgi(_slow_first_byte_app([], 0.0))
    settings = st.Settings.from_env({**ENV, "APIM_GATEWAY_URL": gateway})
    credential = create_autospec(AzureCliCredential, instance=True)
    with httpx.Client(timeout=10) as http:
        report = st.ttfb_report(http, credential, settings, "apim-key", samples=1)
    assert "through APIM:" in report
    assert "straight to the Function: not measured" in report
    credential.get_token.assert_not_called()


def test_in_entra_mode_the_function_is_not_called_directly(serve_asgi: Callable[..., str]) -> None:
    seen: list[dict[str, str]] = []
    gateway = serve_asgi(_slow_first_byte_app(seen, 0.0))
    env = {
        **ENV,
        "APIM_GATEWAY_URL": gateway,
        "APIM_FUNCTION_AUTH": "entra",
        "APIM_IDENTITY_CLIENT_ID": "c",
    }
    settings = st.Settings.from_env({**env, "AZURE_FUNCTION_NAME": "f", "SERVICE_API_URI": gateway})
    credential = create_autospec(AzureCliCredential, instance=True)
    with httpx.Client(timeout=10) as http:
        report = st.ttfb_report(http, credential, settings, "apim-key", samples=1)
    assert "APIM_FUNCTION_AUTH=entra" in report
    assert len(seen) == 1  # the APIM measurement only
    credential.get_token.assert_not_called()


# ---------------------------------------------------------------- landing in Log Analytics

RECORD_A = "0b6f6f0e-4c1b-4b8e-9c1a-1f3e5d2f8002"
RECORD_B = "6f1c2a9e-0d4b-4c8e-9b1a-7c3e5d2f8001"


def logs_result(*rows: tuple[str, int | None]) -> Any:
    from azure.monitor.query import LogsQueryResult, LogsTable

    table = LogsTable(
        name="PrimaryResult",
        columns=["RecordId", "TotalTokens"],
        columns_types=["string", "long"],
        rows=[list(row) for row in rows],
    )
    return LogsQueryResult(tables=[table])


def logs_client(*answers: Any) -> Any:
    from azure.monitor.query.aio import LogsQueryClient

    client = create_autospec(LogsQueryClient, instance=True)
    client.query_workspace.side_effect = list(answers)
    return client


class FakeAsyncClock(FakeClock):
    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def test_the_landing_query_reads_the_usage_table_of_tables_json_once_per_record() -> None:
    tables = json.loads((ROOT / "infra" / "analytics" / "tables.json").read_text())
    assert st.usage_table() == tables["usage"]["table"]
    query = st.landing_query("AoaiUsage_CL", [RECORD_A, RECORD_B])
    assert query.startswith("AoaiUsage_CL\n")
    assert f'RecordId in ("{RECORD_A}", "{RECORD_B}")' in query
    assert "by RecordId" in query  # one row per record, however often it landed
    columns = {column["name"] for column in tables["usage"]["columns"]}
    assert {"RecordId", "TotalTokens"} <= columns
    with pytest.raises(ValueError, match="UUID"):  # nothing but a record id reaches the KQL
        st.landing_query("AoaiUsage_CL", ['x") | union Secrets | where ("1" == "1'])


def test_landing_is_polled_through_errors_until_every_record_is_there() -> None:
    from azure.core.exceptions import HttpResponseError

    clock = FakeAsyncClock()
    client = logs_client(
        HttpResponseError("Forbidden: the Reader role is not applied yet"),
        logs_result(),
        logs_result((RECORD_A, 46)),
        logs_result((RECORD_A, 46), (RECORD_B, 31)),
    )
    landed = asyncio.run(
        st.await_landing(
            client,
            SETTINGS.workspace_id,
            {RECORD_A: 46, RECORD_B: 31},
            table="AoaiUsage_CL",
            clock=clock,
            sleep=clock.asleep,
        )
    )
    assert landed.missing == []
    assert landed.mismatched == []
    assert landed.last_error is None
    assert clock.sleeps == [st.LANDING_POLL_SECONDS] * 3
    workspace, query = client.query_workspace.call_args.args
    assert workspace == ENV["LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID"]
    assert query == landed.query
    assert client.query_workspace.call_args.kwargs["timespan"] == st.LANDING_TIMESPAN
    assert st.report_landing(landed) == 0


def test_landing_gives_up_after_twenty_minutes_prints_the_kql_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    clock = FakeAsyncClock()
    client = logs_client(*[ClientAuthenticationError("no token yet")] * 100)
    landed = asyncio.run(
        st.await_landing(
            client,
            SETTINGS.workspace_id,
            {RECORD_A: 46},
            table="AoaiUsage_CL",
            clock=clock,
            sleep=clock.asleep,
        )
    )
    assert clock.now == st.LANDING_WAIT_SECONDS == 20 * 60
    assert landed.missing == [RECORD_A]
    assert st.report_landing(landed) == st.EXIT_NOT_LANDED == 2
    out = capsys.readouterr().out
    assert landed.query in out
    assert "no token yet" in out
    assert "first deployment" in out


def test_landed_token_counts_that_differ_from_the_record_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeAsyncClock()
    client = logs_client(logs_result((RECORD_A, 45)))
    landed = asyncio.run(
        st.await_landing(
            client, "ws", {RECORD_A: 46}, table="AoaiUsage_CL", clock=clock, sleep=clock.asleep
        )
    )
    assert landed.mismatched == [RECORD_A]
    assert st.report_landing(landed) == 1
    assert "TotalTokens 45" in capsys.readouterr().out


def test_the_records_read_from_the_hub_are_the_ones_looked_for_in_the_workspace() -> None:
    record = documented_usage_records()[0]
    request_id = record["caller"]["request_id"]
    event = gateway_event_as_the_fragment_writes_it(request_id, record["caller"]["subscription_id"])
    outcome = st.CallOutcome("azure non-streamed", 200, record["record_id"], content_ok=True)
    checks = st.match([outcome], [record, event])
    assert st.expected_landing(checks) == {record["record_id"]: st.counted_tokens(record)}
