"""Usage records as Event Hubs events: the keyless producer, the size limit, batches per key.

Shared by the Event Hub sink (live records) and the dead-letter replay, so both build the producer
and put records on the wire the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.aio import EventHubProducerClient

from .base import UsageRecord, partition_key_of

# Event Hubs Basic allows 256 KB per event, Standard and up 1 MB, batch included
# (learn.microsoft.com/azure/event-hubs/event-hubs-quotas). We aim below 1 MB with room for the AMQP
# envelope; on a hub that allows less, the batch's own limit (max_size_in_bytes) takes over.
MAX_EVENT_BYTES = 1_000_000
# Room left for the AMQP message and batch framing when fitting one record into a batch's limit.
ENVELOPE_BYTES = 4_096
CONTENT_TYPE = "application/json"
YIELD_EVERY = 32  # events added to a batch between two yields to the event loop
MIN_SEND_SECONDS = 1.0  # the shortest SDK timeout a send gets, however close its deadline
STOP_SECONDS = 1.0  # bound on the other sends stopping once one failed


@dataclass(frozen=True, slots=True)
class Encoded:
    """A record serialised once, at submit time: what goes on the wire and into the dead-letter store."""

    record_id: str
    partition_key: str | None
    body: bytes


def encode(record: UsageRecord) -> Encoded:
    # default=str: a record is JSON-ready by contract; a stray value must not lose the whole record.
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=True, default=str).encode()
    record_id = record.get("record_id")
    return Encoded(
        record_id=record_id if isinstance(record_id, str) else "",
        partition_key=partition_key_of(record),
        body=fit(body, MAX_EVENT_BYTES),
    )


def decode(body: bytes) -> Encoded:
    """Rebuilds an Encoded from stored bytes (the dead-letter store keeps bodies as they were sent)."""
    record = json.loads(body)
    if not isinstance(record, dict):
        raise ValueError("a dead-lettered line is not a JSON object")
    record_id = record.get("record_id")
    return Encoded(record_id if isinstance(record_id, str) else "", partition_key_of(record), body)


def fit(body: bytes, limit: int) -> bytes:
    """Shrinks the captured prompt/completion texts until the record fits `limit` bytes.

    Follows the capture rules of the usage record (docs/usage-record.md): the text is cut on a UTF-8
    boundary, `truncated` becomes true, and `bytes`/`sha256` keep describing the original text. Nothing
    else is touched and nothing is dropped; a record still too large without text is returned as is.
    """
    if len(body) <= limit:
        return body
    record = json.loads(body)
    capture = record.get("capture") if isinstance(record, dict) else None
    parts = [
        part
        for part in (capture.values() if isinstance(capture, dict) else ())
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]
    while True:
        excess = len(body) - limit
        longest = max(parts, key=lambda part: len(part["text"]), default=None)
        if excess <= 0 or longest is None or not longest["text"]:
            return body
        raw: bytes = longest["text"].encode("utf-8", errors="surrogatepass")
        if "sha256" not in longest:  # not truncated before: the text is the original
            longest["bytes"] = len(raw)
            longest["sha256"] = hashlib.sha256(raw).hexdigest()
        # Records are written as ASCII JSON, where one UTF-8 byte of text can take up to six bytes
        # (\\uXXXX): cut in proportion to the escaped size, so the text is shortened, not emptied.
        escaped = len(json.dumps(longest["text"], ensure_ascii=True)) - 2
        cut = max(1, math.ceil(excess * len(raw) / max(escaped, 1)))
        longest["text"] = raw[: max(0, len(raw) - cut)].decode("utf-8", "ignore")
        longest["truncated"] = True
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode()


def make_producer(
    namespace: str, eventhub_name: str, credential: AsyncTokenCredential, **options: Any
) -> EventHubProducerClient:
    """The keyless producer: Entra ID credential, no connection string (the namespace has local auth off).

    The SDK retries quickly for transient faults; longer outages are the caller's loop's job, bounded
    by USAGE_DELIVERY_MAX_SECONDS, so these stay short. `options` go to the client as they are
    (`custom_endpoint_address`, `connection_verify`: the tests' loopback endpoints).
    """
    return EventHubProducerClient(
        fully_qualified_namespace=namespace,
        eventhub_name=eventhub_name,
        credential=credential,
        retry_total=2,
        retry_backoff_factor=0.5,
        retry_backoff_max=4,
        retry_mode="exponential",
        **options,
    )


def _event(body: bytes) -> EventData:
    event = EventData(body)
    event.content_type = CONTENT_TYPE
    return event


async def send_in_batches(
    producers: Sequence[EventHubProducerClient],
    pending: list[Encoded],
    *,
    deadline: float | None = None,
) -> list[Encoded]:
    """Sends `pending` oldest first, one partition key per batch, as many records per batch as fit.

    Each record leaves `pending` as soon as its batch is sent, so when a send raises, `pending` holds
    exactly the records not yet sent (no duplicates on retry). Returns the records that fit in no
    event even with their captured texts cut (practically impossible; the caller parks them).

    The SDK sends one batch at a time per producer (EventHubProducer.send holds a lock until the hub
    settles it) and a batch carries one partition key, so each producer here sends batches for
    other keys at the same time; a key has one batch in flight at a time, which keeps its order.
    With a `deadline` (time.monotonic()), no batch starts after it and each send gets the time left
    as its SDK timeout (at least MIN_SEND_SECONDS); what was not sent stays in `pending`.
    """
    too_large: list[Encoded] = []
    in_flight: set[str | None] = set()  # partition keys with a batch being sent

    async def send_with(producer: EventHubProducerClient) -> None:
        while True:
            send_timeout = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                send_timeout = max(left, MIN_SEND_SECONDS)
            head = next((p for p in pending if p.partition_key not in in_flight), None)
            if head is None:
                return  # the rest belong to keys other producers are sending
            in_flight.add(head.partition_key)
            try:
                await _send_batch(producer, head.partition_key, pending, too_large, send_timeout)
            finally:
                in_flight.discard(head.partition_key)

    senders = [asyncio.create_task(send_with(producer)) for producer in producers]
    try:
        await asyncio.gather(*senders)
    except BaseException:
        for sender in senders:  # one failed, or we were cancelled: stop the others too
            sender.cancel()
        await asyncio.wait(senders, timeout=STOP_SECONDS)
        for sender in senders:  # a second failure is this one's consequence: seen, not re-raised
            if sender.done() and not sender.cancelled():
                sender.exception()
        pending.extend(too_large)  # not sent either: the caller keeps (or parks) them
        raise
    return too_large


async def _send_batch(
    producer: EventHubProducerClient,
    key: str | None,
    pending: list[Encoded],
    too_large: list[Encoded],
    send_timeout: float | None,
) -> None:
    """One batch of `key`'s oldest records; what is sent leaves `pending` once the hub took it."""
    batch = await producer.create_batch(partition_key=key)
    in_batch: list[Encoded] = []
    for count, item in enumerate([p for p in pending if p.partition_key == key], 1):
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # AMQP-encoding an event costs ~60 us: let streams run
        try:
            batch.add(_event(item.body))
        except ValueError:
            if in_batch:
                break  # batch full: send it, the rest go in the next one
            if not _add_shrunk(batch, item):
                too_large.append(item)
                pending.remove(item)
                continue
        in_batch.append(item)
    if in_batch:
        await producer.send_batch(batch, timeout=send_timeout)
        sent = {id(item) for item in in_batch}
        pending[:] = [p for p in pending if id(p) not in sent]


def _add_shrunk(batch: EventDataBatch, item: Encoded) -> bool:
    """Alone in an empty batch and still too big: this hub allows less than MAX_EVENT_BYTES."""
    limit = batch.max_size_in_bytes - ENVELOPE_BYTES
    try:
        batch.add(_event(fit(item.body, limit)))
    except ValueError:
        return False
    return True
