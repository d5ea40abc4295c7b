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


async def test_submit_returns_at_once_and_the_record_is_in_the_file_within_the_gather_bound(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlFileSink(path)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sink.submit({"record_id": "1"})
    assert not path.exists()  # nothing touched the disk in submit
    await _written(sink, 1)
    # Loop time: a loaded machine may run the timer late, but never early, and not by seconds.
    assert JsonlFileSink.GATHER_SECONDS <= loop.time() - started < 1.0
    assert path.read_text(encoding="utf-8") == '{"record_id":"1"}\n'
    await sink.aclose()


async def test_aclose_writes_what_is_pending_at_once(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    sink = JsonlFileSink(path)
    sink.submit({"record_id": "1"})
    sink.submit({"record_id": "2"})
    await sink.aclose()  # before the gather timer fired
    assert [json.loads(line)["record_id"] for line in path.read_text().splitlines()] == ["1", "2"]
    assert sink.health()["written"] == 2
    await asyncio.sleep(JsonlFileSink.GATHER_SECONDS * 2)  # the cancelled timer writes nothing
    assert len(path.read_text().splitlines()) == 2


async def test_a_failed_write_is_counted_and_the_file_reopened_for_the_next_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "usage.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC, as on a full disk
    sink = JsonlFileSink(path)
    sink.submit({"record_id": "1"})
    sink.submit({"record_id": "2"})
    for _ in range(500):
        if sink.health()["failed"]:
            break
        await asyncio.sleep(0.01)
    assert sink.health() | {"path": ""} == {"sink": "jsonl", "path": "", "written": 0, "failed": 2}
    path.unlink()  # the disk has room again: the next batch opens the path anew
    sink.submit({"record_id": "3"})
    await sink.aclose()
    assert path.read_text(encoding="utf-8") == '{"record_id":"3"}\n'
    assert (sink.health()["written"], sink.health()["failed"]) == (1, 2)


async def test_submit_never_raises(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path / "usage.jsonl")
    sink.submit({"record_id": "1", "bad": object()})  # not JSON
    sink.submit({"record_id": "2"})
    await sink.aclose()
    assert (sink.health()["written"], sink.health()["failed"]) == (1, 1)


def test_submit_without_a_running_loop_counts_a_failure_instead_of_raising(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path / "usage.jsonl")
    sink.submit({"record_id": "1"})
    assert sink.health()["failed"] == 1
    asyncio.run(sink.aclose())  # the failed record is not written later
    assert not (tmp_path / "usage.jsonl").exists()
    assert (sink.health()["written"], sink.health()["failed"]) == (0, 1)
