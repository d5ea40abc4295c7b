"""Logging sink: one structured log line per record (stdout locally, traces in Application Insights)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from .base import UsageRecord

log = logging.getLogger("aoai_proxy.usage")


class LogSink:
    def __init__(self) -> None:
        self._logged = 0

    def submit(self, record: UsageRecord) -> None:
        try:
            log.info("usage %s", json.dumps(record, separators=(",", ":"), ensure_ascii=True))
            self._logged += 1
        except Exception:  # a sink must never fail a request
            log.exception("usage record could not be logged")

    async def aclose(self) -> None:
        return None

    def health(self) -> Mapping[str, Any]:
        return {"sink": "log", "logged": self._logged}
