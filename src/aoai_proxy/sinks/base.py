"""The one interface every usage-record sink implements."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

UsageRecord = Mapping[str, Any]


class UsageSink(Protocol):
    """Where finished usage records go.

    `submit` is called on the event loop once per call, after the response has ended: it must
    return at once (no network or disk wait) and must never raise, so a failing sink can never
    fail or slow a request. `aclose` delivers (or durably parks) what is still pending, within a
    bounded time. `health` returns counters for `GET /healthz`.
    """

    def submit(self, record: UsageRecord) -> None: ...

    async def aclose(self) -> None: ...

    def health(self) -> Mapping[str, Any]: ...


# A partition key is at most 128 characters (the Azure SDK's documented limit for partition keys,
# learn.microsoft.com/dotnet/api/azure.messaging.servicebus.servicebusmessage.partitionkey; Event
# Hubs and Service Bus share the AMQP annotation). The record caps caller strings at 512
# characters, so a longer subscription id is replaced by its digest: still one key per caller
# (order per caller holds), and never a batch the service refuses.
MAX_PARTITION_KEY_CHARS = 128


def partition_key_of(record: UsageRecord) -> str | None:
    """The APIM subscription id: the key APIM's own gateway events use on the shared hub."""
    caller = record.get("caller")
    if isinstance(caller, Mapping):
        key = caller.get("subscription_id")
        if isinstance(key, str) and key:
            if len(key) <= MAX_PARTITION_KEY_CHARS:
                return key
            return "sha256-" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return None
