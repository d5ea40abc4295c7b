"""Replay of recorded Azure OpenAI answers (`x-sim-replay: NAME`), byte for byte.

A recording is NAME.meta.json (status, headers, body_file) next to its body file, the layout of
../shared/fixtures/azure-openai/. Recordings are read once and cached; streams are re-split into
events on blank lines so they can be paced like generated ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .wire import Event

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class UnknownRecording(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Recording:
    status: int
    headers: dict[str, str]
    body: bytes
    is_stream: bool

    def events(self) -> list[Event]:
        """The body split after each blank line (`\\n\\n`), delimiters kept, so the events joined
        are exactly the recorded bytes."""
        events: list[Event] = []
        start = 0
        while start < len(self.body):
            end = self.body.find(b"\n\n", start)
            end = len(self.body) if end < 0 else end + 2
            chunk = self.body[start:end]
            events.append(Event(chunk, _carries_content(chunk)))
            start = end
        return events


def _carries_content(event: bytes) -> bool:
    text_delta = b'"delta":{"content":"' in event and b'"delta":{"content":""' not in event
    return text_delta or b'"tool_calls":[' in event or b"output_text.delta" in event


class ReplayStore:
    def __init__(self, root: Path | None) -> None:
        self._root = root
        self._cache: dict[str, Recording] = {}

    def get(self, name: str) -> Recording:
        if self._root is None:
            raise UnknownRecording("replay needs SimulatorSettings.fixtures_dir")
        if not _NAME.fullmatch(name) or name.endswith(".meta"):
            raise UnknownRecording(f"not a recording name: {name!r}")
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        meta_path = self._root / f"{name}.meta.json"
        if not meta_path.is_file():
            raise UnknownRecording(f"no recording {name!r} in {self._root}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        body = (self._root / meta["body_file"]).read_bytes()
        # Headers are a list of pairs in the recordings; a dict keeps their order.
        headers = {str(k): str(v) for k, v in meta["headers"]}
        recording = Recording(
            status=int(meta["status"]),
            headers=headers,
            body=body,
            is_stream=meta.get("kind") == "sse",
        )
        self._cache[name] = recording
        return recording
