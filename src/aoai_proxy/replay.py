"""Replay: re-sends dead-lettered usage records to Event Hubs, then deletes their blob.

Runs from the timer in replay_blueprint.py. On Flex Consumption that timer runs on instances of its
own, sharing no memory with the HTTP instances, so the replay reads only the Blob store. A blob is
deleted only after the hub accepted every record in it; a run that fails part-way re-parks the unsent
remainder and leaves the rest for the next run. Delivery stays at-least-once: a record can arrive
twice (e.g. a send that timed out on our side but reached the hub), never zero times. Consumers
de-duplicate by `record_id`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.eventhub.aio import EventHubProducerClient

from .config import Settings
from .deadletter import BlobDeadLetterStore, DeadLetterStore
from .sinks.counters import CounterLog, DeliveryCounters
from .sinks.events import Encoded, decode, make_producer, send_in_batches

log = logging.getLogger(__name__)

# A timer run should end well before the next one (every 5 minutes) and the host's timeout.
DEFAULT_MAX_SECONDS = 240.0


@dataclass(slots=True)
class ReplayResult:
    blobs: int = 0  # blobs emptied and deleted
    replayed: int = 0  # records the hub accepted
    stopped_early: bool = False  # the hub failed or time ran out: the rest waits for the next run


async def replay_deadletters(
    store: DeadLetterStore,
    producer: EventHubProducerClient,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> ReplayResult:
    result = ReplayResult()
    deadline = time.monotonic() + max_seconds
    async for name in store.names():
        if time.monotonic() >= deadline:
            result.stopped_early = True
            break
        try:
            bodies = await store.get(name)
        except ResourceNotFoundError:  # deleted by a run that overlapped this one
            continue
        pending = [_decoded(body) for body in bodies]
        try:
            too_large = await send_in_batches(producer, pending)
        except Exception:
            sent = len(bodies) - len(pending)
            result.replayed += sent
            log.warning(
                "replay stopped: Event Hubs refused %s; it stays parked", name, exc_info=True
            )
            if sent:  # park only the unsent remainder, so the next run sends fewer duplicates
                await store.put([encoded.body for encoded in pending])
                await store.delete(name)
            result.stopped_early = True
            break
        if too_large:  # cannot fit an event even with captured texts cut: keep them, alone
            log.error("%d dead-lettered record(s) fit no event; kept in the store", len(too_large))
            await store.put([encoded.body for encoded in too_large])
        await store.delete(name)
        result.blobs += 1
        result.replayed += len(bodies) - len(too_large)
    return result


def _decoded(body: bytes) -> Encoded:
    try:
        return decode(body)
    except ValueError:  # not a JSON object: still ours to deliver, without a partition key
        return Encoded("", None, body)


async def run_replay(settings: Settings, credential: AsyncTokenCredential) -> ReplayResult:
    """One timer run: builds the store and the producer from the settings, replays, closes both."""
    if (
        settings.sink != "eventhub"
        or settings.eventhub_namespace is None
        or settings.eventhub_name is None
        or settings.deadletter_blob_service_uri is None
    ):
        log.info("usage replay skipped: the Event Hub sink is not configured")
        return ReplayResult()
    store = BlobDeadLetterStore(
        settings.deadletter_blob_service_uri,
        settings.deadletter_container,
        credential,
        instance_id=settings.instance_id,
    )
    producer = make_producer(settings.eventhub_namespace, settings.eventhub_name, credential)
    try:
        result = await replay_deadletters(store, producer)
    finally:
        await producer.close()
        await store.aclose()
    CounterLog(log, settings.instance_id).emit(
        DeliveryCounters(replayed=result.replayed),
        replay_blobs=result.blobs,
        replay_stopped_early=result.stopped_early,
    )
    return result
