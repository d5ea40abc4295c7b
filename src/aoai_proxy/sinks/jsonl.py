"""Local JSON Lines file sink: the offline default."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from .base import UsageRecord

log = logging.getLogger(__name__)


class JsonlFileSink:
    """Appends one JSON line per record; the file stays open between records (opening it per
    record cost more than the write). Records submitted within GATHER_SECONDS are written together,
    as one buffered write, flushed, so a reader sees whole lines within that bound.

    The write runs on the event loop, from a `call_later` timer, not in a thread. A thread hop per
    batch (each carrying one or two records at a few hundred calls/s) was 22% of the proxy's CPU per
    non-streamed call (docs/benchmarks.md), while appending a few hundred bytes to an open file is
    one write(2) into the page cache: microseconds, less than the hop itself, at most once per
    GATHER_SECONDS. A thread hop only for large batches was rejected: two writers would have to be
    ordered, and a batch that large (hundreds of KiB in 20 ms) is far beyond this sink's use, the
    local and offline default; in Azure the Event Hub sink records usage. The loop can stall on the
    disk only where write(2) itself blocks (a full or remote file system), which this sink's local
    file does not expect.
    """

    GATHER_SECONDS = 0.02

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._file: TextIO | None = None
        self._pending: list[str] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._written = 0
        self._failed = 0

    def submit(self, record: UsageRecord) -> None:
        try:
            line = json.dumps(record, separators=(",", ":"), ensure_ascii=True)
            if self._flush_timer is None:
                loop = asyncio.get_running_loop()
                self._flush_timer = loop.call_later(self.GATHER_SECONDS, self._flush)
            self._pending.append(line)  # only once it will be written: never counted twice
        except Exception:  # a sink must never fail a request
            self._failed += 1
            log.exception("usage record could not be queued for %s", self._path)

    def _flush(self) -> None:
        self._flush_timer = None
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            if self._file is None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self._path.open("a", encoding="utf-8")
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()
            self._written += len(lines)
        except OSError:
            self._failed += len(lines)
            log.exception("could not write %d usage records to %s", len(lines), self._path)
            self._close_file()  # reopened for the next batch

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                log.exception("could not close %s", self._path)

    async def aclose(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()
        self._close_file()

    def health(self) -> Mapping[str, Any]:
        return {
            "sink": "jsonl",
            "path": str(self._path),
            "written": self._written,
            "failed": self._failed,
        }
