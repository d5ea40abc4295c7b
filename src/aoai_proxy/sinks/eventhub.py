"""Event Hub sink: records leave the request path at once and are never lost.

submit() serialises the record and puts it on a bounded queue; nothing else happens on the request
path. A background task on the same loop batches and sends (sinks/events.py), retrying with backoff
while each record is younger than USAGE_DELIVERY_MAX_SECONDS. A record that is older than that, or
that finds the queue full, is handed to a second task that writes it to the Blob dead-letter store,
which the replay timer empties later. aclose() flushes within a bounded time, dead-letters the rest,
and only a record that neither the hub nor the store would take is logged in full and counted as
dropped. docs/delivery.md states the guarantees and the residual risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.eventhub.aio import EventHubProducerClient

from ..deadletter import DeadLetterStore
from .base import UsageRecord
from .counters import CounterLog, DeliveryCounters
from .events import MIN_SEND_SECONDS, Encoded, encode, make_producer, send_in_batches

log = logging.getLogger(__name__)

DEADLETTER_BLOB_RECORDS = 200  # records per dead-letter blob
# Producers per process, each its own AMQP connection: the SDK sends one batch at a time per
# producer and a batch carries one partition key, so this many keys are sent at the same time.
PRODUCERS = 4
SEND_GRACE_SECONDS = 1.0  # our hard bound on one send attempt, beyond the SDK's own timeout
CLOSE_SECONDS = 5.0  # bound on stopping a task or closing the producer at shutdown
PARK_LOG_SECONDS = 1.0  # at most one "to the dead-letter store" line a second


@dataclass(slots=True)
class _Item:
    encoded: Encoded
    queued_at: float  # time.monotonic() at submit
    deadline: float  # sent by then, or dead-lettered


class EventHubSink:
    def __init__(
        self,
        *,
        namespace: str,
        eventhub_name: str,
        credential: AsyncTokenCredential,
        deadletter: DeadLetterStore,
        instance_id: str = "local",
        queue_max_records: int = 10_000,
        deadletter_max_records: int = 50_000,
        max_in_memory_seconds: float = 10.0,
        log_seconds: float = 60.0,
        shutdown_seconds: float = 10.0,
        max_batch_records: int = 500,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 5.0,
    ) -> None:
        self._namespace = namespace
        self._eventhub_name = eventhub_name
        self._credential = credential
        self._deadletter = deadletter
        self._instance_id = instance_id
        self._max_in_memory = max_in_memory_seconds
        self._parked_max = deadletter_max_records
        self._log_seconds = log_seconds
        self._shutdown_seconds = shutdown_seconds
        self._max_batch = max_batch_records
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self.counters = DeliveryCounters()
        self._counter_log = CounterLog(log, instance_id)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_max_records)
        self._pending: list[_Item] = []  # taken off the queue, being sent
        self._parked: list[Encoded] = []  # waiting for the dead-letter writer
        self._parked_event = asyncio.Event()  # set: there is something to write
        self._parked_empty = asyncio.Event()  # set: nothing waits for the dead-letter store
        self._parked_empty.set()
        self._parked_logged_at = -math.inf
        self._parked_unlogged = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._producers: list[EventHubProducerClient] = []  # built on first use, PRODUCERS of them
        self._discarded: set[asyncio.Task[None]] = set()  # producers being closed aside
        self._degraded_since: float | None = None
        self._next_attempt = 0.0
        self._backoff = retry_initial_seconds
        self._expiry_cap = math.inf  # lowered by aclose() to flush within its budget
        self._max_seconds_in_memory = 0.0

    # -- the request path ------------------------------------------------------------------------

    def submit(self, record: UsageRecord) -> None:
        self.counters.queued += 1
        encoded: Encoded | None = None
        try:
            encoded = encode(record)
            now = time.monotonic()
            item = _Item(encoded, now, now + self._max_in_memory)
            if self._closing:
                self._park([item.encoded], "the sink is shutting down")
                return
            self._ensure_started()
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self._park([item.encoded], "the in-memory queue is full")
        except Exception:  # a sink must never fail a request
            log.exception("usage record could not be queued")
            # The wire JSON when there is one (no running loop), so the log line parses as sent.
            self._last_resort([encoded or Encoded("", None, repr(record).encode())])

    # -- lifecycle -------------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Starts the background tasks on the running loop; restarts one that died (never twice)."""
        jobs = {
            "usage-eventhub-sender": self._deliver_forever,
            "usage-deadletter-writer": self._dead_letter_forever,
            "usage-delivery-counters": self._report_forever,
        }
        for name, job in jobs.items():
            task = self._tasks.get(name)
            if task is not None and not task.done():
                continue
            if task is not None and not task.cancelled() and task.exception() is not None:
                log.error(
                    "usage delivery task %s failed; restarting it", name, exc_info=task.exception()
                )
            self._tasks[name] = asyncio.get_running_loop().create_task(job(), name=name)

    async def aclose(self) -> None:
        """Sends what is queued within half the budget, dead-letters the rest within the other half."""
        if not self._tasks:
            await self._close_clients()
            return
        self._closing = True
        start = time.monotonic()
        self._expiry_cap = start + self._shutdown_seconds / 2
        with contextlib.suppress(TimeoutError):  # every queued record sent or parked, or time up
            async with asyncio.timeout(self._expiry_cap - start):
                await self._queue.join()
        await _cancel(self._tasks.pop("usage-eventhub-sender"))
        leftovers = self._pending
        self._pending = []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        for _ in leftovers:
            self._queue.task_done()
        if leftovers:
            self._park([item.encoded for item in leftovers], "shutdown")
        with contextlib.suppress(TimeoutError):  # every parked record written, or time up
            async with asyncio.timeout(max(start + self._shutdown_seconds - time.monotonic(), 0)):
                await self._parked_empty.wait()
        for task in self._tasks.values():
            await _cancel(task)
        self._tasks = {}
        await self._close_clients()
        if self._parked:  # also what was submitted while the clients were closing: no writer now
            self._last_resort(self._parked)
            self._parked = []
            self._parked_empty.set()
        self._counter_log.emit(self.counters, final=True, **self._gauges())
        self._expiry_cap = math.inf
        self._closing = False

    async def _close_clients(self) -> None:
        producers, self._producers = self._producers, []
        for producer in producers:
            await _close_producer(producer)
        if self._discarded:
            await asyncio.wait(self._discarded, timeout=CLOSE_SECONDS)
        await self._deadletter.aclose()

    def _discard_producers(self) -> None:
        """Our bound cut a send the SDK did not end itself: its link is in an unknown state, so the
        next attempt builds fresh producers; the old ones are closed aside, never on the send path."""
        producers, self._producers = self._producers, []
        for producer in producers:
            task = asyncio.get_running_loop().create_task(_close_producer(producer))
            self._discarded.add(task)  # a reference until done, or the task may be collected
            task.add_done_callback(self._discarded.discard)

    # -- sending ---------------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            if not self._pending:
                self._pending.append(await self._queue.get())
            while len(self._pending) < self._max_batch and not self._queue.empty():
                self._pending.append(self._queue.get_nowait())
            now = time.monotonic()
            expired = [item for item in self._pending if self._deadline(item) <= now]
            if expired:
                self._pending = [item for item in self._pending if self._deadline(item) > now]
                self._park([item.encoded for item in expired], "not sent in time")
                for _ in expired:
                    self._queue.task_done()
            if not self._pending:
                continue
            if now < self._next_attempt:  # the hub is failing: wait for the next try or a deadline
                await asyncio.sleep(min(self._next_attempt, self._deadline(self._pending[0])) - now)
                continue
            await self._attempt()

    def _deadline(self, item: _Item) -> float:
        return min(item.deadline, self._expiry_cap)

    async def _attempt(self) -> None:
        if self._degraded_since is not None:
            self.counters.retried += len(self._pending)
        now = time.monotonic()
        # Until the oldest record's deadline, and at least one send of MIN_SEND_SECONDS.
        stop_at = max(self._deadline(self._pending[0]), now + MIN_SEND_SECONDS)
        unsent = [item.encoded for item in self._pending]
        try:
            if not self._producers:  # created on the running loop, on first use
                self._producers = [
                    make_producer(self._namespace, self._eventhub_name, self._credential)
                    for _ in range(PRODUCERS)
                ]
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296).
            async with asyncio.timeout(stop_at - now + SEND_GRACE_SECONDS):
                too_large = await send_in_batches(self._producers, unsent, deadline=stop_at)
        except Exception as exc:
            self._settle(unsent, [])
            self._failed(exc)
            if isinstance(exc, TimeoutError):  # ours; the SDK raises OperationTimeoutError
                self._discard_producers()
            return
        except BaseException:  # cancelled by aclose(): the batches already accepted count as sent
            self._settle(unsent, [])
            raise
        self._settle(unsent, too_large)
        if too_large:
            self._park(too_large, "larger than an event even with captured texts cut")
        self._recovered()

    def _settle(self, unsent: list[Encoded], too_large: list[Encoded]) -> None:
        keep = {id(encoded) for encoded in unsent}
        gone = keep | {id(encoded) for encoded in too_large}
        now = time.monotonic()
        for item in self._pending:
            if id(item.encoded) not in gone:
                self.counters.sent += 1
                self._max_seconds_in_memory = max(self._max_seconds_in_memory, now - item.queued_at)
            if id(item.encoded) not in keep:
                self._queue.task_done()  # settled: sent, or parked as too large
        self._pending = [item for item in self._pending if id(item.encoded) in keep]

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._degraded_since is None:
            self._degraded_since = now
            self._log_state("usage_delivery_degraded", logging.WARNING, error=repr(exc)[:500])
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self._retry_max)

    def _recovered(self) -> None:
        if self._degraded_since is not None:
            seconds = round(time.monotonic() - self._degraded_since, 3)
            self._degraded_since = None
            self._log_state("usage_delivery_recovered", logging.INFO, degraded_seconds=seconds)
        self._next_attempt = 0.0
        self._backoff = self._retry_initial

    # -- dead letters ----------------------------------------------------------------------------

    def _park(self, encoded: list[Encoded], reason: str) -> None:
        room = max(self._parked_max - len(self._parked), 0)
        if len(encoded) > room:
            # The store is failing too (down, or a missing role assignment) and traffic goes on:
            # an unbounded backlog would end in an out-of-memory kill that loses all of it, so
            # beyond the bound the log line becomes the record's copy (counted as dropped).
            self._last_resort(encoded[room:])
            encoded = encoded[:room]
            if not encoded:
                return
        self._parked.extend(encoded)
        self._parked_event.set()
        self._parked_empty.clear()
        self._parked_unlogged += len(encoded)
        now = time.monotonic()
        if now - self._parked_logged_at >= PARK_LOG_SECONDS:  # a full queue parks on every submit
            log.warning(
                "%d usage record(s) to the dead-letter store: %s", self._parked_unlogged, reason
            )
            self._parked_logged_at, self._parked_unlogged = now, 0

    async def _dead_letter_forever(self) -> None:
        backoff = self._retry_initial
        while True:
            await self._parked_event.wait()
            while self._parked:
                chunk = self._parked[:DEADLETTER_BLOB_RECORDS]
                try:
                    await self._deadletter.put([encoded.body for encoded in chunk])
                except Exception:
                    log.exception("dead-letter write failed; %d record(s) kept", len(self._parked))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                del self._parked[: len(chunk)]  # only ever appended to at the end
                self.counters.dead_lettered += len(chunk)
                backoff = self._retry_initial
            self._parked_event.clear()
            self._parked_empty.set()

    def _last_resort(self, encoded: list[Encoded]) -> None:
        """Neither the hub nor the store took these: the log line is the only copy left."""
        for item in encoded:
            log.error("usage record undeliverable %s", item.body.decode(errors="replace"))
        self.counters.dropped += len(encoded)

    # -- health ----------------------------------------------------------------------------------

    async def _report_forever(self) -> None:
        while True:
            await asyncio.sleep(self._log_seconds)
            self._counter_log.emit(self.counters, **self._gauges())

    def _gauges(self) -> dict[str, Any]:
        return {
            "state": "healthy" if self._degraded_since is None else "degraded",
            "in_memory": self._queue.qsize() + len(self._pending),
            "awaiting_deadletter": len(self._parked),
            "max_ms_in_memory": round(self._max_seconds_in_memory * 1000, 3),
        }

    def _log_state(self, event: str, level: int, **fields: Any) -> None:
        line = {"event": event, "instance_id": self._instance_id, **self._gauges(), **fields}
        log.log(level, "%s %s", event, json.dumps(line, separators=(",", ":")))

    def health(self) -> Mapping[str, Any]:
        return {
            "sink": "eventhub",
            "instance_id": self._instance_id,
            **self._gauges(),
            "counters": self.counters.as_dict(),
        }


async def _close_producer(producer: EventHubProducerClient) -> None:
    try:
        async with asyncio.timeout(CLOSE_SECONDS):
            await producer.close()
    except Exception:
        log.warning("Event Hubs producer did not close cleanly", exc_info=True)


async def _cancel(task: asyncio.Task[None]) -> None:
    # asyncio.wait: bounded, never raises the task's outcome, never swallows our own cancellation.
    task.cancel()
    await asyncio.wait({task}, timeout=CLOSE_SECONDS)
