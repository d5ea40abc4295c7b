"""Usage-record sinks behind one interface (see base.UsageSink).

The Event Hub sink's modules (azure-eventhub, azure-storage-blob for its dead letters) are imported
only when that sink is built: the JSONL and log sinks run without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import Settings
from .base import UsageRecord, UsageSink, partition_key_of
from .jsonl import JsonlFileSink
from .log import LogSink

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["UsageRecord", "UsageSink", "build_sink", "partition_key_of"]


def build_sink(settings: Settings, credential: AsyncTokenCredential | None) -> UsageSink:
    if settings.sink == "jsonl":
        return JsonlFileSink(settings.usage_log_path)
    if settings.sink == "log":
        return LogSink()
    return _build_eventhub_sink(settings, credential)


def _build_eventhub_sink(settings: Settings, credential: AsyncTokenCredential | None) -> UsageSink:
    # Settings.from_env already refused an eventhub sink without these; this guards other callers.
    if (
        credential is None
        or settings.eventhub_namespace is None
        or settings.eventhub_name is None
        or settings.deadletter_blob_service_uri is None
    ):
        raise ValueError(
            "the Event Hub sink needs a credential, EVENTHUB_FULLY_QUALIFIED_NAMESPACE, "
            "EVENTHUB_NAME and DEADLETTER_BLOB_SERVICE_URI"
        )
    from ..deadletter import BlobDeadLetterStore
    from .eventhub import EventHubSink

    deadletter = BlobDeadLetterStore(
        settings.deadletter_blob_service_uri,
        settings.deadletter_container,
        credential,
        instance_id=settings.instance_id,
    )
    return EventHubSink(
        namespace=settings.eventhub_namespace,
        eventhub_name=settings.eventhub_name,
        credential=credential,
        deadletter=deadletter,
        instance_id=settings.instance_id,
        queue_max_records=settings.delivery_queue_max_records,
        max_in_memory_seconds=settings.delivery_max_seconds,
        log_seconds=settings.delivery_log_seconds,
    )
