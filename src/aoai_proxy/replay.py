"""Replay: re-sends dead-lettered usage records to Event Hubs, then deletes their blob.

Runs from the timer in replay_blueprint.py. On Flex Consumption that timer runs on instances of its
own, sharing no memory with the HTTP instances, so the replay reads only the Blob store, and only the
delivery settings: a broken upstream setting (AZURE_OPENAI_ENDPOINT, PROXY_*) must not strand the
dead letters. A blob is deleted only after the hub accepted every record in it; a run that fails
part-way re-parks the unsent remainder and leaves the rest for the next run. A run ends by itself
within `max_seconds`, even on a hub that never answers. Delivery stays at-least-once: a record can
arrive twice (a send that timed out on our side but reached the hub, two overlapping runs), never
zero times. Consumers de-duplicate by `record_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.eventhub.aio import EventHubProducerClient

from .config import ConfigError, DeliveryTarget, _Env
from .credentials import build_credential
from .deadletter import BlobDeadLetterStore, DeadLetterStore
from .sinks.counters import CounterLog, DeliveryCounters
from .sinks.events import Encoded, decode, make_producer, send_in_batches

log = logging.getLogger(__name__)

REPLAY_FAILED_EVENT = "usage_replay_failed"

# A timer run should end well before the next one (every 5 minutes) and the host's timeout.
DEFAULT_MAX_SECONDS = 240.0
# Blobs read and sent together (each at most DEADLETTER_BLOB_BYTES, so a group's memory is bounded)
# and producers (AMQP connections) sending their batches at the same time.
REPLAY_BLOBS_AT_ONCE = 8
REPLAY_PRODUCERS = 4


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """What a replay run needs, read from the same variables as config.Settings (docs/delivery.md)."""

    namespace: str
    eventhub_name: str
    blob_service_uri: str
    container: str
    instance_id: str
    managed_identity_client_id: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReplaySettings | None:
        """None when the Event Hub sink is not configured (nothing can have been dead-lettered)."""
        env = os.environ if environ is None else environ
        target = DeliveryTarget.from_env(env)
        if target is None:
            return None
        if target.deadletter_blob_service_uri is None:
            raise ConfigError(
                "DEADLETTER_BLOB_SERVICE_URI (or AzureWebJobsStorage__blobServiceUri) is required: "
                "it names the dead-letter store the replay reads"
            )
        return cls(
            namespace=target.namespace,
            eventhub_name=target.eventhub_name,
            blob_service_uri=target.deadletter_blob_service_uri,
            container=target.deadletter_container,
            instance_id=env.get("WEBSITE_INSTANCE_ID", "").strip() or "local",
            managed_identity_client_id=_Env(env).client_id("AZURE_CLIENT_ID"),
        )


@dataclass(slots=True)
class ReplayResult:
    blobs: int = 0  # blobs emptied and deleted
    replayed: int = 0  # records the hub accepted
    stopped_early: bool = False  # the hub failed or time ran out: the rest waits for the next run
    send_failed: bool = False  # the hub refused a send or did not answer in time


async def replay_deadletters(
    store: DeadLetterStore,
    producers: Sequence[EventHubProducerClient],
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> ReplayResult:
    """Re-sends the blobs oldest first, REPLAY_BLOBS_AT_ONCE at a time: their records share
    batches and the producers send different partition keys at once. A blob is deleted once all its
    records were sent; when a send fails or time is up, a blob sent in part is replaced by its unsent
    remainder, a blob not sent at all stays as it is, and the run stops."""
    result = ReplayResult()
    deadline = time.monotonic() + max_seconds
    names = store.names()
    while True:
        group = [name async for name in _take(names, REPLAY_BLOBS_AT_ONCE)]
        if not group:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            result.stopped_early = True
            break
        blobs = await _read(store, group)
        pending = [encoded for _, records in blobs for encoded in records]
        too_large: list[Encoded] = []
        try:
            # The SDK's timeout, and ours around it: a hung hub must not hold the run (and the
            # timer's singleton lock) until the host's function timeout.
            async with asyncio.timeout(left):
                too_large = await send_in_batches(producers, pending, deadline=deadline)
        except Exception:
            result.send_failed = True
            log.warning(
                "replay stopped: Event Hubs refused a send; %d record(s) stay parked",
                len(pending),
                exc_info=True,
            )
        unsent = {id(encoded) for encoded in pending}
        oversize = {id(encoded) for encoded in too_large}
        for name, records in blobs:
            await _settle(store, name, records, unsent, oversize, result)
        if pending:  # refused, or time is up: the rest waits for the next run
            result.stopped_early = True
            break
    return result


async def _take(names: AsyncIterator[str], count: int) -> AsyncIterator[str]:
    for _ in range(count):
        name = await anext(names, None)
        if name is None:
            return
        yield name


async def _read(store: DeadLetterStore, names: list[str]) -> list[tuple[str, list[Encoded]]]:
    """The blobs' records, read at once; a blob deleted meanwhile by an overlapping run is skipped."""

    async def read(name: str) -> tuple[str, list[Encoded]] | None:
        try:
            return name, [_decoded(body) for body in await store.get(name)]
        except ResourceNotFoundError:
            return None

    return [blob for blob in await asyncio.gather(*map(read, names)) if blob is not None]


async def _settle(
    store: DeadLetterStore,
    name: str,
    records: list[Encoded],
    unsent: set[int],
    oversize: set[int],
    result: ReplayResult,
) -> None:
    """Deletes a blob whose records were all sent; re-parks what of it was not."""
    left = [encoded for encoded in records if id(encoded) in unsent]
    too_large = [encoded for encoded in records if id(encoded) in oversize]
    sent = len(records) - len(left) - len(too_large)
    result.replayed += sent
    if left and not sent:
        return  # nothing of it went out: it stays as it is
    if left:  # park only the unsent remainder, so the next run sends fewer duplicates
        await store.put([encoded.body for encoded in left + too_large])
    elif too_large:  # cannot fit an event even with captured texts cut: keep them, alone
        log.error("%d dead-lettered record(s) fit no event; kept in the store", len(too_large))
        await store.put([encoded.body for encoded in too_large])
    await _delete(store, name)
    if not left:
        result.blobs += 1


async def _delete(store: DeadLetterStore, name: str) -> None:
    with contextlib.suppress(ResourceNotFoundError):  # an overlapping run deleted it first
        await store.delete(name)


def _decoded(body: bytes) -> Encoded:
    try:
        return decode(body)
    except ValueError:  # not a JSON object: still ours to deliver, without a partition key
        return Encoded("", None, body)


async def run_replay(settings: ReplaySettings, credential: AsyncTokenCredential) -> ReplayResult:
    """One timer run: builds the store and the producer, replays, closes both."""
    store = BlobDeadLetterStore(
        settings.blob_service_uri,
        settings.container,
        credential,
        instance_id=settings.instance_id,
    )
    producers = [
        make_producer(settings.namespace, settings.eventhub_name, credential)
        for _ in range(REPLAY_PRODUCERS)
    ]
    try:
        result = await replay_deadletters(store, producers)
    finally:
        try:
            await asyncio.gather(*(producer.close() for producer in producers))
        finally:
            await store.aclose()
    CounterLog(log, settings.instance_id).emit(
        DeliveryCounters(replayed=result.replayed),
        source="replay",
        replay_blobs=result.blobs,
        replay_stopped_early=result.stopped_early,
        replay_send_failed=result.send_failed,  # infra/analytics/alerts/delivery-at-risk.kql
    )
    return result


async def replay_from_env(environ: Mapping[str, str] | None = None) -> ReplayResult:
    """The timer's body: the delivery settings and a credential of its own, nothing upstream."""
    settings = ReplaySettings.from_env(environ)
    if settings is None:
        log.info("usage replay skipped: the Event Hub sink is not configured")
        return ReplayResult()
    credential = build_credential(settings.managed_identity_client_id)
    try:
        return await run_replay(settings, credential)
    except Exception as exc:
        # A run that cannot even start (the store refuses the listing, no token) writes no counters
        # line: this one is what the delivery-at-risk alert counts (docs/usage-analytics.md).
        line = {
            "event": REPLAY_FAILED_EVENT,
            "instance_id": settings.instance_id,
            "error": repr(exc)[:500],
        }
        log.error("%s %s", REPLAY_FAILED_EVENT, json.dumps(line, separators=(",", ":")))
        raise
    finally:
        await credential.close()
