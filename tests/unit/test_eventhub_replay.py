"""The replay timer's run: built from the settings alone, reports what it re-sent."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from pytest_mock import MockerFixture
from tests.delivery_doubles import (
    FakeEntraCredential,
    HubDouble,
    MemoryDeadLetterStore,
    record_ids,
    usage_record,
)

from aoai_proxy.config import ConfigError
from aoai_proxy.replay import (
    REPLAY_PRODUCERS,
    ReplaySettings,
    replay_deadletters,
    replay_from_env,
    run_replay,
)
from aoai_proxy.sinks.events import encode, make_producer

SETTINGS = ReplaySettings(
    namespace="my-usage-ns.servicebus.windows.net",
    eventhub_name="usage",
    blob_service_uri="https://st.blob.core.windows.net",
    container="usage-deadletter",
    instance_id="timer-instance",
    managed_identity_client_id=None,
)

REPLAY_CLIENT_ID = "5f0c9c1e-2b7a-4d3e-9f61-8a2b3c4d5e6f"  # a user-assigned identity's client id


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
    assert kwargs["fully_qualified_namespace"] == "my-usage-ns.servicebus.windows.net"
    assert kwargs["credential"] is credential
    assert hub.producer.close.await_count == REPLAY_PRODUCERS  # every connection closed
    assert memory_deadletter.closed
    [line] = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("usage_delivery_counters ")
    ]
    assert line["delta"]["replayed"] == 6
    assert line["instance_id"] == "timer-instance"


async def test_a_timer_run_without_event_hubs_configured_does_nothing(
    hub: HubDouble, mocker: MockerFixture
) -> None:
    credential_class = mocker.patch("azure.identity.aio.DefaultAzureCredential", autospec=True)

    result = await replay_from_env({"AZURE_OPENAI_ENDPOINT": "https://my-aoai.openai.azure.com"})

    assert result.replayed == 0
    hub.client_class.assert_not_called()
    credential_class.assert_not_called()


async def test_a_timer_run_builds_its_managed_identity_credential_and_closes_it(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, mocker: MockerFixture
) -> None:
    mocker.patch("aoai_proxy.replay.BlobDeadLetterStore", return_value=memory_deadletter)
    credential_class = mocker.patch("azure.identity.aio.DefaultAzureCredential", autospec=True)
    await memory_deadletter.put([encode(usage_record()).body])
    env = {
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
        "EVENTHUB_NAME": "usage",
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "AZURE_CLIENT_ID": REPLAY_CLIENT_ID,
    }  # no AZURE_OPENAI_ENDPOINT: the timer does not need the upstream settings

    result = await replay_from_env(env)

    assert result.replayed == 1
    credential_class.assert_called_once_with(managed_identity_client_id=REPLAY_CLIENT_ID)
    assert hub.client_class.call_args.kwargs["credential"] is credential_class.return_value
    credential_class.return_value.close.assert_awaited_once()


async def test_a_hung_hub_cannot_hold_a_replay_run_past_its_time_limit(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """A timer run must end on its own: a send that never answers is cut at the run's deadline,
    and the blob stays parked for the next run."""
    records = [usage_record(n=i) for i in range(3)]
    await memory_deadletter.put([encode(r).body for r in records])
    hub.send_delay = 30  # the hub accepts the connection and never answers
    producer = make_producer("ns", "usage", FakeEntraCredential())
    started = time.monotonic()

    async with asyncio.timeout(5):  # the test's own bound: without one, the run waits 30 s
        result = await replay_deadletters(memory_deadletter, [producer], max_seconds=0.3)

    assert time.monotonic() - started < 1.5
    assert result.stopped_early
    assert result.replayed == 0
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))


async def test_overlapping_replay_runs_deliver_everything_and_do_not_fail(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """Two timer instances listing the same blobs (the singleton lock lapsed, a deployment swap):
    a blob the other run deleted first is not an error; a record may arrive twice, never zero times."""
    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(20)]
    for start in range(0, 20, 5):
        await memory_deadletter.put([encode(r).body for r in records[start : start + 5]])
    hub.send_delay = 0.005
    producer = make_producer("ns", "usage", FakeEntraCredential())

    first, second = await asyncio.gather(
        replay_deadletters(memory_deadletter, [producer]),
        replay_deadletters(memory_deadletter, [producer]),
    )

    assert memory_deadletter.blobs == {}
    assert set(record_ids(hub.records)) == set(record_ids(records))
    assert not first.stopped_early
    assert not second.stopped_early


def test_replay_settings_need_no_upstream_settings() -> None:
    """The timer replays with the delivery settings alone: a missing or broken upstream setting
    (AZURE_OPENAI_ENDPOINT, PROXY_*) must not strand the dead letters."""
    env = {
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
        "EVENTHUB_NAME": "usage",
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "WEBSITE_INSTANCE_ID": "timer-instance",
        "AZURE_CLIENT_ID": REPLAY_CLIENT_ID,
        "PROXY_MAX_REQUEST_BYTES": "not a number",
    }

    settings = ReplaySettings.from_env(env)

    assert settings == ReplaySettings(
        namespace="my-usage-ns.servicebus.windows.net",
        eventhub_name="usage",
        blob_service_uri="https://st.blob.core.windows.net",
        container="usage-deadletter",
        instance_id="timer-instance",
        managed_identity_client_id=REPLAY_CLIENT_ID,
    )
    assert ReplaySettings.from_env({}) is None  # the Event Hub sink is not configured


@pytest.mark.parametrize(
    ("env", "name"),
    [
        (
            {"EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net"},
            "EVENTHUB_NAME",
        ),
        (
            {
                "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "sb://my-usage-ns.servicebus.windows.net/",
                "EVENTHUB_NAME": "usage",
                "DEADLETTER_BLOB_SERVICE_URI": "https://st.blob.core.windows.net",
            },
            "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
        ),
        (
            {
                "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
                "EVENTHUB_NAME": "usage",
            },
            "DEADLETTER_BLOB_SERVICE_URI",
        ),
        (
            {
                "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
                "EVENTHUB_NAME": "usage",
                "DEADLETTER_BLOB_SERVICE_URI": "st.blob.core.windows.net",
            },
            "DEADLETTER_BLOB_SERVICE_URI",
        ),
        (
            {
                "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
                "EVENTHUB_NAME": "usage",
                "DEADLETTER_BLOB_SERVICE_URI": "https://st.blob.core.windows.net",
                "DEADLETTER_CONTAINER": "Usage_DeadLetter",
            },
            "DEADLETTER_CONTAINER",
        ),
    ],
)
def test_a_bad_replay_setting_fails_naming_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ReplaySettings.from_env(env)


async def test_replay_sends_several_blobs_at_once_and_deletes_only_what_was_sent(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """40 blobs of 3 records over 4 subscriptions: records of several blobs share batches and the
    producers send different keys at the same time (was: one blob, one batch at a time). When a send
    fails, the blobs whose records all went out are deleted, the rest stay whole or as remainders."""
    hub.send_delay = 0.01
    records = [usage_record(f"sub-{i % 4}", n=i) for i in range(120)]
    for start in range(0, 120, 3):
        await memory_deadletter.put([encode(r).body for r in records[start : start + 3]])
    producers = [make_producer("ns", "usage", FakeEntraCredential()) for _ in range(4)]

    hub.fail_send_numbers = {12}  # a send in the middle of the run fails
    first = await replay_deadletters(memory_deadletter, producers)

    assert first.stopped_early
    sent_first = record_ids(hub.records)
    parked = record_ids(memory_deadletter.records)
    assert sorted(sent_first + parked) == sorted(record_ids(records))  # none lost
    assert not set(sent_first) & set(parked)  # a blob is deleted only once its records were sent
    assert first.replayed == len(sent_first)

    second = await replay_deadletters(memory_deadletter, producers)

    assert not second.stopped_early
    assert memory_deadletter.blobs == {}
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))  # each exactly once
    assert hub.send_calls - 1 < 40  # fewer sends than blobs: blobs share batches
    assert hub.max_in_flight > 1  # and several are in flight at once
    for batch in hub.sent:
        assert {r["caller"]["subscription_id"] for r in batch.records} == {batch.partition_key}


# -- the lines the delivery-at-risk alert reads (infra/analytics/alerts/delivery-at-risk.kql) -----


def _lines(caplog: pytest.LogCaptureFixture, prefix: str) -> list[dict[str, object]]:
    return [
        json.loads(r.getMessage().removeprefix(prefix + " "))
        for r in caplog.records
        if r.getMessage().startswith(prefix + " ")
    ]


async def test_a_run_the_hub_refuses_says_so_in_its_counters_line(
    hub: HubDouble,
    memory_deadletter: MemoryDeadLetterStore,
    mocker: MockerFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocker.patch("aoai_proxy.replay.BlobDeadLetterStore", return_value=memory_deadletter)
    await memory_deadletter.put([encode(usage_record()).body])
    hub.fail_sends = 99
    with caplog.at_level(logging.INFO, logger="aoai_proxy.replay"):
        refused = await run_replay(SETTINGS, FakeEntraCredential())
    hub.fail_sends = 0
    with caplog.at_level(logging.INFO, logger="aoai_proxy.replay"):
        sent = await run_replay(SETTINGS, FakeEntraCredential())

    assert (refused.send_failed, sent.send_failed) == (True, False)
    lines = _lines(caplog, "usage_delivery_counters")
    assert [(line["source"], line["replay_send_failed"]) for line in lines] == [
        ("replay", True),
        ("replay", False),
    ]
    assert [line["delta"]["replayed"] for line in lines] == [0, 1]  # type: ignore[index]


async def test_a_run_that_cannot_start_logs_a_failed_line_and_fails(
    hub: HubDouble,
    memory_deadletter: MemoryDeadLetterStore,
    mocker: MockerFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mocker.patch("aoai_proxy.replay.BlobDeadLetterStore", return_value=memory_deadletter)
    mocker.patch("azure.identity.aio.DefaultAzureCredential", autospec=True)
    broken = RuntimeError("AuthorizationPermissionMismatch")
    mocker.patch.object(memory_deadletter, "names", side_effect=broken)
    env = {
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
        "EVENTHUB_NAME": "usage",
        "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
        "WEBSITE_INSTANCE_ID": "timer-1",
    }
    with (
        caplog.at_level(logging.INFO, logger="aoai_proxy.replay"),
        pytest.raises(RuntimeError, match="AuthorizationPermissionMismatch"),
    ):
        await replay_from_env(env)

    (line,) = _lines(caplog, "usage_replay_failed")
    assert line["instance_id"] == "timer-1"
    assert "AuthorizationPermissionMismatch" in str(line["error"])
    assert [r.levelno for r in caplog.records if "usage_replay_failed" in r.getMessage()] == [
        logging.ERROR
    ]
