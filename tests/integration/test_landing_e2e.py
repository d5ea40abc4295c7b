"""End to end: calls through the proxy -> the Event Hub sink (the autospec hub double) -> the
landing function, invoked as the Functions worker invokes it -> the Logs Ingestion fake.

Every call's usage record lands exactly as often as it was sent, its row is the record flattened,
and APIM's gateway event for the same call, read from the same hub, lands joined to it.
"""

from __future__ import annotations

import json
import logging
import time
import types
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest.mock import create_autospec

import azure.functions as func
import pytest
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter
from tests.identity_double import CLIENT_ID, TokenEndpoint
from tests.ingestion_double import Fault, IngestionFake
from tests.traffic import drive, gateway_event

from aoai_proxy.config import ConfigError
from aoai_proxy.landing import blueprint
from aoai_proxy.landing.columns import USAGE_COLUMNS, flatten


@pytest.fixture
async def landing_function(
    ingestion: IngestionFake,
    identity_endpoint: Callable[..., TokenEndpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Any]]:
    """The function as the worker indexes it, configured by the app settings the Bicep writes."""
    identity_endpoint()
    for name, value in ingestion.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    app = func.FunctionApp()
    app.register_blueprint(blueprint.bp)
    (function,) = [f for f in app.get_functions() if f.get_function_name() == "land_usage_events"]
    yield function.get_user_function()
    await blueprint.landing.aclose()  # its client lives on this test's event loop


def trigger_events(bodies: list[bytes]) -> list[func.EventHubEvent]:
    """What the worker hands the function for a batch: the host's collection_bytes payload with
    one SystemProperties entry per event, decoded by the binding's own converter."""
    system = [
        {"EnqueuedTimeUtc": "2026-12-06T09:00:00Z", "SequenceNumber": n, "Offset": str(n * 100)}
        for n in range(len(bodies))
    ]
    data = meta.Datum(types.SimpleNamespace(bytes=bodies), "collection_bytes")
    metadata = {"SystemPropertiesArray": meta.Datum(json.dumps(system), "json")}
    events = EventHubTriggerConverter.decode(data, trigger_metadata=metadata)
    assert isinstance(events, list)
    return events


def wait_for_records(hub: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(hub.records) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def context(retry_count: int = 0) -> Any:
    ctx = create_autospec(func.Context, instance=True)
    ctx.retry_context = types.SimpleNamespace(retry_count=retry_count, max_retry_count=8)
    return ctx


async def test_every_call_lands_once_with_its_columns_and_joins_its_gateway_event(
    proxy_factory: Any,
    hub: Any,
    ingestion: IngestionFake,
    landing_function: Callable[..., Any],
) -> None:
    proxy = proxy_factory(
        sink="eventhub",
        eventhub_namespace="my-ns.servicebus.windows.net",
        eventhub_name="usage",
        deadletter_blob_service_uri="https://st.blob.core.windows.net",
    )
    calls = drive(proxy.base_url)
    wait_for_records(hub, len(calls))  # sent from the proxy's own thread and loop
    usage_bodies = [body for batch in hub.sent for body in batch.bodies]
    assert len(usage_bodies) == len(calls)
    # The hub interleaves both producers' events; the landing gets them in batches as they come.
    mixed = [b for pair in zip(usage_bodies, map(gateway_event, calls), strict=True) for b in pair]
    for start in range(0, len(mixed), 5):
        await landing_function(trigger_events(mixed[start : start + 5]), context())

    sent = [json.loads(body) for body in usage_bodies]
    usage_rows = ingestion.landed("Custom-AoaiUsage")
    assert Counter(row["RecordId"] for row in usage_rows) == Counter(c.record_id for c in calls)
    by_id = {row["RecordId"]: row for row in usage_rows}
    for record in sent:
        assert by_id[record["record_id"]] == flatten(USAGE_COLUMNS, record)
    gateway_rows = ingestion.landed("Custom-ApimGatewayEvents")
    assert len(gateway_rows) == len(calls)
    for row in gateway_rows:  # the reconciliation join: request id and record id agree
        usage = by_id[row["UsageRecordId"]]
        assert usage["ApimRequestId"] == row["ApimRequestId"]
        assert usage["ApimSubscriptionId"] == row["ApimSubscriptionId"]
    assert {row["Status"] for row in usage_rows} >= {200, 400, 404, 429}
    assert any(row["UsageSource"] == "injected" for row in usage_rows)


async def test_a_failing_batch_fails_the_invocation_until_the_last_retry(
    ingestion: IngestionFake, landing_function: Callable[..., Any]
) -> None:
    record = {
        "type": "gateway",
        "schema_version": 1,
        "timestamp": "2026-12-06T09:00:01.1234567Z",
        "request_id": "r-1",
    }
    body = json.dumps(record).encode()
    # 403: as while the role assignment on the DCR is not applied yet.
    ingestion.faults.append(Fault(403, "Forbidden", times=99))
    with pytest.raises(blueprint.LandingIncompleteError):
        await landing_function(trigger_events([body]), context(retry_count=0))
    # The last attempt logs and counts instead, so the checkpoint can move on.
    await landing_function(trigger_events([body]), context(retry_count=8))
    assert blueprint.landing.totals.failed == 1
    assert blueprint.landing.totals.retried == 1


async def test_a_missing_setting_fails_the_invocation_naming_it(
    ingestion: IngestionFake,
    landing_function: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGS_DCR_IMMUTABLE_ID", "")  # as azd writes an unset output
    with pytest.raises(ConfigError, match="LOGS_DCR_IMMUTABLE_ID"):
        await landing_function(trigger_events([b'{"type":"usage"}']), context())
    assert ingestion.received == []


async def test_a_batch_failing_on_its_last_retry_is_logged_for_the_landing_alert(
    ingestion: IngestionFake,
    landing_function: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The host moves the checkpoint past it and no counters line covers it: one line says so, with
    where the batch is in the hub (infra/analytics/alerts/landing-failed.kql sums `events`)."""
    monkeypatch.setenv("LOGS_DCR_IMMUTABLE_ID", "")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "landing-1")
    events = trigger_events([b'{"type":"usage"}'] * 3)
    prefix = "usage_landing_batch_failed "
    with caplog.at_level(logging.INFO, logger="aoai_proxy.landing"):
        with pytest.raises(ConfigError):
            await landing_function(events, context(retry_count=0))  # the host retries: no line
        assert not any(r.getMessage().startswith(prefix) for r in caplog.records)
        with pytest.raises(ConfigError):
            await landing_function(events, context(retry_count=8))

    (record,) = [r for r in caplog.records if r.getMessage().startswith(prefix)]
    assert record.levelno == logging.ERROR
    line = json.loads(record.getMessage().removeprefix(prefix))
    assert line["events"] == 3
    assert (line["first_sequence_number"], line["last_sequence_number"]) == (0, 2)
    assert line["instance_id"] == "landing-1"
    assert "LOGS_DCR_IMMUTABLE_ID" in line["error"]
