"""A hub outage with the real azure-eventhub SDK: once the hub is known to be failing, new records
reach the dead-letter store (Azurite) within about a second instead of waiting in memory for
USAGE_DELIVERY_MAX_SECONDS, so a kill without a signal loses at most what one blob write holds.

The producer is the SDK's own EventHubProducerClient (pure-Python AMQP) pointed at 127.0.0.1 with
`custom_endpoint_address`: one endpoint refuses connections, one accepts TCP and never answers (the
TLS handshake hangs). Nothing is mocked; the dead-letter store is BlobDeadLetterStore on Azurite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import TransportType
from tests.delivery_doubles import Azurite, FakeEntraCredential, make_sink, usage_record
from tests.integration.test_deadletter_azurite import names_of, store_on

from aoai_proxy.deadletter import BlobDeadLetterStore
from aoai_proxy.sinks.eventhub import EventHubSink

pytestmark = pytest.mark.azurite

RECORDS = 40  # arriving over about a second while the hub is known to be down
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def refusing_endpoint() -> Iterator[int]:
    """A bound port that does not listen: every connection is refused (RST), as from a hub that is
    down or unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_endpoint() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def outage_sink(
    azurite: Azurite, port: int, **options: Any
) -> tuple[EventHubSink, BlobDeadLetterStore]:
    store = store_on(azurite, FakeEntraCredential(), container=f"outage-{uuid.uuid4().hex[:12]}")
    sink = make_sink(
        store,
        # With a custom endpoint the SDK defaults to AMQP over WebSockets; production uses AMQP
        # over TLS (port 5671), so the test does too.
        custom_endpoint_address=f"sb://127.0.0.1:{port}",
        transport_type=TransportType.Amqp,
        retry_max_seconds=1.0,
        **options,
    )
    return sink, store


async def _outage(sink: EventHubSink) -> dict[str, Any]:
    """One record finds the hub down; then RECORDS arrive. Returns the measurements."""
    first = usage_record(n=0)
    started = time.monotonic()
    sink.submit(first)
    while sink.health()["state"] != "degraded":
        assert time.monotonic() - started < 30, "the failing hub was never noticed"
        await asyncio.sleep(0.005)
    known_down = time.monotonic() - started

    reached: dict[int, float] = {}  # dead-lettered count -> when it was first seen

    async def watch() -> None:
        while sink.counters.dead_lettered <= RECORDS:  # the first one, then RECORDS more
            reached.setdefault(sink.counters.dead_lettered, time.monotonic())
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    records, submitted, in_memory = [], [], []
    for n in range(1, RECORDS + 1):
        record = usage_record(f"sub-{n % 5}", n=n)
        sink.submit(record)
        records.append(record)
        submitted.append(time.monotonic())
        in_memory.append(sink.health()["in_memory"])
        await asyncio.sleep(0.025)
    async with asyncio.timeout(10):
        await watcher
    reached.setdefault(sink.counters.dead_lettered, time.monotonic())

    def dead_lettered_by(count: int) -> float:
        return min(at for seen, at in reached.items() if seen >= count)

    # The first record went to the store when the send failed; the writer keeps submit order.
    waits = [dead_lettered_by(n + 1) - submitted[n - 1] for n in range(1, RECORDS + 1)]
    health = sink.health()
    return {
        "known_down": known_down,
        "waits": waits,
        "in_memory": in_memory,
        "health": health,
        "ids": [first["record_id"]] + [r["record_id"] for r in records],
    }


async def _stored(store: BlobDeadLetterStore) -> list[list[str]]:
    """The record ids of each blob."""
    return [
        [json.loads(body)["record_id"] for body in await store.get(name)]
        for name in await names_of(store)
    ]


@pytest.mark.parametrize(
    ("endpoint", "max_in_memory_seconds"),
    [
        # The SDK's own retries (2) end in an AuthenticationError after ~4 s; the in-memory bound is
        # the default 10 s, so waiting for it would show.
        ("refusing_endpoint", 10.0),
        # Only our bound ends a send that never hears back: ~2 s with a 1 s in-memory bound.
        ("silent_endpoint", 1.0),
    ],
)
async def test_once_the_hub_is_known_down_records_reach_the_store_within_a_second(
    azurite: Azurite, request: pytest.FixtureRequest, endpoint: str, max_in_memory_seconds: float
) -> None:
    port: int = request.getfixturevalue(endpoint)
    sink, store = outage_sink(azurite, port, max_in_memory_seconds=max_in_memory_seconds)
    try:
        measured = await _outage(sink)
        blobs = await _stored(store)
    finally:
        await sink.aclose()

    waits = measured["waits"]
    print(
        f"\n{endpoint}: hub known down after {measured['known_down']:.2f} s; then each record "
        f"reached the store in {min(waits):.2f}-{max(waits):.2f} s "
        f"(median {sorted(waits)[len(waits) // 2]:.2f} s); "
        f"max_ms_in_memory {measured['health']['max_ms_in_memory']:.0f}; {len(blobs)} blob(s)"
    )
    assert max(waits) < 1.5  # the writer's gathering (0.5 s) and one blob write, not 10 s
    assert measured["in_memory"] == [0] * RECORDS  # none waits for the hub while it is down
    stored = [record_id for blob in blobs for record_id in blob]
    assert sorted(stored) == sorted(measured["ids"])  # each once, in the store
    assert len(blobs) <= 5  # gathered: ~1 s of traffic in blobs of 0.5 s, not one blob a record
    assert sink.counters.dropped == 0
    assert sink.counters.sent == 0
    # Counted from submit to the store: the first record waited until the failure was known.
    assert measured["health"]["max_ms_in_memory"] >= measured["known_down"] * 1000 * 0.9


async def test_a_kill_without_a_signal_mid_outage_loses_only_the_last_fraction_of_a_second(
    azurite: Azurite, refusing_endpoint: int
) -> None:
    """SIGKILL, as the platform ends a Functions worker (no shutdown signal), 3 s after the hub is
    known down, with records arriving at ~100/s: only the records of the last blob's gathering and
    write are lost (was: every record of the last USAGE_DELIVERY_MAX_SECONDS, 200 of 200)."""
    container = f"kill-{uuid.uuid4().hex[:12]}"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.kill_mid_outage",
        azurite.account_url,
        azurite.ca_file,
        container,
        str(refusing_endpoint),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])},
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    submitted: list[dict[str, Any]] = []
    try:
        known_down: float | None = None
        async with asyncio.timeout(60):
            while known_down is None or time.monotonic() < known_down + 3:
                line = json.loads(await child.stdout.readline())
                submitted.append(line)
                if known_down is None and line["state"] == "degraded":
                    known_down = time.monotonic()
        child.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        rest = await child.stdout.read()  # what it printed before it died
        submitted += [json.loads(line) for line in rest.splitlines() if line.strip()]
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()

    store = store_on(azurite, FakeEntraCredential(), container=container)
    try:
        stored = {record_id for blob in await _stored(store) for record_id in blob}
    finally:
        await store.aclose()
    lost = [line for line in submitted if line["id"] not in stored]
    ages = [killed_at - line["at"] for line in lost]
    print(
        f"\nkilled {len(submitted)} records in ({len(submitted) - len(lost)} in the store): "
        f"lost {len(lost)}, submitted {min(ages, default=0):.2f}-{max(ages, default=0):.2f} s "
        "before the kill"
    )
    assert len(submitted) > 300
    assert max(ages, default=0) < 1.5  # the last blob's gathering (0.5 s) and write, not 10 s
    assert len(lost) < 150
