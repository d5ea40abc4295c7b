"""Rows to a DCR stream through the Logs Ingestion API, with what failed named by row id.

azure-monitor-ingestion's `upload` gzips the rows and posts them to
`{endpoint}/dataCollectionRules/{id}/streams/{stream}?api-version=2023-01-01`; its pipeline retries
408/429/5xx, waiting what `Retry-After` says. Three things it does not do for us:
- Without `on_error`, version 1.1.0 raises at the first chunk that still fails and never sends the
  later ones; with it each failure is handed back, so the failed rows are known by id.
- It cuts chunks at 1 MiB counting each row's JSON but not the ", " between rows, so a full chunk
  is posted a little over the service's 1 MB per call (1,049,553 bytes for 831 rows of 1.26 KB) and
  refused with 413. Rows are therefore grouped here below that limit, separators included, and
  one `upload` call sends one group.
- A group still refused as too large (413) is split in two and each half sent again, down to
  single rows.
A failure is *permanent* when sending the same rows again cannot help (400: the service refused the
data; 413 for a single row); anything else (auth, a role not applied yet, throttling or an outage
that outlasted the retries) is *transient* and worth the Functions host's retry of the batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError
from azure.monitor.ingestion import LogsUploadError
from azure.monitor.ingestion.aio import LogsIngestionClient

from .settings import LandingSettings
from .sorting import Row

log = logging.getLogger(__name__)

# The pipeline's own retries of one chunk: a few, short, bounded. A longer outage is the Functions
# host's retry policy's job (blueprint.py), which keeps the batch and the checkpoint meanwhile.
RETRY_TOTAL = 4
RETRY_BACKOFF_FACTOR = 1.0  # seconds: 1, 2, 4, 8 when there is no Retry-After
RETRY_BACKOFF_MAX = 30
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 60
# learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview#limits-and-restrictions:
# 1 MB per API call, compressed or not; kept below it with room to spare.
MAX_CALL_BYTES = 1_000_000
ERROR_CHARS = 500  # of an error's text in a log line
_PERMANENT = {HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE}


@dataclass(frozen=True, slots=True)
class Failure:
    ids: tuple[str, ...]
    error: str  # status and the service's error code/message, or the exception
    permanent: bool


@dataclass(slots=True)
class Upload:
    rows: int = 0
    splits: int = 0  # too-large chunks cut in two
    failures: list[Failure] = field(default_factory=list)
    failed_rows: list[Row] = field(default_factory=list)

    @property
    def landed(self) -> int:
        return self.rows - len(self.failed_rows)


def make_client(
    settings: LandingSettings, credential: AsyncTokenCredential, **options: Any
) -> LogsIngestionClient:
    """The keyless client: the managed identity's token for https://monitor.azure.com/.default
    (the SDK's default scope); the identity needs Monitoring Metrics Publisher on the DCR."""
    config: dict[str, Any] = {
        "retry_total": RETRY_TOTAL,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
        "connection_timeout": CONNECTION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    return LogsIngestionClient(settings.endpoint, credential, **(config | options))


async def upload_rows(
    client: LogsIngestionClient,
    settings: LandingSettings,
    stream: str,
    rows: Sequence[Row],
    id_column: str,
) -> Upload:
    result = Upload(rows=len(rows))
    if not rows:
        return result
    # The bearer token may go over plain http only to a local fake of the service (tests).
    options: dict[str, Any] = {"enforce_https": False} if settings.loopback else {}

    async def on_error(error: LogsUploadError) -> None:
        failed = cast(list[Row], error.failed_logs)  # the rows we passed, chunked
        if _too_large(error.error) and len(failed) > 1:
            result.splits += 1
            half = len(failed) // 2
            for part in (failed[:half], failed[half:]):
                await client.upload(settings.rule_id, stream, part, on_error=on_error, **options)
            return
        result.failed_rows.extend(failed)
        result.failures.append(
            Failure(
                ids=tuple(str(row.get(id_column)) for row in failed),
                error=_describe(error.error),
                permanent=_permanent(error.error),
            )
        )

    for group in _groups(rows):
        await client.upload(settings.rule_id, stream, group, on_error=on_error, **options)
    return result


def _groups(rows: Sequence[Row]) -> Iterator[list[Row]]:
    """Consecutive rows whose JSON array, as the client writes it, stays under MAX_CALL_BYTES."""
    group: list[Row] = []
    size = 2  # the brackets
    for row in rows:
        length = len(json.dumps(row).encode()) + 2  # json.dumps's ", " separator
        if group and size + length > MAX_CALL_BYTES:
            yield group
            group, size = [], 2
        group.append(row)
        size += length
    if group:
        yield group


def _status(error: Exception) -> int | None:
    return error.status_code if isinstance(error, HttpResponseError) else None


def _too_large(error: Exception) -> bool:
    return _status(error) == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _permanent(error: Exception) -> bool:
    return _status(error) in _PERMANENT


def _describe(error: Exception) -> str:
    if isinstance(error, HttpResponseError):
        code = error.error.code if error.error is not None else None
        text = f"HTTP {error.status_code} {code or error.reason or ''}: {error.message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:ERROR_CHARS]
