"""End-to-end smoke test of a deployed environment, through API Management (docs/apim.md).

Run after `azd up` (the deploy workflow runs it too): `python scripts/smoke_test.py`.

1. Reads the azd environment (`azd env get-values`; exported variables win).
2. Fetches the first consumer's APIM subscription key at run time with the management API
   (POST .../subscriptions/{sid}/listSecrets); it is never a Bicep output and is never printed.
3. Notes the end of every partition of the usage hub, then calls the APIM gateway with the stock
   `openai` SDK: one non-streamed and one streamed call with `AzureOpenAI`, and one non-streamed call
   with `OpenAI` on the v1 API (it needs `default_headers={"api-key": key}`: APIM does not read a
   bearer token as a subscription key). Then the origin's contract, `POST <gateway>/openai/aoaifn`
   (docs/http-protocol.md), with its README's two request bodies sent byte for byte over plain HTTP as
   its clients send them: non-streamed, and streamed with `include_usage`.
4. Reads the hub from the noted positions until, for each call, it finds the usage record named by the
   response's `x-usage-record-id` and APIM's gateway event with the same request id (APIM sends those
   in batches about 15 s apart), then prints a pass/fail table.
   The streamed calls must arrive as a stream: at least two reads with content, spread over time
   (a gateway or host that buffers the response delivers everything in one go). The aoaifn calls'
   records must name that route (request.route `aoaifn`, operation `chat`).
5. Entra mode (APIM_FUNCTION_AUTH=entra): a call straight to the Function App without a token, and one
   with a forged X-MS-CLIENT-PRINCIPAL naming APIM's identity, must both get 401. Once this whole test
   passes in your subscription, Entra mode can be your default (docs/deploy.md#function-authentication).
6. Sends hostile paths through the gateway with the key (`/openai/%2e%2e/healthz` and friends:
   encoded dot segments, double encoding, CR/LF, empty segments), byte for byte over a raw TLS socket
   (HTTP client libraries normalise such paths), and fails on any 2xx: what APIM, the Azure front end
   and the Functions host do with them cannot be seen offline (docs/http-protocol.md, Limits).
7. Reports the time to first byte of a streamed chat through APIM and straight to the Function (with
   the Function's default host key, read like the APIM key and never printed): what APIM and the
   Functions host add in Azure, which no local benchmark can measure. Informational: it never fails
   the run.
8. Queries the Log Analytics workspace (LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID, keyless, the Log Analytics
   Reader role `azd up` grants you) until the landing function has put those records in the usage
   table, for at most 20 minutes, and checks their token counts there.

Exit status: 0 when all pass; 1 when a call, record, event, refusal or probe fails or a landed
count differs; 2 when a setting is missing, or when the records were not in the workspace after 20
minutes (the KQL is printed to run later) although the roles the landing needs were already 30
minutes old when the wait began; 3 when they were not in the workspace and those roles were younger:
an environment's first deployment, a warning (role assignments can take up to 30 minutes to apply,
and the hub keeps the records until they do; docs/usage-analytics.md). The roles are the Function
identity's (it lands the records) and AZURE_PRINCIPAL_ID's (Log Analytics Reader, to query them);
their age is read from ARM (roleAssignments createdOn) with the same azd token, so a fresh pipeline
runner decides like your laptop. The deploy workflow turns 3 into a `::warning::`.

New role assignments (Event Hubs Data Receiver for you, APIM's and the Function's roles) and the host
key hook can take minutes to apply: 401/403 (and 429/5xx) are retried with backoff for up to 10 minutes.
Credentials: your `azd auth login` (or `az login`); no key is stored anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

RETRY_WINDOW_SECONDS = 600.0
EVENT_WAIT_SECONDS = 180.0
# https://learn.microsoft.com/rest/api/apimanagement/current-ga/subscription/list-secrets
APIM_API_VERSION = "2024-05-01"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
# https://learn.microsoft.com/rest/api/appservice/web-apps/list-host-keys
WEB_API_VERSION = "2024-11-01"
TTFB_SAMPLES = 5
RETRYABLE_STATUS = frozenset({401, 403, 429, 500, 502, 503, 504})
PROMPT = "Reply with the single word: pong"
# Long enough an answer that a real stream spreads its chunks over STREAM_MIN_SPREAD_SECONDS or more.
STREAM_PROMPT = "Count from 1 to 40, one number per line, nothing else."
STREAM_MIN_SPREAD_SECONDS = 0.1
LANDING_WAIT_SECONDS = 20 * 60.0
LANDING_POLL_SECONDS = 30.0
LANDING_TIMESPAN = timedelta(days=1)  # the records were made minutes ago; TimeGenerated is theirs
# The tables' one declaration, shared with the Bicep and the landing function.
TABLES_FILE = Path(__file__).resolve().parents[1] / "infra" / "analytics" / "tables.json"
EXIT_NOT_LANDED = 2
# Not landed while the roles the landing needs were still applying (docs/usage-analytics.md: up to 30
# minutes): an environment's first deployment. .github/workflows/azure-dev.yml makes it a warning.
EXIT_NOT_LANDED_NEW_ROLES = 3
ROLE_PROPAGATION = timedelta(minutes=30)
# https://learn.microsoft.com/rest/api/authorization/role-assignments/list-for-scope
# ($filter=principalId eq: assignments at, above or below the scope; properties.createdOn)
AUTHORIZATION_API_VERSION = "2022-04-01"


class SmokeTestError(Exception):
    """A precondition failed (missing setting, key not retrievable): no table to print."""


# ---------------------------------------------------------------- configuration


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `azd env get-values` output: KEY="value" lines, shell-quoted."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, rest = line.partition("=")
        try:
            parts = shlex.split(rest)
        except ValueError:
            parts = [rest]
        values[key.strip()] = parts[0] if parts else ""
    return values


def read_azd_env(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> dict[str, str]:
    try:
        done = run(
            ["azd", "env", "get-values"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_dotenv(done.stdout) if done.returncode == 0 else {}


# azd outputs (infra/main.bicep) -> Settings field. azd passes "" for unset values: "" counts as unset.
REQUIRED_SETTINGS = {
    "APIM_GATEWAY_URL": "gateway_url",
    "AZURE_SUBSCRIPTION_ID": "azure_subscription_id",
    "AZURE_RESOURCE_GROUP": "resource_group",
    "APIM_NAME": "apim_name",
    "APIM_SUBSCRIPTION_NAME": "apim_subscription_name",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "eventhub_namespace",
    "EVENTHUB_NAME": "eventhub_name",
    "AZURE_OPENAI_DEPLOYMENT": "deployment",
    "LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID": "workspace_id",
}


@dataclass(frozen=True)
class Settings:
    gateway_url: str
    azure_subscription_id: str
    resource_group: str
    apim_name: str
    apim_subscription_name: str
    eventhub_namespace: str
    eventhub_name: str
    consumer_group: str
    deployment: str
    workspace_id: str  # the workspace's customerId, what the query API takes
    api_version: str
    function_auth: str = "key"
    function_url: str = ""
    apim_client_id: str = ""
    function_name: str = ""  # AZURE_FUNCTION_NAME: the host key for the TTFB comparison
    # Whose role assignments tell a first deployment (their age, see newest_landing_role).
    function_principal_id: str = ""  # AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID: lands the records
    deployer_principal_id: str = ""  # AZURE_PRINCIPAL_ID: Log Analytics Reader, queries them

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [name for name in REQUIRED_SETTINGS if not env.get(name)]
        if missing:
            raise SmokeTestError(
                "missing setting(s): "
                + ", ".join(missing)
                + " (run `azd up` first, or export them)"
            )
        values = {attr: env[name] for name, attr in REQUIRED_SETTINGS.items()}
        function_auth = env.get("APIM_FUNCTION_AUTH") or "key"
        if function_auth == "entra":
            absent = [n for n in ("SERVICE_API_URI", "APIM_IDENTITY_CLIENT_ID") if not env.get(n)]
            if absent:
                raise SmokeTestError(
                    "APIM_FUNCTION_AUTH=entra needs " + ", ".join(absent) + " (run `azd up` first)"
                )
        return cls(
            function_auth=function_auth,
            function_url=env.get("SERVICE_API_URI", ""),
            apim_client_id=env.get("APIM_IDENTITY_CLIENT_ID", ""),
            **values,
            # The smoke test reads with explicit positions and never checkpoints, so sharing the
            # default consumer group with others is harmless.
            consumer_group=env.get("SMOKE_CONSUMER_GROUP") or "$Default",
            # On the proxy's default injection list (docs/usage-record.md), so the streamed call is
            # metered exactly even though the SDK does not ask for usage.
            api_version=env.get("SMOKE_API_VERSION") or "2025-04-01-preview",
            function_name=env.get("AZURE_FUNCTION_NAME", ""),
            function_principal_id=env.get("AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID", ""),
            deployer_principal_id=env.get("AZURE_PRINCIPAL_ID", ""),
        )


# ---------------------------------------------------------------- retries


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    """401/403 while roles and the host key propagate, 429/5xx while things warm up."""
    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    name = type(exc).__name__
    text = str(exc).lower()
    # azure-eventhub raises AuthenticationError, or a generic error naming amqp:unauthorized-access.
    return name == "AuthenticationError" or "unauthorized" in text


def backoff_delays(first: float = 5.0, cap: float = 60.0) -> Iterable[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


def retry(
    attempt: Callable[[], T],
    *,
    what: str,
    window: float = RETRY_WINDOW_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> T:
    deadline = clock() + window
    for delay in backoff_delays():
        try:
            return attempt()
        except Exception as exc:
            if not is_retryable(exc) or clock() + delay > deadline:
                raise
            log(
                f"  {what}: {type(exc).__name__} ({status_of(exc) or 'no status'}), retry in {delay:.0f}s"
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


async def aretry(
    attempt: Callable[[], Any],
    *,
    what: str,
    window: float = RETRY_WINDOW_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = print,
) -> Any:
    deadline = clock() + window
    for delay in backoff_delays():
        try:
            return await attempt()
        except Exception as exc:
            if not is_retryable(exc) or clock() + delay > deadline:
                raise
            log(f"  {what}: {type(exc).__name__}, retry in {delay:.0f}s")
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------- APIM subscription key


def subscription_key_url(settings: Settings) -> str:
    return (
        f"https://management.azure.com/subscriptions/{settings.azure_subscription_id}"
        f"/resourceGroups/{settings.resource_group}/providers/Microsoft.ApiManagement"
        f"/service/{settings.apim_name}/subscriptions/{settings.apim_subscription_name}"
        f"/listSecrets?api-version={APIM_API_VERSION}"
    )


def fetch_subscription_key(http: Any, credential: Any, settings: Settings) -> str:
    """POST listSecrets with the caller's Entra token; returns the primary key (never printed)."""
    return _management_secret(
        http, credential, subscription_key_url(settings), "primaryKey", what="APIM listSecrets"
    )


def function_key_url(settings: Settings) -> str:
    return (
        f"https://management.azure.com/subscriptions/{settings.azure_subscription_id}"
        f"/resourceGroups/{settings.resource_group}/providers/Microsoft.Web"
        f"/sites/{settings.function_name}/host/default/listkeys?api-version={WEB_API_VERSION}"
    )


def fetch_function_key(http: Any, credential: Any, settings: Settings) -> str:
    """The Function App's `default` host key (never the master key; never printed)."""
    return _management_secret(
        http, credential, function_key_url(settings), "functionKeys", "default", what="listkeys"
    )


def _management_secret(http: Any, credential: Any, url: str, *path: str, what: str) -> str:
    """POSTs a management list-secrets URL with the caller's Entra token; the value at `path`."""

    def attempt() -> str:
        token = credential.get_token(MANAGEMENT_SCOPE).token
        response = http.post(url, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        value: Any = response.json()
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not value:
            raise SmokeTestError(f"{what} returned no {'.'.join(path)}")
        return str(value)

    return retry(attempt, what=what)


# ---------------------------------------------------------------- calls through the gateway


@dataclass
class CallOutcome:
    name: str
    status: int | None = None
    usage_record_id: str | None = None
    content_ok: bool = False
    error: str | None = None
    # Streamed calls only: whether content came in two or more reads spread over time.
    streamed_ok: bool | None = None


def arrived_as_a_stream(read_times: Sequence[float]) -> bool:
    return len(read_times) >= 2 and read_times[-1] - read_times[0] >= STREAM_MIN_SPREAD_SECONDS


def _timed_reads(contents: Iterable[str]) -> tuple[int, str, list[float]]:
    """Reads each chunk's content as it arrives: the number of chunks, the text, and when each read
    with content came."""
    chunks = 0
    text = ""
    read_times: list[float] = []
    for content in contents:
        chunks += 1
        if content:
            read_times.append(time.monotonic())
        text += content
    return chunks, text, read_times


def _chat_call(client: Any, name: str, model: str, *, stream: bool) -> CallOutcome:
    messages = [{"role": "user", "content": STREAM_PROMPT if stream else PROMPT}]
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        completion = raw.parse()
        text = "".join((c.message.content or "") for c in completion.choices)
        return CallOutcome(
            name, raw.status_code, raw.headers.get("x-usage-record-id"), content_ok=bool(text)
        )
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=messages, stream=True
    ) as response:
        record_id = response.headers.get("x-usage-record-id")
        chunks, text, read_times = _timed_reads(
            # Azure's first chunk has choices: [] (prompt filter results), and its content-filter
            # annotation chunks can carry a choice without a delta.
            "".join(
                (getattr(choice, "delta", None) and choice.delta.content) or ""
                for choice in chunk.choices
            )
            for chunk in response.parse()
        )
        return CallOutcome(
            name,
            response.status_code,
            record_id,
            content_ok=chunks > 0 and bool(text),
            streamed_ok=arrived_as_a_stream(read_times),
        )


# The origin's contract (docs/http-protocol.md): published by APIM as the `aoaifn` operation, served
# by the Function at /api/aoaifn (aoai_proxy.routes.AOAIFN_ROUTE, whose name its records carry).
AOAIFN_PATH = "/openai/aoaifn"
AOAIFN_ROUTE = "aoaifn"
AOAIFN_NON_STREAMED = "aoaifn non-streamed"
AOAIFN_STREAMED = "aoaifn streamed"
# Its README's two request bodies (hieumoscow/Function-SSE-Proxy, "Request Format"), as its clients
# send them; the deployment and api-version come from the Function's settings. The streamed one asks
# for STREAM_PROMPT's long answer instead of the README's one sentence: Azure's default content
# filter releases a stream in batches, and one sentence can arrive as a single read, which the
# "arrived over time" check would take for a buffering hop.
_ORIGIN_SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
_ORIGIN_MESSAGES = [
    _ORIGIN_SYSTEM,
    {"role": "user", "content": "Tell me about Singapore in 1 sentence"},
]
AOAIFN_BODIES = {
    AOAIFN_NON_STREAMED: json.dumps({"messages": _ORIGIN_MESSAGES}, indent=4).encode(),
    AOAIFN_STREAMED: json.dumps(
        {
            "messages": [_ORIGIN_SYSTEM, {"role": "user", "content": STREAM_PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        indent=4,
    ).encode(),
}


@dataclass(frozen=True)
class OriginClient:
    """Plain HTTP to the gateway's aoaifn operation, the way the origin's clients call it."""

    http: Any  # an httpx.Client
    url: str
    key: str

    def call(self, name: str, *, stream: bool) -> CallOutcome:
        headers = {"api-key": self.key, "content-type": "application/json"}
        body = AOAIFN_BODIES[name]
        if not stream:
            response = self.http.post(self.url, content=body, headers=headers)
            response.raise_for_status()
            choices = response.json().get("choices") or []
            text = "".join(((c.get("message") or {}).get("content") or "") for c in choices)
            return CallOutcome(
                name,
                response.status_code,
                response.headers.get("x-usage-record-id"),
                content_ok=bool(text),
            )
        with self.http.stream("POST", self.url, content=body, headers=headers) as response:
            response.raise_for_status()
            chunks, text, read_times = _timed_reads(
                "".join(
                    ((choice.get("delta") or {}).get("content") or "")
                    for choice in event.get("choices") or []
                )
                for event in _sse_events(response.iter_lines())
            )
            return CallOutcome(
                name,
                response.status_code,
                response.headers.get("x-usage-record-id"),
                content_ok=chunks > 0 and bool(text),
                streamed_ok=arrived_as_a_stream(read_times),
            )


def _sse_events(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """The JSON events of a chat completion stream, up to `data: [DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        event = decode_event(data)
        if event is not None:
            yield event


# The GA api-version most clients pin: a stream on it that does not ask for usage must still be
# metered exactly, by the proxy's injection (docs/usage-record.md, "Which calls are injected"). The
# simulator only models the service; this call checks the decision against Azure itself.
GA_API_VERSION = "2024-10-21"
GA_STREAM = f"azure {GA_API_VERSION} streamed"
# The usage.source a call must have; the others take either exact one (provider or injected).
EXPECTED_SOURCE = {GA_STREAM: "injected", AOAIFN_NON_STREAMED: "provider"}
# The route (and operation) a call's record must name; the others' are not checked.
EXPECTED_ROUTE = {
    AOAIFN_NON_STREAMED: (AOAIFN_ROUTE, "chat"),
    AOAIFN_STREAMED: (AOAIFN_ROUTE, "chat"),
}


def make_clients(
    settings: Settings, key: str, http_client: Any = None
) -> list[tuple[str, Any, bool]]:
    """(name, client, stream) for each call, configured exactly as docs/apim.md tells consumers."""
    import httpx
    from openai import AzureOpenAI, OpenAI

    # The SDK sends the key as `api-key`, the header the APIM API reads subscription keys from.
    azure = AzureOpenAI(
        azure_endpoint=settings.gateway_url,
        api_key=key,
        api_version=settings.api_version,
        max_retries=0,
        timeout=120,
        http_client=http_client,
    )
    # v1 clients send `Authorization: Bearer <key>`, which APIM does not read as a subscription key.
    v1 = OpenAI(
        base_url=settings.gateway_url.rstrip("/") + "/openai/v1/",
        api_key=key,
        default_headers={"api-key": key},
        max_retries=0,
        timeout=120,
        http_client=http_client,
    )
    # Sends no stream_options: whether the record has tokens depends on the proxy alone.
    ga = AzureOpenAI(
        azure_endpoint=settings.gateway_url,
        api_key=key,
        api_version=GA_API_VERSION,
        max_retries=0,
        timeout=120,
        http_client=http_client,
    )
    origin = OriginClient(
        http_client or httpx.Client(timeout=120),
        settings.gateway_url.rstrip("/") + AOAIFN_PATH,
        key,
    )
    return [
        ("azure non-streamed", azure, False),
        ("azure streamed", azure, True),
        ("v1 non-streamed", v1, False),
        (GA_STREAM, ga, True),
        (AOAIFN_NON_STREAMED, origin, False),
        (AOAIFN_STREAMED, origin, True),
    ]


def run_calls(
    clients: Sequence[tuple[str, Any, bool]], model: str, **retry_kwargs: Any
) -> list[CallOutcome]:
    outcomes = []
    for name, client, stream in clients:
        try:
            outcome = retry(
                lambda c=client, n=name, s=stream: (
                    c.call(n, stream=s)
                    if isinstance(c, OriginClient)
                    else _chat_call(c, n, model, stream=s)
                ),
                what=name,
                **retry_kwargs,
            )
        except Exception as exc:
            outcome = CallOutcome(name, status_of(exc), error=f"{type(exc).__name__}: {exc}"[:200])
        outcomes.append(outcome)
    return outcomes


# ---------------------------------------------------------------- time to first byte


def first_byte_ms(http: Any, url: str, headers: Mapping[str, str], samples: int) -> float:
    """Median time from sending a streamed chat to its first body byte; each stream is then read
    to its end (so each call still ends with its usage record)."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True}
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        with http.stream("POST", url, json=body, headers=headers) as response:
            response.raise_for_status()
            chunks = response.iter_raw()
            next(chunks)
            times.append((time.perf_counter() - started) * 1000)
            for _ in chunks:
                pass
    return sorted(times)[len(times) // 2]


def ttfb_report(
    http: Any, credential: Any, settings: Settings, key: str, samples: int = TTFB_SAMPLES
) -> str:
    path = f"/openai/deployments/{settings.deployment}/chat/completions"
    query = f"?api-version={settings.api_version}"
    lines = [f"Time to first byte, streamed chat, median of {samples}:"]
    try:
        apim = first_byte_ms(
            http, settings.gateway_url.rstrip("/") + path + query, {"api-key": key}, samples
        )
        lines.append(f"  through APIM:             {apim:8.1f} ms")
    except Exception as exc:
        return "\n".join([*lines, f"  through APIM: not measured ({type(exc).__name__}: {exc})"])
    if settings.function_auth == "entra":
        lines.append(
            "  straight to the Function: not measured (APIM_FUNCTION_AUTH=entra: only APIM's "
            "identity may call it)"
        )
        return "\n".join(lines)
    if not (settings.function_name and settings.function_url):
        lines.append(
            "  straight to the Function: not measured (AZURE_FUNCTION_NAME, SERVICE_API_URI)"
        )
        return "\n".join(lines)
    try:
        function_key = fetch_function_key(http, credential, settings)
        direct = first_byte_ms(
            http,
            settings.function_url.rstrip("/") + path + query,
            {"x-functions-key": function_key},
            samples,
        )
    except Exception as exc:
        lines.append(f"  straight to the Function: not measured ({type(exc).__name__}: {exc})")
        return "\n".join(lines)
    lines.append(f"  straight to the Function: {direct:8.1f} ms (APIM adds {apim - direct:.1f} ms)")
    return "\n".join(lines)


# ---------------------------------------------------------------- reading the hub


async def snapshot_positions(consumer: Any) -> dict[str, int]:
    """The last sequence number of every partition now (-1 when empty): read strictly after it."""
    positions: dict[str, int] = {}
    try:
        for partition_id in await consumer.get_partition_ids():
            props = await consumer.get_partition_properties(partition_id)
            last = -1 if props.get("is_empty") else int(props["last_enqueued_sequence_number"])
            positions[partition_id] = last
    finally:
        await consumer.close()
    return positions


def decode_event(body: str) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


async def collect_events(
    consumer: Any,
    positions: Mapping[str, int],
    done: Callable[[list[dict[str, Any]]], bool],
    *,
    wait_seconds: float = EVENT_WAIT_SECONDS,
) -> list[dict[str, Any]]:
    """Receive from `positions` (exclusive) until `done(events)` or `wait_seconds`; always closes."""
    events: list[dict[str, Any]] = []
    found = asyncio.Event()

    # Called with each batch, and with an empty one every max_wait_time seconds.
    async def on_batch(_context: Any, batch: list[Any]) -> None:
        for event in batch:
            decoded = decode_event(event.body_as_str())
            if decoded is not None:
                events.append(decoded)
        if done(events):
            found.set()

    # Integers: azure-eventhub turns an int starting position into an x-opt-sequence-number filter
    # and a str into an x-opt-offset filter (event_position_selector in Azure/azure-sdk-for-python
    # sdk/eventhub/azure-eventhub/azure/eventhub/_utils.py); what was noted are sequence numbers, so
    # a str here would start at the wrong place. -1 (an empty partition) means "after nothing".
    starting = {pid: int(seq) for pid, seq in positions.items()}
    receiving = asyncio.ensure_future(
        consumer.receive_batch(
            on_batch,
            max_wait_time=5,
            starting_position=starting,
            starting_position_inclusive=False,
        )
    )
    waiter = asyncio.ensure_future(found.wait())
    try:
        await asyncio.wait(
            {receiving, waiter}, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
        await consumer.close()
        receiving.cancel()
        await asyncio.gather(receiving, waiter, return_exceptions=True)
    if receiving.done() and not receiving.cancelled() and receiving.exception() is not None:
        raise receiving.exception()  # type: ignore[misc]
    return events


# ---------------------------------------------------------------- matching (pure)


@dataclass
class Check:
    call: str
    usage_record: bool = False
    gateway_event: bool = False
    same_subscription: bool = False
    tokens: int | None = None
    source_ok: bool = True  # usage.source is the one this call must have (EXPECTED_SOURCE)
    route_ok: bool = True  # request.route and operation are the ones it must name (EXPECTED_ROUTE)
    detail: str = ""
    record: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return (
            self.usage_record
            and self.gateway_event
            and self.same_subscription
            and self.tokens is not None
            and self.source_ok
            and self.route_ok
        )


def counted_tokens(record: Mapping[str, Any]) -> int | None:
    """total_tokens when the record has exact counts (usage.source provider or injected)."""
    usage = record.get("usage")
    if not isinstance(usage, Mapping) or usage.get("source") not in ("provider", "injected"):
        return None
    total = usage.get("total_tokens")
    return total if isinstance(total, int) and total > 0 else None


def index_events(
    events: Iterable[Mapping[str, Any]],
) -> tuple[dict[str, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    usage: dict[str, Mapping[str, Any]] = {}
    gateway: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if event.get("type") == "usage" and isinstance(event.get("record_id"), str):
            usage[event["record_id"]] = event
        elif event.get("type") == "gateway" and isinstance(event.get("request_id"), str):
            gateway[event["request_id"].lower()] = event
    return usage, gateway


def match(outcomes: Sequence[CallOutcome], events: Iterable[Mapping[str, Any]]) -> list[Check]:
    """Join each call's usage record (by x-usage-record-id) to APIM's gateway event (by request id)."""
    usage, gateway = index_events(events)
    checks = []
    for outcome in outcomes:
        check = Check(outcome.name)
        checks.append(check)
        if outcome.error or not outcome.usage_record_id:
            check.detail = outcome.error or "no x-usage-record-id header in the response"
            continue
        record = usage.get(outcome.usage_record_id)
        if record is None:
            check.detail = f"usage record {outcome.usage_record_id} not found"
            continue
        check.usage_record = True
        check.record = dict(record)
        check.tokens = counted_tokens(record)
        expected = EXPECTED_SOURCE.get(outcome.name)
        record_usage = record.get("usage") if isinstance(record.get("usage"), Mapping) else {}
        check.source_ok = expected is None or record_usage.get("source") == expected
        request = record.get("request") if isinstance(record.get("request"), Mapping) else {}
        named = (request.get("route"), request.get("operation"))
        expected_route = EXPECTED_ROUTE.get(outcome.name)
        check.route_ok = expected_route is None or named == expected_route
        caller = record.get("caller") if isinstance(record.get("caller"), Mapping) else {}
        request_id = str(caller.get("request_id") or "").lower()
        if not request_id:
            check.detail = "usage record has no caller.request_id (did the call bypass APIM?)"
            continue
        event = gateway.get(request_id)
        if event is None:
            check.detail = f"gateway event for request {request_id} not found"
            continue
        check.gateway_event = True
        record_sub = caller.get("subscription_id") or ""
        check.same_subscription = bool(record_sub) and record_sub == event.get("subscription_id")
        if not check.same_subscription:
            check.detail = "subscription ids differ between usage record and gateway event"
        elif check.tokens is None:
            check.detail = f"no exact token counts in the record: {record.get('usage')}"
        elif not check.route_ok and expected_route is not None:
            check.detail = (
                f"request.route {named[0]}, operation {named[1]}: expected route "
                f"{expected_route[0]}, operation {expected_route[1]}"
            )
        elif not check.source_ok:
            check.detail = (
                f"usage.source is {record_usage.get('source')}, expected {expected}: "
                f"{record_usage.get('source_reason')}"
            )
        else:
            source = record["usage"]["source"]
            check.detail = f"request {request_id}, status {event.get('status')}, {source} usage"
    return checks


def all_found(outcomes: Sequence[CallOutcome]) -> Callable[[list[dict[str, Any]]], bool]:
    def done(events: list[dict[str, Any]]) -> bool:
        wanted = [o for o in outcomes if o.usage_record_id and not o.error]
        return all(c.usage_record and c.gateway_event for c in match(wanted, events))

    return done


def render_table(outcomes: Sequence[CallOutcome], checks: Sequence[Check]) -> str:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        (
            "call",
            "http",
            "content",
            "stream",
            "usage record",
            "tokens",
            "gateway event",
            "result",
            "detail",
        )
    ]
    for outcome, check in zip(outcomes, checks, strict=True):
        call_ok = (
            outcome.error is None
            and outcome.status == 200
            and outcome.content_ok
            and outcome.streamed_ok is not False
        )
        rows.append(
            (
                outcome.name,
                str(outcome.status or "-"),
                mark(outcome.content_ok),
                "-" if outcome.streamed_ok is None else mark(outcome.streamed_ok),
                mark(check.usage_record),
                str(check.tokens) if check.tokens is not None else "FAIL",
                mark(check.gateway_event),
                mark(call_ok and check.passed),
                check.detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def passed(outcomes: Sequence[CallOutcome], checks: Sequence[Check]) -> bool:
    return all(
        o.error is None
        and o.status == 200
        and o.content_ok
        and o.streamed_ok is not False
        and c.passed
        for o, c in zip(outcomes, checks, strict=True)
    )


# ---------------------------------------------------------------- Entra mode: only APIM gets in


@dataclass
class Refusal:
    name: str
    status: int | None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == 401


def forged_principal(client_id: str) -> str:
    """An X-MS-CLIENT-PRINCIPAL naming APIM's identity, as App Service would encode it, but sent by
    us without any token: App Service authentication must reject the call before the app sees it."""
    import base64

    claims = [{"typ": "azp", "val": client_id}, {"typ": "appid", "val": client_id}]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


def direct_calls_refused(http: Any, settings: Settings) -> list[Refusal]:
    """Calls straight to the Function App, around APIM, in Entra mode: each must get 401."""
    url = (
        f"{settings.function_url.rstrip('/')}/openai/deployments/{settings.deployment}"
        f"/chat/completions?api-version={settings.api_version}"
    )
    body = {"messages": [{"role": "user", "content": PROMPT}]}
    attempts = [
        ("direct call, no token", {}),
        (
            "direct call, forged principal",
            {
                "X-MS-CLIENT-PRINCIPAL": forged_principal(settings.apim_client_id),
                "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
            },
        ),
    ]
    refusals = []
    for name, headers in attempts:
        try:
            response = http.post(url, json=body, headers=headers, timeout=60)
            refusals.append(Refusal(name, response.status_code, response.text[:200]))
        except Exception as exc:
            refusals.append(Refusal(name, None, f"{type(exc).__name__}: {exc}"[:200]))
    return refusals


def render_refusals(refusals: Sequence[Refusal]) -> str:
    return "\n".join(
        f"{r.name}: HTTP {r.status or '-'} {'PASS' if r.passed else 'FAIL (expected 401)'} {r.detail}"
        for r in refusals
    )


# ---------------------------------------------------------------- hostile paths

PROBE_TIMEOUT_SECONDS = 30.0
# (method, request target) sent byte for byte; none may be answered 2xx. {v} is the api-version.
PATH_PROBES: tuple[tuple[str, str], ...] = (
    ("GET", "/openai/%2e%2e/healthz"),
    ("GET", "/openai/%2E%2E/healthz"),
    ("GET", "/openai/..%2f..%2fhealthz"),
    ("GET", "/openai/..%5c..%5chealthz"),
    ("GET", "/openai/%252e%252e/healthz"),
    ("GET", "/openai/../healthz"),
    ("POST", "/openai/%2e%2e/%2e%2e/etc/passwd"),
    ("POST", "/openai/deployments/a%0d%0aX-Evil:1/chat/completions?api-version={v}"),
    ("GET", "/openai/./models?api-version={v}"),
    ("GET", "/openai//models?api-version={v}"),
)


@dataclass
class ProbeOutcome:
    method: str
    target: str
    status: int | None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Refused in any way (4xx, 5xx, a closed connection) but never served."""
        return self.status is None or not 200 <= self.status < 300


def raw_exchange(base_url: str, method: str, target: str, headers: Mapping[str, str]) -> int | None:
    """One request whose target goes out exactly as given (over TLS for https); the status, or
    None when the connection closed without an answer."""
    url = urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.hostname or ""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Content-Length: 0")
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    head = b""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS)
        )
        if url.scheme == "https":
            context = ssl.create_default_context()
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname=host))
        sock.sendall(wire)
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].split(b" ")
    return int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None


def probe_paths(
    settings: Settings, key: str, exchange: Callable[..., int | None] = raw_exchange
) -> list[ProbeOutcome]:
    outcomes = []
    for method, template in PATH_PROBES:
        target = template.replace("{v}", settings.api_version)
        try:
            status = exchange(settings.gateway_url, method, target, {"api-key": key})
            outcomes.append(ProbeOutcome(method, target, status))
        except OSError as exc:
            outcomes.append(ProbeOutcome(method, target, None, f"{type(exc).__name__}: {exc}"))
    return outcomes


def render_probes(probes: Sequence[ProbeOutcome]) -> str:
    lines = ["hostile path probes (any 2xx fails):"]
    for probe in probes:
        shown = str(probe.status) if probe.status is not None else (probe.error or "closed")
        verdict = "PASS" if probe.passed else "FAIL"
        lines.append(f"  {verdict}  {shown:<5} {probe.method} {probe.target}")
    return "\n".join(lines)


# ---------------------------------------------------------------- landing in Log Analytics


@dataclass
class Landed:
    """Which of the calls' records the workspace has, with the token counts it has for them."""

    table: str
    query: str
    expected: dict[str, int | None]  # record id -> total_tokens of the record read from the hub
    found: dict[str, int | None] = field(default_factory=dict)
    last_error: str | None = None

    @property
    def missing(self) -> list[str]:
        return [record_id for record_id in self.expected if record_id not in self.found]

    @property
    def mismatched(self) -> list[str]:
        return [
            record_id
            for record_id, tokens in self.expected.items()
            if record_id in self.found and self.found[record_id] != tokens
        ]


def usage_table() -> str:
    table: str = json.loads(TABLES_FILE.read_text(encoding="utf-8"))["usage"]["table"]
    return table


def landing_query(table: str, record_ids: Iterable[str]) -> str:
    """KQL for the records' rows; the ids are UUIDs from our own response headers, checked as such."""
    ids = ", ".join(json.dumps(str(uuid.UUID(record_id))) for record_id in record_ids)
    # Delivery is at least once: one row per record id, however often it landed.
    return (
        f"{table}\n| where RecordId in ({ids})\n"
        "| summarize TotalTokens = take_any(TotalTokens) by RecordId"
    )


async def await_landing(
    client: Any,
    workspace_id: str,
    expected: Mapping[str, int | None],
    *,
    table: str,
    wait_seconds: float = LANDING_WAIT_SECONDS,
    poll_seconds: float = LANDING_POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Landed:
    """Query until every record is there or `wait_seconds` are up. Errors (a Reader role not applied
    yet, a table not queryable yet) are remembered and the polling goes on."""
    from azure.core.exceptions import AzureError
    from azure.monitor.query import LogsQueryStatus

    landed = Landed(table, landing_query(table, expected), dict(expected))
    deadline = clock() + wait_seconds
    while True:
        try:
            result = await client.query_workspace(
                workspace_id, landed.query, timespan=LANDING_TIMESPAN
            )
            tables = (
                result.tables if result.status == LogsQueryStatus.SUCCESS else result.partial_data
            )
            for found in tables:
                for row in found.rows:
                    landed.found[str(row["RecordId"])] = row["TotalTokens"]
            landed.last_error = None
        except AzureError as exc:
            landed.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if not landed.missing or clock() >= deadline:
            return landed
        await sleep(min(poll_seconds, max(deadline - clock(), 0.0)))


def expected_landing(checks: Sequence[Check]) -> dict[str, int | None]:
    """Record id -> total tokens, for every call whose usage record was read from the hub."""
    return {
        str(check.record["record_id"]): check.tokens
        for check in checks
        if check.record is not None and check.record.get("record_id")
    }


def report_landing(landed: Landed, wait_seconds: float = LANDING_WAIT_SECONDS) -> int:
    """Prints what landed; the exit status: 0, 1 (wrong counts) or EXIT_NOT_LANDED."""
    if landed.missing:
        print(
            f"landing: {len(landed.missing)} of {len(landed.expected)} usage records not in "
            f"{landed.table} after {wait_seconds / 60:.0f} minutes"
            + (f" (last error: {landed.last_error})" if landed.last_error else "")
        )
        print("Run this query in the workspace (Logs) to look again:")
        print(landed.query)
        print(
            "landing: NOT LANDED (a warning on an environment's first deployment, while role "
            "assignments apply; a failure afterwards)"
        )
        return EXIT_NOT_LANDED
    if landed.mismatched:
        for record_id in landed.mismatched:
            print(
                f"landing: {record_id} has TotalTokens {landed.found[record_id]} in {landed.table}, "
                f"{landed.expected[record_id]} in the usage record"
            )
        print("smoke test: FAIL")
        return 1
    print(
        f"landing: PASS ({len(landed.found)} usage records in {landed.table}, tokens as recorded)"
    )
    return 0


def role_assignments_url(settings: Settings) -> str:
    return (
        f"https://management.azure.com/subscriptions/{settings.azure_subscription_id}"
        f"/resourceGroups/{settings.resource_group}/providers/Microsoft.Authorization/roleAssignments"
    )


def newest_landing_role(http: Any, credential: Any, settings: Settings) -> datetime:
    """When the newest role assignment the landing depends on was created: the Function identity's
    (Monitoring Metrics Publisher on the collection rule, to land) and AZURE_PRINCIPAL_ID's (Log
    Analytics Reader, to query), in or under the resource group. Raises SmokeTestError when it
    cannot tell, so an unknown age never turns a failure into a warning."""
    if not settings.function_principal_id:
        raise SmokeTestError(
            "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID is not set: cannot tell a first deployment"
        )
    token = credential.get_token(MANAGEMENT_SCOPE).token
    created: list[datetime] = []
    for principal in filter(None, (settings.function_principal_id, settings.deployer_principal_id)):
        url: str | None = role_assignments_url(settings)
        params: dict[str, str] | None = {
            "$filter": f"principalId eq '{principal}'",
            "api-version": AUTHORIZATION_API_VERSION,
        }
        while url:
            response = http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            page: Any = response.json()
            for item in page.get("value", []):
                when = datetime.fromisoformat(item["properties"]["createdOn"])
                created.append(when if when.tzinfo else when.replace(tzinfo=UTC))  # ARM: UTC
            url, params = page.get("nextLink"), None  # the next link carries the query
    if not created:
        raise SmokeTestError(
            "no role assignment of the Function's identity in the resource group: "
            "cannot tell a first deployment"
        )
    return max(created)


def judge_not_landed(newest_role: datetime, wait_began: datetime) -> int:
    """Records that did not land: a warning while the roles may still be applying, else a failure."""
    age = wait_began - newest_role
    minutes = age.total_seconds() / 60
    if age < ROLE_PROPAGATION:
        print(
            f"landing: the newest role the landing needs was {minutes:.0f} minutes old when the wait "
            f"began (roles take up to {ROLE_PROPAGATION.total_seconds() / 60:.0f} minutes to apply): "
            "an environment's first deployment"
        )
        print("smoke test: NOT LANDED YET (warning: look again with the query above)")
        return EXIT_NOT_LANDED_NEW_ROLES
    print(
        f"landing: the roles the landing needs were {minutes:.0f} minutes old when the wait began: "
        "not a first deployment"
    )
    print("smoke test: FAIL (records not landed)")
    return EXIT_NOT_LANDED


def landing_timeout_status(
    http: Any, credential: Any, settings: Settings, wait_began: datetime
) -> int:
    """The exit status for records that did not land: EXIT_NOT_LANDED_NEW_ROLES or EXIT_NOT_LANDED."""
    import httpx
    from azure.core.exceptions import AzureError

    try:
        newest = newest_landing_role(http, credential, settings)
    # A token or ARM failure, or an answer without a readable createdOn.
    except (SmokeTestError, httpx.HTTPError, AzureError, KeyError, TypeError, ValueError) as exc:
        print(f"landing: cannot read the age of the landing's roles ({exc}): a failure")
        print("smoke test: FAIL (records not landed)")
        return EXIT_NOT_LANDED
    return judge_not_landed(newest, wait_began)


def make_logs_client(credential: Any) -> Any:
    from azure.monitor.query.aio import LogsQueryClient

    return LogsQueryClient(credential)


# ---------------------------------------------------------------- wiring


def build_credentials(tenant_id: str) -> tuple[Any, Any]:
    """Sync (management API) and async (Event Hubs) credentials: azd login first, then az."""
    from azure.identity import (
        AzureCliCredential,
        AzureDeveloperCliCredential,
        ChainedTokenCredential,
    )
    from azure.identity.aio import AzureCliCredential as AioAzureCliCredential
    from azure.identity.aio import AzureDeveloperCliCredential as AioAzureDeveloperCliCredential
    from azure.identity.aio import ChainedTokenCredential as AioChainedTokenCredential

    sync = ChainedTokenCredential(
        AzureDeveloperCliCredential(tenant_id=tenant_id), AzureCliCredential(tenant_id=tenant_id)
    )
    aio = AioChainedTokenCredential(
        AioAzureDeveloperCliCredential(tenant_id=tenant_id),
        AioAzureCliCredential(tenant_id=tenant_id),
    )
    return sync, aio


def make_consumer(settings: Settings, credential: Any) -> Any:
    from azure.eventhub.aio import EventHubConsumerClient

    return EventHubConsumerClient(
        fully_qualified_namespace=settings.eventhub_namespace,
        eventhub_name=settings.eventhub_name,
        consumer_group=settings.consumer_group,
        credential=credential,
    )


async def flow(
    settings: Settings, key: str, credential: Any
) -> tuple[list[CallOutcome], list[Check]]:
    """Note the hub's positions, make the calls, then read the records and events they produced."""
    positions = await aretry(
        lambda: snapshot_positions(make_consumer(settings, credential)),
        what="Event Hubs (Data Receiver role)",
    )
    clients = make_clients(settings, key)
    outcomes = await asyncio.to_thread(run_calls, clients, settings.deployment)
    print("Calls done; waiting for usage records and gateway events (APIM sends every ~15 s)...")
    events = await collect_events(
        make_consumer(settings, credential), positions, all_found(outcomes)
    )
    return outcomes, match(outcomes, events)


def run(env: Mapping[str, str]) -> int:
    import httpx

    settings = Settings.from_env(env)
    sync_credential, aio_credential = build_credentials(env.get("AZURE_TENANT_ID", ""))
    print(f"Smoke test of {settings.gateway_url} (deployment {settings.deployment})")
    with httpx.Client(timeout=60) as http:
        key = fetch_subscription_key(http, sync_credential, settings)
        refusals = direct_calls_refused(http, settings) if settings.function_auth == "entra" else []

    def judge_landing_timeout(wait_began: datetime) -> int:
        with httpx.Client(timeout=60) as http:
            return landing_timeout_status(http, sync_credential, settings, wait_began)

    def measure_ttfb() -> str:
        with httpx.Client(timeout=120) as http:
            return ttfb_report(http, sync_credential, settings, key)

    async def main_flow() -> int:
        try:
            outcomes, checks = await flow(settings, key, aio_credential)
            print(render_table(outcomes, checks))
            if refusals:
                print(render_refusals(refusals))
            probes = await asyncio.to_thread(probe_paths, settings, key)
            print(render_probes(probes))
            print(await asyncio.to_thread(measure_ttfb))  # informational: never fails the run
            ok = (
                passed(outcomes, checks)
                and all(r.passed for r in refusals)
                and all(probe.passed for probe in probes)
            )
            if not ok:
                print("smoke test: FAIL")
                return 1
            print(
                f"Waiting up to {LANDING_WAIT_SECONDS / 60:.0f} minutes for the records to land "
                "in Log Analytics..."
            )
            wait_began = datetime.now(UTC)
            async with make_logs_client(aio_credential) as logs:
                landed = await await_landing(
                    logs, settings.workspace_id, expected_landing(checks), table=usage_table()
                )
            status = report_landing(landed)
            if status == 0:
                print("smoke test: PASS")
            if status != EXIT_NOT_LANDED:
                return status
            return await asyncio.to_thread(judge_landing_timeout, wait_began)
        finally:
            await aio_credential.close()

    return asyncio.run(main_flow())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    env = {**read_azd_env(), **{k: v for k, v in os.environ.items() if v}}
    try:
        return run(env)
    except SmokeTestError as exc:
        print(f"smoke test: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
