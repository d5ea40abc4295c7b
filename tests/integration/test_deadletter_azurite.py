"""The Blob dead-letter store against Azurite, keyless: bearer tokens over HTTPS (`--oauth basic`).

Azurite checks a token's issuer, audience and lifetime but not its signature, so FakeEntraCredential
stands in for the managed identity while BlobDeadLetterStore runs exactly its production path:
BlobServiceClient(account_url, credential=<AsyncTokenCredential>). The only test-specific option is
`connection_verify`, trusting the emulator's self-signed certificate.
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from tests.delivery_doubles import (
    Azurite,
    FakeEntraCredential,
    HubDouble,
    eventually,
    make_sink,
    record_ids,
    usage_record,
)

from aoai_proxy.deadletter import PREFIX, BlobDeadLetterStore
from aoai_proxy.replay import replay_deadletters
from aoai_proxy.sinks.events import encode, make_producer

pytestmark = pytest.mark.azurite


def store_on(
    azurite: Azurite, credential: FakeEntraCredential | None = None, container: str | None = None
) -> BlobDeadLetterStore:
    return BlobDeadLetterStore(
        azurite.account_url,
        container or f"deadletter-{uuid.uuid4().hex[:12]}",  # fresh: tests share one emulator
        credential or FakeEntraCredential(),
        instance_id="a1b2/c3 d4",
        connection_verify=azurite.ca_file,
    )


async def names_of(store: BlobDeadLetterStore) -> list[str]:
    return [name async for name in store.names()]


async def test_put_list_get_delete_with_a_storage_token(azurite: Azurite) -> None:
    credential = FakeEntraCredential()
    store = store_on(azurite, credential)
    bodies = [encode(usage_record(n=i)).body for i in range(3)]
    try:
        name = await store.put(bodies)  # the container does not exist yet: created on first use

        assert name.startswith(PREFIX)
        assert name.endswith(".jsonl")
        assert "-a1b2_c3_d4-" in name  # the instance id, made safe for a blob name
        assert await names_of(store) == [name]
        assert await store.get(name) == bodies
        await store.delete(name)
        assert await names_of(store) == []
        with pytest.raises(ResourceNotFoundError):  # what an overlapping replay run meets
            await store.delete(name)
    finally:
        await store.aclose()
    assert credential.scopes
    assert all(scopes == ("https://storage.azure.com/.default",) for scopes in credential.scopes)


async def test_listing_returns_the_oldest_blob_first(azurite: Azurite) -> None:
    store = store_on(azurite)
    try:
        names = [await store.put([encode(usage_record(n=i)).body]) for i in range(4)]
        assert await names_of(store) == names
    finally:
        await store.aclose()


async def test_a_container_that_was_never_created_lists_nothing(azurite: Azurite) -> None:
    store = store_on(azurite)
    try:
        assert await names_of(store) == []
    finally:
        await store.aclose()


async def test_the_emulator_refuses_a_token_for_another_audience(azurite: Azurite) -> None:
    """Proves the tests above really authenticated with the bearer token (no key, no anonymous)."""
    store = store_on(azurite, FakeEntraCredential(audience="https://management.azure.com"))
    try:
        with pytest.raises((ClientAuthenticationError, HttpResponseError)) as refused:
            await store.put([b"{}"])
        assert refused.value.status_code in (401, 403)
    finally:
        await store.aclose()


async def test_overflow_to_blob_storage_then_replay_delivers_every_record(
    azurite: Azurite, hub: HubDouble
) -> None:
    container = f"deadletter-{uuid.uuid4().hex[:12]}"
    store = store_on(azurite, container=container)
    sink = make_sink(store, queue_max_records=5, max_in_memory_seconds=0.3)
    hub.fail_for(60)
    records = [usage_record(f"sub-{i % 3}", n=i) for i in range(40)]
    for record in records:
        sink.submit(record)
    await eventually(lambda: sink.counters.dead_lettered == 40, what="40 dead-lettered")
    await sink.aclose()  # closes the store's client too
    assert hub.records == []
    assert sink.counters.dropped == 0

    hub.fail_until = 0  # the hub is back; the replay timer runs on another instance
    replay_store = store_on(azurite, container=container)  # another instance, same container
    try:
        result = await replay_deadletters(
            replay_store, [make_producer("ns", "usage", FakeEntraCredential())]
        )
        assert result.replayed == 40
        assert await names_of(replay_store) == []
    finally:
        await replay_store.aclose()
    assert sorted(record_ids(hub.records)) == sorted(record_ids(records))
