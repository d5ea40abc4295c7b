"""One batch from the usage hub into Log Analytics: sort, flatten, upload, account for every event.

The process-lifetime parts (settings, credential, ingestion client) are made once, lazily, on the
worker's event loop: the Functions Python worker has no start-up hook.

What happens to each event of a batch:
- a usage record or gateway event lands in its table (rows identical to ones this process already
  landed, i.e. the landed part of a batch the host is retrying, are not sent again);
- an unknown or unreadable event is counted and logged (sorting.py);
- a row the service refuses for good (ingest.py: 400, a single row over the size limit) is logged
  with its id and counted as failed; retrying cannot land it;
- a row that failed for a reason that may pass (no token, role not applied yet, throttling or an
  outage beyond the client's retries) makes the invocation fail, so the host's retry policy
  (blueprint.py) runs the batch again, with backoff, before the checkpoint moves. On the last
  attempt such rows are logged with their ids and counted as failed instead: the hub keeps them for
  its retention, and docs/usage-analytics.md says how to land them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.monitor.ingestion.aio import LogsIngestionClient

from ..credentials import build_credential
from .ingest import Failure, Upload, make_client, upload_rows
from .settings import LandingSettings
from .sorting import Row, sort_events

log = logging.getLogger(__name__)

COUNTERS_EVENT = "usage_landing_counters"
BATCH_FAILED_EVENT = "usage_landing_batch_failed"
IDS_PER_LINE = 200  # record ids per log line, so a line stays well under App Insights' trace limit
RECENT_ROWS = 50_000  # digests of rows landed by this process, to skip them in a retried batch
LOG_SECONDS = 60.0  # a quiet counters line at most this often; one with failures at once


class LandingIncompleteError(Exception):
    """Some rows may land if the batch is tried again: fails the invocation so the host retries."""


@dataclass(slots=True)
class LandingCounters:
    events: int = 0  # events received
    usage_landed: int = 0
    gateway_landed: int = 0
    already_landed: int = 0  # rows of a retried batch this process had landed: not sent again
    unknown: int = 0  # events of an unknown type or major version: not landed
    unreadable: int = 0  # events that are not a JSON object: not landed
    failed: int = 0  # rows that will not land from this batch: refused, or out of retries
    retried: int = 0  # rows handed back to the host's retry
    splits: int = 0  # too-large chunks cut in two


@dataclass(frozen=True, slots=True)
class BatchResult:
    counters: LandingCounters
    retry: bool  # the invocation fails so that the host retries the batch


class Landing:
    def __init__(
        self,
        load_settings: Callable[[], LandingSettings] = LandingSettings.from_env,
        *,
        client_options: Mapping[str, Any] | None = None,
        log_seconds: float = LOG_SECONDS,
    ) -> None:
        self._load_settings = load_settings
        self._client_options = dict(client_options or {})
        self._log_seconds = log_seconds
        self._lock = asyncio.Lock()
        self._settings: LandingSettings | None = None
        self._credential: AsyncTokenCredential | None = None
        self._client: LogsIngestionClient | None = None
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self.totals = LandingCounters()
        self._logged_at = 0.0

    async def land(self, bodies: Sequence[bytes], *, final_attempt: bool) -> BatchResult:
        """Lands one batch; raises LandingIncompleteError when a retry may land what is missing."""
        settings, client = await self._open()
        counters = LandingCounters(events=len(bodies))
        events = sort_events(bodies)
        counters.unknown = sum(events.unknown.values())
        counters.unreadable = events.unreadable
        transient: list[Failure] = []
        for table, stream, rows, id_column in (
            ("usage", settings.usage_stream, events.usage, "RecordId"),
            ("gateway", settings.gateway_stream, events.gateway, "ApimRequestId"),
        ):
            digests = [_digest(row) for row in rows]
            fresh = [(r, d) for r, d in zip(rows, digests, strict=True) if d not in self._recent]
            counters.already_landed += len(rows) - len(fresh)
            upload = await upload_rows(client, settings, stream, [r for r, _ in fresh], id_column)
            self._remember(fresh, upload)
            if table == "usage":
                counters.usage_landed = upload.landed
            else:
                counters.gateway_landed = upload.landed
            counters.splits += upload.splits
            for failure in upload.failures:
                if failure.permanent:
                    counters.failed += len(failure.ids)
                    _log_ids(logging.ERROR, f"{table} rows refused by Logs Ingestion", failure)
                else:
                    transient.append(failure)
        retry = bool(transient) and not final_attempt
        for failure in transient:
            if retry:
                counters.retried += len(failure.ids)
                _log_ids(logging.WARNING, "rows not landed yet; the batch is retried", failure)
            else:
                counters.failed += len(failure.ids)
                _log_ids(
                    logging.ERROR,
                    "rows not landed after the last retry; the hub keeps them for its retention "
                    "(docs/usage-analytics.md: landing them again)",
                    failure,
                )
        self._count(settings, counters)
        return BatchResult(counters, retry)

    async def aclose(self) -> None:
        async with self._lock:
            client, credential = self._client, self._credential
            self._client = self._credential = self._settings = None
        try:
            if client is not None:
                await client.close()
        finally:
            if credential is not None:
                await credential.close()

    async def _open(self) -> tuple[LandingSettings, LogsIngestionClient]:
        async with self._lock:
            if self._settings is None or self._client is None:
                settings = self._load_settings()  # ConfigError names the variable
                credential = build_credential(settings.managed_identity_client_id)
                self._client = make_client(settings, credential, **self._client_options)
                self._settings, self._credential = settings, credential
            return self._settings, self._client

    def _remember(self, fresh: list[tuple[Row, bytes]], upload: Upload) -> None:
        failed = {_digest(row) for row in upload.failed_rows}
        for _, digest in fresh:
            if digest not in failed:
                self._recent[digest] = None
        while len(self._recent) > RECENT_ROWS:
            self._recent.popitem(last=False)

    def _count(self, settings: LandingSettings, batch: LandingCounters) -> None:
        for name, value in asdict(batch).items():
            setattr(self.totals, name, getattr(self.totals, name) + value)
        notable = batch.failed or batch.retried or batch.unknown or batch.unreadable
        now = time.monotonic()
        if not notable and now - self._logged_at < self._log_seconds:
            return
        self._logged_at = now
        line = {
            "event": COUNTERS_EVENT,
            "instance_id": settings.instance_id,
            "batch": asdict(batch),
            "total": asdict(self.totals),
        }
        level = logging.WARNING if notable else logging.INFO
        log.log(level, "%s %s", COUNTERS_EVENT, json.dumps(line, separators=(",", ":")))


def _digest(row: Row) -> bytes:
    return hashlib.blake2b(
        json.dumps(row, sort_keys=True, separators=(",", ":")).encode(), digest_size=16
    ).digest()


def _log_ids(level: int, what: str, failure: Failure) -> None:
    ids = failure.ids
    for start in range(0, len(ids), IDS_PER_LINE):
        log.log(
            level,
            "usage landing: %d %s (%s): ids %s",
            len(ids),
            what,
            failure.error,
            ",".join(ids[start : start + IDS_PER_LINE]),
        )


def report_failed_batch(
    instance_id: str, sequence_numbers: Sequence[int | None], error: BaseException
) -> None:
    """The line for a batch whose last attempt raised: the checkpoint moves on without it and no
    counters line covers it. The sequence numbers say where it is in the hub, for re-landing."""
    known = [n for n in sequence_numbers if n is not None]
    line = {
        "event": BATCH_FAILED_EVENT,
        "instance_id": instance_id,
        "events": len(sequence_numbers),
        "first_sequence_number": min(known, default=None),
        "last_sequence_number": max(known, default=None),
        "error": repr(error)[:500],
    }
    log.error("%s %s", BATCH_FAILED_EVENT, json.dumps(line, separators=(",", ":")))
