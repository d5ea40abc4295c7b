"""Records on the Event Hubs wire: keyless producer, batches per partition key, the size limit."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from azure.eventhub.exceptions import EventHubError
from tests.delivery_doubles import FakeEntraCredential, HubDouble, record_ids, usage_record

from aoai_proxy.sinks.events import (
    CONTENT_TYPE,
    MAX_EVENT_BYTES,
    decode,
    encode,
    fit,
    make_producer,
    send_in_batches,
)


def test_producer_is_keyless_on_the_namespace_and_hub_with_the_shared_credential(
    hub: HubDouble,
) -> None:
    credential = FakeEntraCredential()
    producer = make_producer("my-usage-ns.servicebus.windows.net", "usage", credential)

    assert producer is hub.producer
    hub.client_class.assert_called_once()
    kwargs = hub.client_class.call_args.kwargs
    assert kwargs["fully_qualified_namespace"] == "my-usage-ns.servicebus.windows.net"
    assert kwargs["eventhub_name"] == "usage"
    assert kwargs["credential"] is credential
    # SDK retries are on and short: our own loop handles the long outages.
    assert kwargs["retry_total"] >= 1
    assert kwargs["retry_backoff_max"] <= 10
    assert kwargs["retry_mode"] == "exponential"
    hub.client_class.from_connection_string.assert_not_called()


async def test_one_batch_per_partition_key_in_arrival_order(hub: HubDouble) -> None:
    records = [
        usage_record("sub-a", n=1),
        usage_record("sub-b", n=2),
        usage_record("sub-a", n=3),
        usage_record(None, n=4),  # called directly, not through APIM: no key, round-robin
    ]
    pending = [encode(record) for record in records]

    too_large = await send_in_batches([make_producer("ns", "hub", FakeEntraCredential())], pending)

    assert too_large == []
    assert pending == []
    assert [
        (b.partition_key, [r["caller"]["request_id"] for r in b.records]) for b in hub.sent
    ] == [
        ("sub-a", ["req-1", "req-3"]),
        ("sub-b", ["req-2"]),
        (None, ["req-4"]),
    ]
    keys = [call.kwargs["partition_key"] for call in hub.producer.create_batch.call_args_list]
    assert keys == ["sub-a", "sub-b", None]
    assert all(t == CONTENT_TYPE for b in hub.sent for t in b.content_types)
    assert [r["record_id"] for r in hub.records] == [records[i]["record_id"] for i in (0, 2, 1, 3)]


async def test_a_full_batch_is_sent_and_the_rest_go_in_new_batches(hub: HubDouble) -> None:
    hub.max_size_in_bytes = 2_000  # about three of these records per batch
    records = [usage_record("sub-a", n=i) for i in range(10)]
    pending = [encode(record) for record in records]

    await send_in_batches([make_producer("ns", "hub", FakeEntraCredential())], pending)

    assert len(hub.sent) > 1
    assert all(batch.size_in_bytes <= 2_000 for batch in hub.sent)
    assert [r["record_id"] for r in hub.records] == [r["record_id"] for r in records]


async def test_a_failed_send_leaves_exactly_the_unsent_records_pending(hub: HubDouble) -> None:
    records = [usage_record("sub-a"), usage_record("sub-b"), usage_record("sub-c")]
    pending = [encode(record) for record in records]
    producer = make_producer("ns", "hub", FakeEntraCredential())
    hub.fail_send_numbers = {2}

    with pytest.raises(EventHubError):
        await send_in_batches([producer], pending)

    assert [e.record_id for e in pending] == [r["record_id"] for r in records[1:]]
    await send_in_batches([producer], pending)  # the retry sends no duplicate
    assert [r["record_id"] for r in hub.records] == [r["record_id"] for r in records]


def test_captured_text_is_cut_to_fit_an_event_keeping_length_and_sha256() -> None:
    prompt = 'say "hi" ✓\n' * 200_000  # 2.6 MB, with JSON escapes and multi-byte characters
    record = usage_record("sub-a", prompt=prompt)

    encoded = encode(record)

    assert len(encoded.body) <= MAX_EVENT_BYTES
    sent = json.loads(encoded.body)
    captured = sent["capture"]["prompt"]
    assert captured["truncated"] is True
    assert captured["bytes"] == len(prompt.encode())
    assert captured["sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert prompt.startswith(captured["text"])
    assert len(captured["text"]) > 100_000  # cut to fit, not emptied
    assert sent["capture"]["completion"] == {"text": "short answer"}  # small parts untouched
    assert {k: v for k, v in sent.items() if k != "capture"} == {
        k: v for k, v in record.items() if k != "capture"
    }
    assert encoded.record_id == record["record_id"]


def test_an_already_truncated_capture_keeps_its_original_length_and_hash() -> None:
    record = usage_record("sub-a")
    record["capture"] = {
        "prompt": {"text": "x" * 5_000, "truncated": True, "bytes": 9_999, "sha256": "abc"}
    }
    body = encode(record).body

    cut = json.loads(fit(body, 1_000))

    assert len(fit(body, 1_000)) <= 1_000
    assert cut["capture"]["prompt"]["bytes"] == 9_999
    assert cut["capture"]["prompt"]["sha256"] == "abc"


def test_a_record_without_capture_is_never_cut() -> None:
    body = encode(usage_record("sub-a")).body
    assert fit(body, 10) == body


async def test_a_hub_with_a_smaller_limit_gets_texts_cut_to_its_own_limit(hub: HubDouble) -> None:
    hub.max_size_in_bytes = 262_144  # Event Hubs Basic: 256 KB
    record = usage_record("sub-a", prompt="p" * 600_000)
    pending = [encode(record)]

    too_large = await send_in_batches([make_producer("ns", "hub", FakeEntraCredential())], pending)

    assert too_large == []
    [sent] = hub.records
    assert sent["record_id"] == record["record_id"]
    assert sent["capture"]["prompt"]["truncated"] is True
    assert sent["capture"]["prompt"]["bytes"] == 600_000
    assert hub.sent[0].size_in_bytes <= 262_144


async def test_a_record_that_fits_no_event_is_returned_not_dropped(hub: HubDouble) -> None:
    hub.max_size_in_bytes = 1_000
    big = usage_record("sub-a")
    big["request"]["deployment"] = "d" * 2_000  # too large, and no captured text to cut
    small = usage_record("sub-a")
    pending = [encode(big), encode(small)]

    too_large = await send_in_batches([make_producer("ns", "hub", FakeEntraCredential())], pending)

    assert [e.record_id for e in too_large] == [big["record_id"]]
    assert [r["record_id"] for r in hub.records] == [small["record_id"]]


def test_decode_restores_id_and_key_from_stored_bytes() -> None:
    record = usage_record("sub-z")
    body = encode(record).body
    decoded = decode(body)
    assert (decoded.record_id, decoded.partition_key, decoded.body) == (
        record["record_id"],
        "sub-z",
        body,
    )


async def test_a_failed_send_keeps_a_record_too_large_for_any_event_pending(hub: HubDouble) -> None:
    """A record that fits no event is set aside while the other keys are sent; when a later send
    raises, it must still be in `pending` (neither sent nor returned: it would be lost)."""
    hub.max_size_in_bytes = 1_000
    big = usage_record("sub-a")
    big["request"]["deployment"] = "d" * 2_000  # too large, and no captured text to cut
    small = usage_record("sub-b")
    pending = [encode(big), encode(small)]
    hub.fail_sends = 1  # the sub-b batch, the first one actually sent

    with pytest.raises(EventHubError):
        await send_in_batches([make_producer("ns", "hub", FakeEntraCredential())], pending)

    assert sorted(e.record_id for e in pending) == sorted([big["record_id"], small["record_id"]])


async def test_no_batch_starts_after_the_deadline_and_the_rest_stays_pending(
    hub: HubDouble,
) -> None:
    """A long cycle on a healthy hub (one round trip per partition key) hands control back at the
    deadline, so the caller can dead-letter what is due instead of counting a failure."""
    hub.send_delay = 0.05
    pending = [encode(usage_record(f"sub-{i}")) for i in range(10)]
    deadline = time.monotonic() + 0.12

    too_large = await send_in_batches(
        [make_producer("ns", "hub", FakeEntraCredential())], pending, deadline=deadline
    )

    assert too_large == []
    # How many fit before the deadline depends on how busy the machine is; when each started does not.
    assert 1 <= len(hub.sent) <= 4
    assert all(started < deadline for started in hub.send_started_at)
    assert time.monotonic() >= deadline  # it stopped because of the deadline, not for lack of work
    assert len(pending) == 10 - len(hub.sent)
    timeouts = [call.kwargs["timeout"] for call in hub.producer.send_batch.call_args_list]
    assert all(timeout >= 1.0 for timeout in timeouts)  # the SDK's timeout: the time left, >= 1 s


async def test_several_producers_send_other_keys_at_once_one_batch_per_key_in_flight(
    hub: HubDouble,
) -> None:
    """The SDK sends one batch at a time per producer: with many partition keys, the producers
    share them, never two batches of one key at once, so each key keeps its arrival order."""
    hub.send_delay = 0.05
    hub.max_size_in_bytes = 2_000  # about three records per batch: keys need several batches
    records = [usage_record(f"sub-{i % 8}", n=i) for i in range(48)]
    pending = [encode(record) for record in records]
    producers = [make_producer("ns", "hub", FakeEntraCredential()) for _ in range(4)]

    await send_in_batches(producers, pending)

    assert pending == []
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
    assert hub.max_in_flight == 4
    assert hub.key_overlaps == 0
    # Counted, not timed: one producer at a time would start every send with none in flight.
    print(f"\n{hub.overlapped_sends} of {len(hub.sent)} sends started while others were in flight")
    assert hub.overlapped_sends >= len(hub.sent) * 3 // 4
    for key in {r["caller"]["subscription_id"] for r in records}:
        sent_order = [
            r["caller"]["request_id"] for r in hub.records if r["caller"]["subscription_id"] == key
        ]
        arrival = [
            r["caller"]["request_id"] for r in records if r["caller"]["subscription_id"] == key
        ]
        assert sent_order == arrival


async def test_when_one_producer_fails_the_others_stop_and_pending_keeps_the_unsent(
    hub: HubDouble,
) -> None:
    hub.send_delay = 0.02
    records = [usage_record(f"sub-{i % 8}", n=i) for i in range(16)]
    pending = [encode(record) for record in records]
    producers = [make_producer("ns", "hub", FakeEntraCredential()) for _ in range(4)]
    hub.fail_send_numbers = {3}

    with pytest.raises(EventHubError):
        await send_in_batches(producers, pending)

    sent = record_ids(hub.records)
    assert sorted(sent + [e.record_id for e in pending]) == sorted(record_ids(records))
    assert not set(sent) & {e.record_id for e in pending}


def test_a_subscription_id_longer_than_a_partition_key_may_be_becomes_one_stable_short_key() -> (
    None
):
    long_id = "s" * 512  # the longest caller string a record keeps
    first, second = encode(usage_record(long_id, n=1)), encode(usage_record(long_id, n=2))
    other = encode(usage_record("t" * 512, n=3))

    assert first.partition_key is not None
    assert len(first.partition_key) <= 128
    assert first.partition_key == second.partition_key != other.partition_key
    # Ordinary ids are the key as they are, like APIM's own gateway events.
    assert encode(usage_record("s" * 128, n=4)).partition_key == "s" * 128
