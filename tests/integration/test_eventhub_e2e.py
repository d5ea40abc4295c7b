"""Real proxy traffic (uvicorn, simulator upstream) into the Event Hub sink, with the SDK producer
replaced by the autospec hub double: records arrive once each, keyed by APIM subscription."""

from __future__ import annotations

import time
from typing import Any

import httpx

CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2025-04-01-preview"


def test_streamed_calls_reach_the_hub_partitioned_by_subscription(
    proxy_factory: Any, hub: Any
) -> None:
    proxy = proxy_factory(
        sink="eventhub",
        eventhub_namespace="my-usage-ns.servicebus.windows.net",
        eventhub_name="usage",
        deadletter_blob_service_uri="https://st.blob.core.windows.net",
    )
    sent: dict[str, str] = {}
    with httpx.Client(base_url=proxy.base_url, timeout=10) as client:
        for n in range(6):
            subscription = f"sub-{n % 3}"
            response = client.post(
                CHAT,
                json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
                headers={"x-apim-subscription-id": subscription, "x-sim-tokens": str(n + 1)},
            )
            assert response.status_code == 200
            sent[response.headers["x-usage-record-id"]] = subscription
        # The hub double holds a batch as soon as its send starts; the sink counts it as sent once
        # the send returns: wait for both.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            health = client.get("/healthz").json()
            if len(hub.records) >= len(sent) and health["delivery"]["counters"]["sent"] >= len(
                sent
            ):
                break
            time.sleep(0.02)

    assert sorted(r["record_id"] for r in hub.records) == sorted(sent)  # each exactly once
    for batch in hub.sent:
        assert {sent[r["record_id"]] for r in batch.records} == {batch.partition_key}
    assert all(record["usage"]["source"] == "injected" for record in hub.records)
    assert sorted(r["usage"]["completion_tokens"] for r in hub.records) == [1, 2, 3, 4, 5, 6]
    assert health["delivery"]["sink"] == "eventhub"
    assert health["delivery"]["counters"]["sent"] == len(sent)
    assert health["delivery"]["counters"]["dropped"] == 0
    client_kwargs = hub.client_class.call_args.kwargs
    assert client_kwargs["fully_qualified_namespace"] == "my-usage-ns.servicebus.windows.net"
    assert client_kwargs["eventhub_name"] == "usage"
