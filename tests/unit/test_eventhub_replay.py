"""The replay timer's run: built from the settings alone, reports what it re-sent."""

from __future__ import annotations

import json
import logging

import pytest
from pytest_mock import MockerFixture
from tests.delivery_doubles import (
    FakeEntraCredential,
    HubDouble,
    MemoryDeadLetterStore,
    eventhub_settings,
    record_ids,
    usage_record,
)

from aoai_proxy.config import Settings
from aoai_proxy.replay import run_replay
from aoai_proxy.sinks.events import encode

SETTINGS = eventhub_settings(deadletter_container="usage-deadletter", instance_id="timer-instance")


async def test_a_timer_run_replays_the_store_and_logs_a_counter_line(
    hub: HubDouble,
    memory_deadletter: MemoryDeadLetterStore,
    mocker: MockerFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aoai_proxy.replay")
    store_class = mocker.patch(
        "aoai_proxy.replay.BlobDeadLetterStore", return_value=memory_deadletter
    )
    records = [usage_record(f"sub-{i % 2}", n=i) for i in range(6)]
    await memory_deadletter.put([encode(r).body for r in records[:4]])
    await memory_deadletter.put([encode(r).body for r in records[4:]])
    credential = FakeEntraCredential()

    result = await run_replay(SETTINGS, credential)

    assert (result.blobs, result.replayed, result.stopped_early) == (2, 6, False)
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
    store_class.assert_called_once_with(
        "https://st.blob.core.windows.net",
        "usage-deadletter",
        credential,
        instance_id="timer-instance",
    )
    kwargs = hub.client_class.call_args.kwargs
    assert kwargs["fully_qualified_namespace"] == "my-ns.servicebus.windows.net"
    assert kwargs["credential"] is credential
    hub.producer.close.assert_awaited_once()
    assert memory_deadletter.closed
    [line] = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("usage_delivery_counters ")
    ]
    assert line["delta"]["replayed"] == 6
    assert line["instance_id"] == "timer-instance"


async def test_a_timer_run_without_event_hubs_configured_does_nothing(hub: HubDouble) -> None:
    settings = Settings(openai_endpoint="https://my-aoai.openai.azure.com", sink="jsonl")

    result = await run_replay(settings, FakeEntraCredential())

    assert result.replayed == 0
    hub.client_class.assert_not_called()
