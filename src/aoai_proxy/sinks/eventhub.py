"""Event Hub sink: records leave the request path at once and are never lost.

submit() serialises the record and puts it on a bounded queue; nothing else happens on the request
path. A background task on the same loop batches and sends (sinks/events.py) while each record is
younger than USAGE_DELIVERY_MAX_SECONDS. A record older than that, or that finds the queue full, is
handed to a second task that writes it to the Blob dead-letter store, which the replay timer empties
later. Once a send has failed the hub is known to be failing: what is in memory and every new
record go to the store at once (a record's only copy in memory is what a kill without a signal
loses), and a probe that carries no record (a fresh connection and sender link) finds out when the
hub is back. aclose() flushes within a bounded time, dead-letters the rest, and only a record that
neither the hub nor the store would take is logged in full and counted as dropped.
docs/delivery.md states the guarantees and the residual risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
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

# A dead-letter blob holds at most this many records and bytes (a record is at most ~1 MB), so the
# replay reads bounded blobs; during an outage the writer gathers records for DEADLETTER_LINGER_SECONDS
# first, so blobs are not one or two records each.
DEADLETTER_BLOB_RECORDS = 500
DEADLETTER_BLOB_BYTES = 4 * 1024 * 1024
DEADLETTER_LINGER_SECONDS = 0.5
# Producers per process, each its own AMQP connection: the SDK sends one batch at a time per
# producer and a batch carries one partition key, so this many keys are sent at the same time.
PRODUCERS = 4
SEND_GRACE_SECONDS = 1.0  # our hard bound on one send attempt, beyond the SDK's own timeout
CLOSE_SECONDS = 5.0  # bound on stopping a task or closing the producer at shutdown
PARK_LOG_SECONDS = 1.0  # at most one "to the dead-letter store" line a second
WATCH_SECONDS = 1.0  # how often the age of what is at risk is checked
# Records older than USAGE_DELIVERY_MAX_SECONDS + this (counted from submit) are waiting on the
# store; a line says so (a failing store keeps one write going for a minute in its own retries).
AT_RISK_LOG_EXTRA_SECONDS = 5.0


@dataclass(slots=True)
class _Item:
    encoded: Encoded
    queued_at: float  # time.monotonic() at submit
    deadline: float  # sent by then, or dead-lettered
    parked_at: float = 0.0  # handed to the dead-letter writer


class _ItemQueue(asyncio.Queue[_Item]):
    """The asyncio FIFO with its head readable: the oldest record's age is the at-risk gauge."""

    def _init(self, maxsize: int) -> None:
        self._queue: deque[_Item] = deque()

    def oldest(self) -> _Item | None:
        return self._queue[0] if self._queue else None


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
        at_risk_log_seconds: float | None = None,
        deadletter_linger_seconds: float = DEADLETTER_LINGER_SECONDS,
        shutdown_seconds: float = 10.0,
        max_batch_records: int = 500,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 5.0,
        **producer_options: Any,
    ) -> None:
        """`producer_options` go to EventHubProducerClient (e.g. `custom_endpoint_address`)."""
        self._namespace = namespace
        self._eventhub_name = eventhub_name
        self._credential = credential
        self._deadletter = deadletter
        self._instance_id = instance_id
        self._max_in_memory = max_in_memory_seconds
        self._parked_max = deadletter_max_records
        self._log_seconds = log_seconds
        self._at_risk_log_seconds = (
            max_in_memory_seconds + AT_RISK_LOG_EXTRA_SECONDS
            if at_risk_log_seconds is None
            else at_risk_log_seconds
        )
        self._at_risk_logged_at = -math.inf
        self._linger = deadletter_linger_seconds
        self._producer_options = producer_options
        self._shutdown_seconds = shutdown_seconds
        self._max_batch = max_batch_records
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self.counters = DeliveryCounters()
        self._counter_log = CounterLog(log, instance_id)
        self._queue = _ItemQueue(maxsize=queue_max_records)
        self._pending: list[_Item] = []  # taken off the queue, being sent
        self._parked: list[_Item] = []  # waiting for the dead-letter writer
        self._parked_event = asyncio.Event()  # set: there is something to write
        self._parked_full = asyncio.Event()  # set: write now, without gathering more
        self._parked_empty = asyncio.Event()  # set: nothing waits for the dead-letter store
        self._parked_empty.set()
        self._parked_logged_at = -math.inf
        self._parked_unlogged = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._producers: list[EventHubProducerClient] = []  # built on first use, PRODUCERS of them
        self._discarded: set[asyncio.Task[None]] = set()  # producers being closed aside
        self._degraded_since: float | None = None  # set: the hub is known to be failing
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
                self._park([item], "the sink is shutting down")
                return
            self._ensure_started()
            if self._degraded_since is not None:
                self._park([item], "Event Hubs is failing")
                return
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self._park([item], "the in-memory queue is full")
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
        self._parked_full.set()  # no gathering for a fuller blob now
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
            self._park(leftovers, "shutdown")
        with contextlib.suppress(TimeoutError):  # every parked record written, or time up
            async with asyncio.timeout(max(start + self._shutdown_seconds - time.monotonic(), 0)):
                await self._parked_empty.wait()
        for task in self._tasks.values():
            await _cancel(task)
        self._tasks = {}
        await self._close_clients()
        if self._parked:  # also what was submitted while the clients were closing: no writer now
            self._last_resort([item.encoded for item in self._parked])
            self._parked = []
            self._parked_empty.set()
        self._counter_log.emit(self.counters, final=True, **self._gauges())
        self._expiry_cap = math.inf
        self._parked_full.clear()
        self._closing = False

    async def _close_clients(self) -> None:
        producers, self._producers = self._producers, []
        for producer in producers:
            await _close_producer(producer)
        if self._discarded:
            await asyncio.wait(self._discarded, timeout=CLOSE_SECONDS)
        await self._deadletter.aclose()

    def _discard_producers(self) -> None:
        """After a failed send or probe the next probe builds fresh producers (a cached link proves
        nothing; one our bound cut is in an unknown state); the old ones are closed aside."""
        producers, self._producers = self._producers, []
        for producer in producers:
            task = asyncio.get_running_loop().create_task(_close_producer(producer))
            self._discarded.add(task)  # a reference until done, or the task may be collected
            task.add_done_callback(self._discarded.discard)

    # -- sending ---------------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        while True:
            if self._degraded_since is not None:
                await self._probe()  # nothing waits in memory meanwhile
                continue
            if not self._pending:
                self._pending.append(await self._queue.get())
            while len(self._pending) < self._max_batch and not self._queue.empty():
                self._pending.append(self._queue.get_nowait())
            now = time.monotonic()
            expired = [item for item in self._pending if self._deadline(item) <= now]
            if expired:
                self._pending = [item for item in self._pending if self._deadline(item) > now]
                self._park(expired, "not sent in time")
                for _ in expired:
                    self._queue.task_done()
            if not self._pending:
                continue
            await self._attempt()

    def _deadline(self, item: _Item) -> float:
        return min(item.deadline, self._expiry_cap)

    async def _attempt(self) -> None:
        now = time.monotonic()
        # Until the oldest record's deadline, and at least one send of MIN_SEND_SECONDS.
        stop_at = max(self._deadline(self._pending[0]), now + MIN_SEND_SECONDS)
        unsent = [item.encoded for item in self._pending]
        try:
            self._build_producers()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296).
            async with asyncio.timeout(stop_at - now + SEND_GRACE_SECONDS):
                too_large = await send_in_batches(self._producers, unsent, deadline=stop_at)
        except Exception as exc:
            self._settle(unsent, [])
            self._failed(exc)
            # The SDK retried already: the hub is failing, so holding these in memory for another
            # try only widens what a kill would lose. The store takes them now, and new records too.
            self._park_in_memory("Event Hubs is failing")
            return
        except BaseException:  # cancelled by aclose(): the batches already accepted count as sent
            self._settle(unsent, [])
            raise
        self._backoff = self._retry_initial
        items = {id(item.encoded): item for item in self._pending}
        self._settle(unsent, too_large)
        if too_large:
            self._park(
                [items[id(encoded)] for encoded in too_large],
                "larger than an event even with captured texts cut",
            )

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

    def _park_in_memory(self, reason: str) -> None:
        items, self._pending = self._pending, []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for _ in items:
            self._queue.task_done()
        if items:
            self._park(items, reason)

    def _build_producers(self) -> None:
        if not self._producers:  # created on the running loop, on first use
            self._producers = [
                make_producer(
                    self._namespace, self._eventhub_name, self._credential, **self._producer_options
                )
                for _ in range(PRODUCERS)
            ]

    async def _probe(self) -> None:
        """Carries no record: a fresh connection, authentication and sender link tell whether the hub
        takes sends again (on a new client create_batch opens them to learn the link's maximum
        message size, azure-eventhub _get_max_message_size); the producers are kept when it does."""
        await asyncio.sleep(max(self._next_attempt - time.monotonic(), 0))
        try:
            self._build_producers()
            # As long as a send may take: a cold connection (token, TLS, link) is not a failure.
            async with asyncio.timeout(
                max(self._max_in_memory, MIN_SEND_SECONDS) + SEND_GRACE_SECONDS
            ):
                await self._producers[0].create_batch()
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._degraded_since is None:
            self._degraded_since = now
            self._log_state("usage_delivery_degraded", logging.WARNING, error=repr(exc)[:500])
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self._retry_max)
        self._discard_producers()

    def _recovered(self) -> None:
        # The back-off is reset only by a send that succeeds: a hub that takes connections but
        # refuses sends (throttling) is probed ever less often instead of every 0.5 s.
        if self._degraded_since is not None:
            seconds = round(time.monotonic() - self._degraded_since, 3)
            self._degraded_since = None
            self._log_state("usage_delivery_recovered", logging.INFO, degraded_seconds=seconds)

    # -- dead letters ----------------------------------------------------------------------------

    def _park(self, items: list[_Item], reason: str) -> None:
        room = max(self._parked_max - len(self._parked), 0)
        if len(items) > room:
            # The store is failing too (down, or a missing role assignment) and traffic goes on:
            # an unbounded backlog would end in an out-of-memory kill that loses all of it, so
            # beyond the bound the log line becomes the record's copy (counted as dropped).
            self._last_resort([item.encoded for item in items[room:]])
            items = items[:room]
            if not items:
                return
        now = time.monotonic()
        for item in items:
            item.parked_at = now
        self._parked.extend(items)
        self._parked_event.set()
        if len(self._parked) >= DEADLETTER_BLOB_RECORDS:
            self._parked_full.set()
        self._parked_empty.clear()
        self._parked_unlogged += len(items)
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
                # During an outage records arrive one by one: a blob gathers them until its oldest
                # has waited DEADLETTER_LINGER_SECONDS (or it is full), so a record waits at most
                # that and one blob write, and blobs are not one or two records each.
                linger = self._parked[0].parked_at + self._linger - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(linger, 0)):
                        await self._parked_full.wait()
                chunk = _blob_chunk(self._parked)
                try:
                    await self._deadletter.put([item.encoded.body for item in chunk])
                except Exception:
                    log.exception("dead-letter write failed; %d record(s) kept", len(self._parked))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                del self._parked[: len(chunk)]  # only ever appended to at the end
                self.counters.dead_lettered += len(chunk)
                self._left_memory(chunk)
                backoff = self._retry_initial
                if len(self._parked) < DEADLETTER_BLOB_RECORDS and not self._closing:
                    self._parked_full.clear()
            self._parked_event.clear()
            self._parked_empty.set()

    def _last_resort(self, encoded: list[Encoded]) -> None:
        """Neither the hub nor the store took these: the log line is the only copy left."""
        for item in encoded:
            log.error("usage record undeliverable %s", item.body.decode(errors="replace"))
        self.counters.dropped += len(encoded)

    # -- health ----------------------------------------------------------------------------------

    def _left_memory(self, items: list[_Item]) -> None:
        now = time.monotonic()
        oldest = min(item.queued_at for item in items)
        self._max_seconds_in_memory = max(self._max_seconds_in_memory, now - oldest)

    async def _report_forever(self) -> None:
        next_line = time.monotonic() + self._log_seconds
        while True:
            await asyncio.sleep(max(min(WATCH_SECONDS, next_line - time.monotonic()), 0))
            now = time.monotonic()
            if now >= next_line:
                self._counter_log.emit(self.counters, **self._gauges())
                next_line = now + self._log_seconds
            self._watch(now)

    def _watch(self, now: float) -> None:
        """A line while records wait too long (a failing store, both failing): `dropped` moves
        only when the cap is hit or at shutdown, so without it nothing shows them at risk."""
        oldest = self._oldest_queued_at()
        if oldest is None or now - oldest < self._at_risk_log_seconds:
            return
        if now - self._at_risk_logged_at >= self._at_risk_log_seconds:
            self._at_risk_logged_at = now
            self._log_state(
                "usage_delivery_at_risk", logging.WARNING, counters=self.counters.as_dict()
            )

    def _oldest_queued_at(self, *, parked: bool = True, in_memory: bool = True) -> float | None:
        items: list[_Item] = []
        if in_memory:
            items += self._pending
            head = self._queue.oldest()
            if head is not None:
                items.append(head)
        if parked:
            items += self._parked  # not in submit order: a record parked late may be older
        return min((item.queued_at for item in items), default=None)

    def _gauges(self) -> dict[str, Any]:
        now = time.monotonic()

        def age_ms(queued_at: float | None) -> float:
            return 0.0 if queued_at is None else round((now - queued_at) * 1000, 3)

        in_memory = self._queue.qsize() + len(self._pending)
        return {
            "state": "healthy" if self._degraded_since is None else "degraded",
            "in_memory": in_memory,
            "awaiting_deadletter": len(self._parked),
            "at_risk": in_memory + len(self._parked),  # only copy in memory: a kill loses them
            "oldest_ms_in_memory": age_ms(self._oldest_queued_at(parked=False)),
            "oldest_ms_awaiting_deadletter": age_ms(self._oldest_queued_at(in_memory=False)),
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


def _blob_chunk(parked: list[_Item]) -> list[_Item]:
    """The oldest parked records that fit one blob's bounds (always at least one)."""
    size = 0
    for count, item in enumerate(parked[:DEADLETTER_BLOB_RECORDS]):
        size += len(item.encoded.body) + 1
        if count and size > DEADLETTER_BLOB_BYTES:
            return parked[:count]
    return parked[:DEADLETTER_BLOB_RECORDS]


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
