"""Faults: a failing hub never slows a request and never loses a record."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import time
from collections import Counter
from contextlib import AsyncExitStack
from types import FrameType
from typing import Any

import pytest
from pytest_mock import MockerFixture
from tests.delivery_doubles import (
    FakeEntraCredential,
    HubDouble,
    MemoryDeadLetterStore,
    eventhub_settings,
    eventually,
    make_sink,
    record_ids,
    usage_record,
)

from aoai_proxy.asgi import create_app
from aoai_proxy.replay import replay_deadletters
from aoai_proxy.sinks.base import UsageRecord
from aoai_proxy.sinks.eventhub import PRODUCERS, EventHubSink
from aoai_proxy.sinks.events import encode, make_producer


async def test_an_outage_then_recovery_delivers_every_record_exactly_once(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Records that arrive while the hub is known to be failing go to the store at once instead of
    waiting in memory for USAGE_DELIVERY_MAX_SECONDS; the replay sends them: each exactly once."""
    caplog.set_level(logging.INFO, logger="aoai_proxy.sinks.eventhub")
    sink = make_sink(memory_deadletter, max_in_memory_seconds=10.0)
    records = [usage_record(f"sub-{i % 4}", n=i) for i in range(300)]
    for record in records[:100]:
        sink.submit(record)
    await eventually(lambda: sink.counters.sent == 100, what="first 100 sent")

    hub.fail_for(0.8)
    for record in records[100:200]:  # arrive while the hub is failing
        sink.submit(record)
        await asyncio.sleep(0.004)
    await eventually(lambda: sink.counters.dead_lettered == 100, what="100 dead-lettered", within=2)
    assert sink.health()["max_ms_in_memory"] < 2_000  # not the 10 s in-memory deadline
    await eventually(lambda: sink.health()["state"] == "healthy", what="the probe to see it back")
    for record in records[200:]:
        sink.submit(record)
    await eventually(lambda: sink.counters.sent == 200, what="the last 100 sent")
    await sink.aclose()

    assert sorted(record_ids(hub.records)) == sorted(record_ids(records[:100] + records[200:]))
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records[100:200]))
    counters = sink.counters.as_dict()
    assert counters["dropped"] == 0
    messages = [r.getMessage() for r in caplog.records]
    degraded = [m for m in messages if m.startswith("usage_delivery_degraded ")]
    recovered = [m for m in messages if m.startswith("usage_delivery_recovered ")]
    assert len(degraded) == 1
    assert len(recovered) == 1
    assert json.loads(recovered[0].split(" ", 1)[1])["degraded_seconds"] > 0.5
    assert "EventHubError" in json.loads(degraded[0].split(" ", 1)[1])["error"]

    await replay_deadletters(
        memory_deadletter, [make_producer("ns", "usage", FakeEntraCredential())]
    )
    arrivals = Counter(record_ids(hub.records))
    assert set(arrivals) == set(record_ids(records))
    assert max(arrivals.values()) == 1  # exactly once per record id


class _SubmitProfile:
    """What one submit() call does, counted by sys.setprofile rather than timed: the count of
    Python and C calls does not depend on how busy the machine is, so it can be compared."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.reached: set[str] = set()  # the hub, the dead-letter store or a blocking call

    def run(self, sink: EventHubSink, record: UsageRecord) -> None:
        count = 0

        def profile(frame: FrameType, event: str, arg: object) -> None:
            nonlocal count
            if event == "call":
                count += 1
                code = frame.f_code
                if (
                    code.co_filename.endswith("delivery_doubles.py")
                    or "/azure/" in code.co_filename
                ):
                    self.reached.add(f"{code.co_filename}:{code.co_name}")
            elif event == "c_call":
                count += 1
                name = getattr(arg, "__qualname__", "")
                module = getattr(arg, "__module__", None) or ""
                if (name == "sleep" and module == "time") or module in {"_socket", "select"}:
                    self.reached.add(f"{module}.{name}")

        sys.setprofile(profile)
        try:
            sink.submit(record)
        finally:
            sys.setprofile(None)
        self.calls.append(count)


async def _submit_and_profile(sink: EventHubSink, count: int) -> tuple[_SubmitProfile, float]:
    """Profiles count submit() calls made over time, and the most CPU time the loop's thread spent
    between two wake-ups of a 1 ms ticker (CPU time, not wall time: a busy machine that preempts
    this process does not inflate it, while work done on the loop does)."""
    profiled = _SubmitProfile()
    worst_stall = 0.0
    running = True

    async def ticker() -> None:
        nonlocal worst_stall
        while running:
            before = time.thread_time()
            await asyncio.sleep(0.001)
            worst_stall = max(worst_stall, time.thread_time() - before)

    tick = asyncio.create_task(ticker())
    for i in range(count):
        profiled.run(sink, usage_record(f"sub-{i % 7}", n=i))
        if i % 20 == 0:
            await asyncio.sleep(0.002)  # requests arrive over time; the sender runs in between
    running = False
    await tick
    return profiled, worst_stall


@pytest.mark.usefixtures("no_gc_pauses")
async def test_request_latency_does_not_change_while_the_hub_is_failing(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """submit() is what a request pays: it must never reach the hub or the store (they are the
    background tasks' job), and it must do the same bounded work whether the hub is healthy or
    failing and however many records are already waiting for the dead-letter store."""
    caplog.set_level(logging.ERROR, logger="aoai_proxy.sinks.eventhub")  # the park warning aside
    hub.forget_calls = True
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.3)
    await _submit_and_profile(sink, 200)  # warm-up: producer built, code paths hot
    healthy, healthy_stall = await _submit_and_profile(sink, 1_000)

    hub.send_delay = 0.05  # each failing attempt hangs a while, like SDK retries do
    hub.fail_for(60)

    def hub_seen_failing() -> bool:
        sink.submit(usage_record("sub-0"))  # a send has to fail for the sink to know
        return sink.health()["state"] != "healthy"

    await eventually(hub_seen_failing, what="the hub seen as failing")
    failing, failing_stall = await _submit_and_profile(sink, 2_000)
    await eventually(lambda: sink.counters.dead_lettered > 0, what="dead letters")
    await sink.aclose()

    print(
        f"\ncalls per submit: max {max(healthy.calls)} healthy / {max(failing.calls)} failing; "
        f"worst loop CPU stall {healthy_stall * 1e3:.1f} / {failing_stall * 1e3:.1f} ms"
    )
    assert healthy.reached == set()
    assert failing.reached == set()
    assert max(failing.calls) <= max(healthy.calls) * 2
    # The same work for the 1st and the 2,000th parked record: nothing grows with the backlog
    # (a few submits do a little more: the one that fills a blob wakes the writer).
    assert statistics.median(failing.calls[-200:]) == statistics.median(failing.calls[:200])
    assert healthy_stall < 0.15  # the loop serving requests is never held by delivery work
    assert failing_stall < 0.15
    assert sink.counters.dropped == 0
    assert sink.counters.sent + sink.counters.dead_lettered == sink.counters.queued


async def test_queue_overflow_goes_to_the_dead_letter_store_and_replay_delivers_it(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    sink = make_sink(memory_deadletter, queue_max_records=10, max_in_memory_seconds=0.3)
    hub.fail_for(60)
    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(50)]
    for record in records:
        sink.submit(record)
    await eventually(lambda: sink.counters.dead_lettered == 50, what="50 dead-lettered")
    assert hub.records == []
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))
    await sink.aclose()

    hub.fail_until = 0  # the hub is back; the replay timer runs
    result = await replay_deadletters(
        memory_deadletter, [make_producer("ns", "usage", FakeEntraCredential())]
    )

    assert result.replayed == 50
    assert not result.stopped_early
    assert memory_deadletter.blobs == {}  # deleted only after the send
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
    for batch in hub.sent:
        assert {r["caller"]["subscription_id"] for r in batch.records} == {batch.partition_key}
    assert sink.counters.dropped == 0


async def test_an_outage_longer_than_the_bound_dead_letters_and_keeps_going(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.2)
    hub.fail_for(0.6)
    first = [usage_record(n=i) for i in range(20)]
    for record in first:
        sink.submit(record)
    await eventually(lambda: sink.counters.dead_lettered == 20, what="20 dead-lettered")
    started = time.monotonic()
    assert sink.health()["state"] == "degraded"

    await eventually(lambda: sink.health()["state"] == "healthy", what="the probe to see it back")
    later = [usage_record(n=i) for i in range(20)]
    for record in later:
        sink.submit(record)
    await eventually(lambda: sink.counters.sent == 20, what="20 sent after recovery")

    assert time.monotonic() - started < 5
    assert sink.health()["state"] == "healthy"
    assert sorted(record_ids(hub.records)) == sorted(record_ids(later))
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(first))
    await sink.aclose()


async def test_a_producer_that_cannot_be_built_dead_letters_instead(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    hub.client_class.side_effect = ValueError("bad namespace")
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.2)
    records = [usage_record(n=i) for i in range(5)]
    for record in records:
        sink.submit(record)
    await eventually(lambda: sink.counters.dead_lettered == 5, what="5 dead-lettered")
    await sink.aclose()
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))


async def test_shutdown_flushes_what_is_queued_to_a_healthy_hub(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    hub.send_delay = 0.01
    sink = make_sink(memory_deadletter)
    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(100)]
    for record in records:
        sink.submit(record)

    await sink.aclose()

    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
    assert memory_deadletter.blobs == {}
    assert hub.producer.close.await_count == PRODUCERS
    assert memory_deadletter.closed


async def test_shutdown_dead_letters_within_its_budget_when_the_hub_is_down(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    hub.send_delay = 0.05
    hub.fail_for(60)
    sink = make_sink(memory_deadletter, shutdown_seconds=1.0)
    records = [usage_record(n=i) for i in range(100)]
    for record in records:
        sink.submit(record)

    started = time.monotonic()
    await sink.aclose()
    elapsed = time.monotonic() - started

    assert elapsed < 1.5
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))
    assert sink.counters.dropped == 0


async def test_when_hub_and_store_both_fail_at_shutdown_the_log_keeps_every_record(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    hub.fail_for(60)
    memory_deadletter.fail = True
    sink = make_sink(memory_deadletter, shutdown_seconds=0.5)
    records = [usage_record(n=i) for i in range(5)]
    for record in records:
        sink.submit(record)

    await sink.aclose()

    # The one path to `dropped`: counted, and each record logged in full for recovery from logs.
    assert sink.counters.dropped == 5
    undeliverable = [
        json.loads(r.getMessage().removeprefix("usage record undeliverable "))
        for r in caplog.records
        if r.getMessage().startswith("usage record undeliverable ")
    ]
    assert sorted(record_ids(undeliverable)) == sorted(record_ids(records))


async def test_the_sink_can_be_used_again_after_aclose(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    sink = make_sink(memory_deadletter)
    sink.submit(usage_record())
    await sink.aclose()
    sink.submit(usage_record())
    await sink.aclose()
    assert len(hub.records) == 2
    assert hub.client_class.call_count == 2 * PRODUCERS  # fresh producers after the first closed


async def test_replay_deletes_a_blob_only_after_its_records_were_sent(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    records = [usage_record(f"sub-{i}", n=i) for i in range(3)]
    await memory_deadletter.put([encode(r).body for r in records])
    producer = make_producer("ns", "usage", FakeEntraCredential())
    hub.fail_sends = 1  # the first batch (sub-0) fails: nothing sent, the blob stays as it was

    first = await replay_deadletters(memory_deadletter, [producer])

    assert first.stopped_early
    assert first.replayed == 0
    assert list(memory_deadletter.blobs.values()) == [[encode(r).body for r in records]]

    hub.fail_send_numbers = {hub.send_calls + 3}  # the third batch of the next run fails
    second = await replay_deadletters(memory_deadletter, [producer])

    assert second.replayed == 2
    assert second.stopped_early
    # Only the unsent record stays parked, so the next run sends no duplicates.
    assert record_ids(memory_deadletter.records) == [records[2]["record_id"]]

    third = await replay_deadletters(memory_deadletter, [producer])

    assert third.replayed == 1
    assert memory_deadletter.blobs == {}
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))


async def test_shutdown_through_the_asgi_lifespan_sends_or_dead_letters_every_record(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, mocker: MockerFixture
) -> None:
    hub.send_delay = 0.02
    sinks: list[EventHubSink] = []

    def keep(**options: Any) -> EventHubSink:
        sinks.append(EventHubSink(**{**options, "shutdown_seconds": 1.0}))
        return sinks[-1]

    mocker.patch("aoai_proxy.deadletter.BlobDeadLetterStore", return_value=memory_deadletter)
    mocker.patch("aoai_proxy.sinks.eventhub.EventHubSink", side_effect=keep)
    settings = eventhub_settings(openai_endpoint="http://127.0.0.1:9", upstream_auth="none")
    app = create_app(lambda: settings)
    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(200)]

    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        [sink] = sinks
        hub.fail_for(0.3)  # part of them cannot be sent before shutdown starts
        for record in records:
            sink.submit(record)
    # lifespan exit: the sink was closed by the adapter

    delivered = record_ids(hub.records) + record_ids(memory_deadletter.records)
    assert sorted(delivered) == sorted(record_ids(records))
    assert sinks[0].counters.dropped == 0
    assert hub.producer.close.await_count == PRODUCERS


async def test_a_hung_hub_cannot_hold_a_record_in_memory_past_the_bound(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """The worst case docs/delivery.md quotes: a send that hangs at the deadline gets at most its
    minimum budget (1 s) plus the grace (1 s) before the record goes to the dead-letter store."""
    hub.send_delay = 30  # the send never answers
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.5)
    records = [usage_record(n=i) for i in range(20)]
    started = time.monotonic()
    for record in records:
        sink.submit(record)

    await eventually(lambda: sink.counters.dead_lettered == 20, what="20 dead-lettered")
    elapsed = time.monotonic() - started

    print(f"\nhung hub: records in memory for {elapsed:.2f} s (bound 0.5 s + 2 s)")
    assert elapsed < 0.5 + 2 + 0.5
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))
    await sink.aclose()


async def test_shutdown_during_a_send_dead_letters_only_what_was_not_sent(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """aclose() cancels a send cycle that outlives its flush budget: the batches already accepted
    count as sent and are not parked again; only the batch in flight and the rest are."""
    hub.send_delay = 0.2  # one round trip per partition key: 5 keys take 1 s, the budget is 0.25 s
    sink = make_sink(memory_deadletter, shutdown_seconds=0.5)
    records = [usage_record(f"sub-{i % 5}", n=i) for i in range(25)]
    for record in records:
        sink.submit(record)
    await eventually(lambda: hub.send_calls >= 1, what="the first batch sent")

    await sink.aclose()

    sent, parked = record_ids(hub.records), record_ids(memory_deadletter.records)
    assert sent  # the first batch got through before the budget ran out
    assert sorted(sent + parked) == sorted(record_ids(records))  # none lost
    assert not set(sent) & set(parked)  # none both sent and dead-lettered
    assert sink.counters.sent == len(sent)
    assert sink.counters.dead_lettered == len(parked)


async def test_when_hub_and_store_both_fail_memory_stays_bounded_and_the_log_keeps_the_rest(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """No unbounded buffer: with the hub and the store both failing, what waits for the store is
    capped; records beyond the cap are logged in full and counted as dropped, never silently lost."""
    hub.fail_for(60)
    memory_deadletter.fail = True
    sink = make_sink(memory_deadletter, queue_max_records=10, deadletter_max_records=50)
    records = [usage_record(n=i) for i in range(500)]
    for record in records:
        sink.submit(record)

    health = sink.health()
    assert health["in_memory"] <= 10
    assert health["awaiting_deadletter"] == 50
    assert sink.counters.dropped == 500 - 10 - 50
    undeliverable = [
        json.loads(r.getMessage().removeprefix("usage record undeliverable "))
        for r in caplog.records
        if r.getMessage().startswith("usage record undeliverable ")
    ]
    assert len(set(record_ids(undeliverable))) == 440
    await sink.aclose()
    assert sink.counters.dropped == 500  # the store never came back: all of them are in the log


async def test_after_a_send_cut_by_our_bound_a_fresh_producer_is_built(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    """A send that outlived the SDK's own timeout leaves its AMQP link in an unknown state: the old
    producers are closed aside and the next attempt uses new ones, which deliver once the hub is
    back."""
    hub.send_delay = 30  # hangs past the SDK's timeout: only our bound ends it
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.3)
    first = usage_record(n=1)
    sink.submit(first)
    await eventually(lambda: sink.counters.dead_lettered == 1, what="the hung record parked")
    await eventually(
        lambda: hub.producer.close.await_count == PRODUCERS, what="the old producers closed"
    )

    hub.send_delay = 0
    second = usage_record(n=2)
    sink.submit(second)
    await eventually(lambda: sink.counters.sent == 1, what="the next record sent")
    await sink.aclose()

    assert hub.client_class.call_count == 2 * PRODUCERS
    assert record_ids(hub.records) == [second["record_id"]]
    assert record_ids(memory_deadletter.records) == [first["record_id"]]


async def test_a_record_submitted_while_the_clients_close_is_not_stranded(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    sink = make_sink(memory_deadletter)
    sink.submit(usage_record(n=1))
    await eventually(lambda: sink.counters.sent == 1, what="the first record sent")
    late = usage_record(n=2)

    async def close_while_a_request_ends() -> None:
        if sink.counters.queued == 1:  # a request finishing during shutdown: no writer task left
            sink.submit(late)

    hub.producer.close.side_effect = close_while_a_request_ends
    await sink.aclose()

    assert sink.health()["awaiting_deadletter"] == 0  # not left in memory with nobody to write it
    assert sink.counters.dropped == 1
    assert any(late["record_id"] in r.getMessage() for r in caplog.records)


async def test_records_waiting_on_a_failing_store_are_visible_while_they_are_at_risk(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Hub and store both down: nothing is dropped yet (the records wait for the store), so the
    gauges and a WARNING line must show them at risk, counted from submit, long before shutdown."""
    hub.fail_for(60)
    memory_deadletter.fail = True
    sink = make_sink(memory_deadletter, max_in_memory_seconds=0.2, at_risk_log_seconds=0.6)
    records = [usage_record(n=i) for i in range(30)]
    for record in records:
        sink.submit(record)
        await asyncio.sleep(0.01)

    await eventually(
        lambda: any(r.getMessage().startswith("usage_delivery_at_risk ") for r in caplog.records),
        within=5,
        what="the at-risk line",
    )
    health = sink.health()
    [line] = [
        json.loads(r.getMessage().split(" ", 1)[1])
        for r in caplog.records
        if r.getMessage().startswith("usage_delivery_at_risk ")
    ]

    assert line["awaiting_deadletter"] == 30
    assert line["at_risk"] == 30
    assert line["oldest_ms_awaiting_deadletter"] >= 600  # the oldest, from its submit
    assert line["counters"]["dropped"] == 0
    assert health["in_memory"] == 0  # the hub is known down: none waits for it
    assert health["oldest_ms_awaiting_deadletter"] > line["oldest_ms_awaiting_deadletter"]
    assert health["max_ms_in_memory"] == 0  # none has left memory yet

    memory_deadletter.fail = False  # the store is back: the same records, each written once
    await eventually(lambda: sink.counters.dead_lettered == 30, what="30 dead-lettered")
    health = sink.health()
    assert health["at_risk"] == 0
    assert health["oldest_ms_awaiting_deadletter"] == 0
    assert health["max_ms_in_memory"] >= 600  # how long the oldest was at risk
    await sink.aclose()
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))


async def test_during_an_outage_dead_letter_blobs_gather_records_within_bounds(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, mocker: MockerFixture
) -> None:
    """Records arriving one by one while the hub is down share blobs (was: ~2 records a blob), each
    blob bounded in records and bytes, and none waits in memory longer than the gathering."""
    mocker.patch("aoai_proxy.sinks.eventhub.DEADLETTER_BLOB_RECORDS", 40)
    mocker.patch("aoai_proxy.sinks.eventhub.DEADLETTER_BLOB_BYTES", 200_000)
    hub.fail_for(60)
    sink = make_sink(memory_deadletter, max_in_memory_seconds=10.0, deadletter_linger_seconds=0.3)
    small = [usage_record(n=i) for i in range(150)]
    for record in small:  # ~1.5 s of traffic at 100 records/s
        sink.submit(record)
        await asyncio.sleep(0.01)
    await eventually(lambda: sink.counters.dead_lettered == 150, what="150 dead-lettered")
    small_blobs = list(memory_deadletter.blobs.values())
    large = [usage_record(n=i, prompt="x" * 30_000) for i in range(20)]  # ~30 KB each
    for record in large:
        sink.submit(record)
    await eventually(lambda: sink.counters.dead_lettered == 170, what="170 dead-lettered")
    large_blobs = list(memory_deadletter.blobs.values())[len(small_blobs) :]
    await sink.aclose()

    print(f"\n150 records over 1.5 s -> {len(small_blobs)} blobs; 20 x 30 KB -> {len(large_blobs)}")
    assert len(small_blobs) <= 10
    assert max(len(blob) for blob in small_blobs) <= 40
    assert all(sum(len(body) + 1 for body in blob) <= 200_000 for blob in large_blobs)
    assert len(large_blobs) >= 3  # cut by bytes, not by count
    assert sink.health()["max_ms_in_memory"] < 1_500  # 0.3 s of gathering, not 10 s in memory
    stored = record_ids(memory_deadletter.records)
    assert sorted(stored) == sorted(record_ids(small + large))


async def test_a_hub_that_connects_but_refuses_sends_is_probed_ever_less_often(
    hub: HubDouble, memory_deadletter: MemoryDeadLetterStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Throttling: the probe's connection succeeds, the next send fails. The back-off keeps growing
    until a send succeeds, so the sink does not flap every initial back-off; no record is lost."""
    caplog.set_level(logging.INFO, logger="aoai_proxy.sinks.eventhub")
    hub.fail_sends = 1_000_000
    sink = make_sink(memory_deadletter, retry_initial_seconds=0.02, retry_max_seconds=0.32)
    records = [usage_record(n=i) for i in range(150)]
    for record in records:  # 1.5 s of traffic
        sink.submit(record)
        await asyncio.sleep(0.01)
    await eventually(lambda: sink.counters.dead_lettered == 150, what="150 dead-lettered")
    await sink.aclose()

    recoveries = [
        r for r in caplog.records if r.getMessage().startswith("usage_delivery_recovered")
    ]
    print(f"\n{len(recoveries)} probe successes, {hub.failed_sends} failed sends in 1.5 s")
    assert len(recoveries) <= 10  # 0.02, 0.04, ... 0.32 s apart; it was one every 0.02 s (~50)
    assert sorted(record_ids(memory_deadletter.records)) == sorted(record_ids(records))
