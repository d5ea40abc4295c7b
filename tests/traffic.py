"""A mix of calls through the running proxy, as APIM forwards them, for tests of what the usage
records become downstream (the landing in Log Analytics)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx
import openai

API_VERSION = "2025-04-01-preview"  # on the injection list: streams get exact usage
CHAT = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Call:
    record_id: str  # the x-usage-record-id response header
    apim_request_id: str
    subscription_id: str
    status: int
    method: str
    path: str


def apim_headers(subscription: str) -> dict[str, str]:
    """What the APIM policy sets on the way in (infra/modules/apim-openai-api-policy.xml)."""
    return {
        "x-apim-request-id": str(uuid.uuid4()),
        "x-apim-subscription-id": subscription,
        "x-apim-subscription-name": f"team {subscription}",
        "x-apim-product-id": "openai-standard",
        "x-apim-user-id": "1",
        "x-apim-client-ip": "203.0.113.24",
    }


def drive(base_url: str) -> list[Call]:
    """Non-streamed and streamed chat, embeddings through the SDK, a throttled call, a body the
    proxy rejects and a path that is no route: every kind of record the landing sees."""
    calls: list[Call] = []

    def done(response: httpx.Response, headers: dict[str, str]) -> None:
        calls.append(
            Call(
                record_id=response.headers["x-usage-record-id"],
                apim_request_id=headers["x-apim-request-id"],
                subscription_id=headers["x-apim-subscription-id"],
                status=response.status_code,
                method=response.request.method,
                path=response.request.url.path,
            )
        )

    with httpx.Client(base_url=base_url, timeout=10) as client:
        for n, (body, extra) in enumerate(
            [
                ({"messages": MESSAGES}, {}),
                ({"messages": MESSAGES, "stream": True}, {"x-sim-tokens": "5"}),
                ({"messages": MESSAGES, "stream": True}, {"x-sim-tool-calls": "2"}),
                ({"messages": MESSAGES}, {"x-sim-status": "429"}),
            ]
        ):
            headers = apim_headers(f"sub-{n % 2}") | extra
            done(client.post(CHAT, json=body, headers=headers), headers)
        headers = apim_headers("sub-0")
        done(client.post(CHAT, content=b"not json", headers=headers), headers)
        headers = apim_headers("sub-1")
        done(client.get("/openai/no-such-route", headers=headers), headers)
    headers = apim_headers("sub-1")
    sdk = openai.AzureOpenAI(
        azure_endpoint=base_url,
        api_key="caller-key-never-forwarded",
        api_version=API_VERSION,
        max_retries=0,
        timeout=10,
        default_headers=headers,
    )
    raw = sdk.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hello")
    done(raw.http_response, headers)
    return calls


def gateway_event(call: Call) -> bytes:
    """APIM's gateway event for the call, as infra/modules/apim-gateway-event-fragment.xml writes it
    (JObject.ToString(Formatting.None); DateTime "o" has seven fractional digits)."""
    event = {
        "type": "gateway",
        "schema_version": 1,
        "timestamp": "2026-12-06T09:00:01.1234567Z",
        "request_id": call.apim_request_id,
        "subscription_id": call.subscription_id,
        "subscription_name": f"team {call.subscription_id}",
        "product_id": "openai-standard",
        "user_id": "1",
        "client_ip": "203.0.113.24",
        "api": "azure-openai",
        "operation": "chat-completions",
        "method": call.method,
        "url_path": call.path,
        "status": call.status,
        "usage_record_id": call.record_id,
        "error_reason": "",
        "error_source": "",
        "region": "Sweden Central",
        "service": "apim-test",
        "gateway_ttfb_ms": 15,
    }
    return json.dumps(event, separators=(",", ":")).encode()
