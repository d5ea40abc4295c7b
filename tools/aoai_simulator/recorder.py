"""What the simulator received and sent, kept in memory so tests can assert on the upstream side.

The recorder is written from the server's event loop and read from test threads: a bounded deque
(appends are atomic in CPython) and snapshot copies keep that safe without locks.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float  # time.monotonic()
    status: int | None = None
    # For streams: each event's bytes and the monotonic time it was handed to the server.
    events: list[bytes] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)
    completed: bool = False  # the whole response was sent
    disconnected: bool = False  # the client went away before the end
    cut: bool = False  # x-sim-fail-after dropped the connection on purpose

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    def __init__(self, maxlen: int = 1000) -> None:
        self._items: deque[RecordedRequest] = deque(maxlen=maxlen)

    def add(self, item: RecordedRequest) -> None:
        self._items.append(item)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot, oldest first."""
        return list(self._items)

    def last(self) -> RecordedRequest:
        if not self._items:
            raise LookupError("the simulator has received no request yet")
        return self._items[-1]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
