"""Delivery counters: one set per process, logged as one structured line that KQL can sum.

The line is `usage_delivery_counters {json}` with the counts since the previous line (`delta`, what
to sum across instances and time) and since the process started (`total`, what /healthz shows).
docs/delivery.md has the KQL.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

COUNTERS_EVENT = "usage_delivery_counters"
# Tells two processes with the same WEBSITE_INSTANCE_ID apart (a worker restart resets the counters).
PROCESS_ID = f"{os.getpid()}-{int(time.time())}"


@dataclass(slots=True)
class DeliveryCounters:
    queued: int = 0  # records accepted by submit (the sink's own counters only)
    sent: int = 0  # accepted by Event Hubs
    dead_lettered: int = 0  # written to the dead-letter store
    replayed: int = 0  # re-sent from the dead-letter store (replay timer) and deleted there
    dropped: int = 0  # lost (only a log line holds them): must stay 0; hub and store both failing at shutdown, or more parked than the bound

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class CounterLog:
    """Writes the periodic line; remembers the last totals so each line carries a delta."""

    logger: logging.Logger
    instance_id: str
    _last: dict[str, int] = field(default_factory=lambda: DeliveryCounters().as_dict())

    def emit(self, counters: DeliveryCounters, **extra: Any) -> None:
        total = counters.as_dict()
        delta = {name: total[name] - self._last.get(name, 0) for name in total}
        self._last = total
        line = {
            "event": COUNTERS_EVENT,
            "instance_id": self.instance_id,
            "process": PROCESS_ID,
            "delta": delta,
            "total": total,
            **extra,
        }
        self.logger.info("%s %s", COUNTERS_EVENT, json.dumps(line, separators=(",", ":")))
