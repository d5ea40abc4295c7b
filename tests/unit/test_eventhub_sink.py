"""The Event Hub sink on a healthy hub: lazy keyless producer, one event per record, counters."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from tests.delivery_doubles import (
    FakeEntraCredential,
    HubDouble,
    MemoryDeadLetterStore,
    eventually,
    make_sink,
    record_ids,
    usage_record,
)

from aoai_proxy.asgi import create_app
from aoai_proxy.config import ConfigError, Settings
from aoai_proxy.sinks import build_sink
from aoai_proxy.sinks.eventhub import PRODUCERS, EventHubSink

EVENTHUB_ENV = {
    "AZURE_OPENAI_ENDPOINT": "https://my-aoai.openai.azure.com",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
    "EVENTHUB_NAME": "usage",
}


async def test_the_producer_is_built_lazily_once_with_the_shared_credential(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    credential = FakeEntraCredential()
    sink = make_sink(memory_deadletter, credential=credential)
    hub.client_class.assert_not_called()  # nothing is built before there is a running loop and a record

    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(50)]
    for record in records:
        sink.submit(record)
    await eventually(lambda: len(hub.records) == 50, what="50 records at the hub")
    await sink.aclose()

    assert hub.client_class.call_count == PRODUCERS  # one pool per process, built once
    kwargs = hub.client_class.call_args.kwargs
    assert kwargs["fully_qualified_namespace"] == "my-usage-ns.servicebus.windows.net"
    assert kwargs["eventhub_name"] == "usage"
    assert kwargs["credential"] is credential
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
    for batch in hub.sent:
        assert {r["caller"]["subscription_id"] for r in batch.records} == {batch.partition_key}
    assert hub.producer.close.await_count == PRODUCERS
    assert memory_deadletter.closed


async def test_counters_and_health_after_a_healthy_run(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    sink = make_sink(memory_deadletter)
    for i in range(20):
        sink.submit(usage_record(n=i))
    await eventually(lambda: sink.counters.sent == 20, what="20 sent")

    health = sink.health()

    assert health["sink"] == "eventhub"
    assert health["instance_id"] == "instance-1"
    assert health["state"] == "healthy"
    assert health["in_memory"] == 0
    assert health["counters"] == {
        "queued": 20,
        "sent": 20,
        "dead_lettered": 0,
        "replayed": 0,
        "dropped": 0,
    }
    json.dumps(health)  # /healthz serialises it as is
    await sink.aclose()


@pytest.mark.usefixtures("no_gc_pauses")
async def test_a_record_spends_milliseconds_only_in_memory_on_a_healthy_hub(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """The exposure window docs/delivery.md quotes: submit until the hub acknowledged the batch."""
    hub.forget_calls = True
    hub.send_delay = 0.010  # a send round trip to a nearby hub takes milliseconds
    sink = make_sink(memory_deadletter)
    for i in range(300):
        sink.submit(usage_record(f"sub-{i % 5}", n=i))
        if i % 10 == 0:
            await eventually(lambda: True)  # let the loop breathe, as between requests
    await eventually(lambda: sink.counters.sent == 300, what="300 sent")

    window_ms = sink.health()["max_ms_in_memory"]

    print(f"\nmax time a record spent only in memory: {window_ms:.1f} ms (send delay 10 ms)")
    assert window_ms < 250
    await sink.aclose()


async def test_a_structured_counter_line_is_logged_periodically(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aoai_proxy.sinks.eventhub")
    sink = make_sink(memory_deadletter, log_seconds=0.05)
    for i in range(7):
        sink.submit(usage_record(n=i))
    await eventually(lambda: sink.counters.sent == 7, what="7 sent")
    started = time.monotonic()
    await eventually(lambda: time.monotonic() - started > 0.15)
    await sink.aclose()

    lines = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("usage_delivery_counters ")
    ]
    assert len(lines) >= 3  # periodic ones and the final one at shutdown
    assert all(line["instance_id"] == "instance-1" for line in lines)
    assert sum(line["delta"]["sent"] for line in lines) == 7  # deltas sum to the total
    assert lines[-1]["total"]["sent"] == 7
    assert lines[-1]["final"] is True


async def test_submit_outside_a_running_loop_never_raises(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(memory_deadletter)
    record = usage_record()

    def submit_from_a_thread_without_loop() -> None:
        sink.submit(record)

    import threading

    thread = threading.Thread(target=submit_from_a_thread_without_loop)
    thread.start()
    thread.join(timeout=5)

    # The record's only copy is the log line, the same JSON as on the wire; counted, never lost.
    assert sink.counters.dropped == 1
    assert sink.counters.queued == 1  # queued = sent + dead_lettered + dropped + in memory
    [line] = [
        r.getMessage().removeprefix("usage record undeliverable ")
        for r in caplog.records
        if r.getMessage().startswith("usage record undeliverable ")
    ]
    assert json.loads(line) == record


def test_a_record_that_cannot_be_serialised_is_logged_and_counted(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(memory_deadletter)
    record = usage_record()
    record["loop"] = record  # json.dumps raises ValueError (circular reference)

    sink.submit(record)

    assert sink.counters.as_dict() | {"queued": 1, "dropped": 1} == sink.counters.as_dict()
    assert any(record["record_id"] in r.getMessage() for r in caplog.records)


def test_build_sink_picks_event_hubs_when_the_namespace_is_set() -> None:
    settings = Settings.from_env(
        {**EVENTHUB_ENV, "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net"}
    )
    sink = build_sink(settings, FakeEntraCredential())
    assert isinstance(sink, EventHubSink)
    assert settings.deadletter_blob_service_uri == "https://st.blob.core.windows.net"
    assert settings.deadletter_container == "usage-deadletter"


def test_event_hubs_without_a_dead_letter_store_fails_at_start_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="DEADLETTER_BLOB_SERVICE_URI"):
        Settings.from_env(EVENTHUB_ENV)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("USAGE_QUEUE_MAX_RECORDS", "0"),
        ("USAGE_DELIVERY_MAX_SECONDS", "soon"),
        ("USAGE_COUNTERS_LOG_SECONDS", "-1"),
    ],
)
def test_a_bad_delivery_setting_fails_at_start_naming_the_variable(name: str, value: str) -> None:
    env: dict[str, Any] = {
        **EVENTHUB_ENV,
        "DEADLETTER_BLOB_SERVICE_URI": "https://st.blob.core.windows.net",
        name: value,
    }
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


async def test_a_container_name_blob_storage_refuses_stops_the_server_at_start_up() -> None:
    """`deadletter-A` used to start fine and then fail every dead-letter write (400
    InvalidResourceName), so at shutdown every record was dropped."""
    env = {
        **EVENTHUB_ENV,
        "DEADLETTER_BLOB_SERVICE_URI": "https://st.blob.core.windows.net",
        "DEADLETTER_CONTAINER": "deadletter-A",
    }
    app = create_app(lambda: Settings.from_env(env))
    with pytest.raises(ConfigError, match="DEADLETTER_CONTAINER"):
        async with app.router.lifespan_context(app):
            pass


def test_delivery_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            **EVENTHUB_ENV,
            "DEADLETTER_BLOB_SERVICE_URI": "https://st.blob.core.windows.net",
            "USAGE_QUEUE_MAX_RECORDS": "50",
            "USAGE_DELIVERY_MAX_SECONDS": "3.5",
            "USAGE_COUNTERS_LOG_SECONDS": "30",
            "WEBSITE_INSTANCE_ID": "abc123",
        }
    )
    assert settings.delivery_queue_max_records == 50
    assert settings.delivery_max_seconds == 3.5
    assert settings.delivery_log_seconds == 30
    assert settings.instance_id == "abc123"
