"""Usage-record sinks behind one interface (see base.UsageSink)."""

from __future__ import annotations

from azure.core.credentials_async import AsyncTokenCredential

from ..config import Settings
from ..deadletter import BlobDeadLetterStore
from .base import UsageRecord, UsageSink, partition_key_of
from .eventhub import EventHubSink
from .jsonl import JsonlFileSink
from .log import LogSink

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
