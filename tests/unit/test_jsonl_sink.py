"""The local JSONL sink: one whole line per record, in order, from one file handle kept open."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aoai_proxy.sinks.jsonl import JsonlFileSink


async def test_records_are_whole_lines_in_order_and_the_file_stays_open(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "usage.jsonl"
    sink = JsonlFileSink(path)
    sink.submit({"record_id": "1", "text": "Zoë"})
    await sink.aclose()  # waits for the writer; the file is closed only here
    sink = JsonlFileSink(path)
    for index in range(2, 5):
        sink.submit({"record_id": str(index)})
    await _written(sink, 3)
    # The handle opened for the first batch is the one later batches use: a file moved away
    # (rotated) keeps receiving them.
    moved = path.rename(tmp_path / "moved.jsonl")
    sink.submit({"record_id": "5"})
    await sink.aclose()
    assert not path.exists()
    lines = moved.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["record_id"] for line in lines] == ["1", "2", "3", "4", "5"]
    assert lines[0] == '{"record_id":"1","text":"Zo\\u00eb"}'  # ASCII JSON
    assert sink.health()["written"] == 4


async def _written(sink: JsonlFileSink, count: int) -> None:
    for _ in range(500):
        if sink.health()["written"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} records not written in 5 s")
