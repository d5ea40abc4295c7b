"""CancelOnDisconnect: the work in the `with` block stops when the client leaves, and only then is the
cancellation absorbed; any other cancellation (a server shutting down) still goes through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aoai_proxy.relay import CancelOnDisconnect


class Client:
    """An ASGI receive channel whose next message is the disconnect, once `leave()` is called."""

    def __init__(self) -> None:
        self._left = asyncio.Event()
        self.reads = 0

    def leave(self) -> None:
        self._left.set()

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        await self._left.wait()
        return {"type": "http.disconnect"}


async def _wait_in_block(client: Client, log: list[str]) -> str:
    with CancelOnDisconnect(client.receive):
        log.append("started")
        await asyncio.sleep(10)
        log.append("finished")  # never: the block is cut short
    return "left"


def test_the_block_runs_to_its_end_when_the_client_stays() -> None:
    async def main() -> tuple[str, int]:
        client = Client()
        with CancelOnDisconnect(client.receive):
            await asyncio.sleep(0.01)
            result = "done"
        await asyncio.sleep(0)  # the watcher's cancellation lands
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return result, len(others)

    assert asyncio.run(main()) == ("done", 0)  # and no watcher left behind


def test_the_block_stops_at_once_when_the_client_leaves_and_the_task_goes_on() -> None:
    async def main() -> tuple[str, list[str], int]:
        client, log = Client(), []
        task = asyncio.ensure_future(_wait_in_block(client, log))
        await asyncio.sleep(0.01)
        client.leave()
        result = await asyncio.wait_for(task, 1)
        return result, log, task.cancelling()

    result, log, cancelling = asyncio.run(main())
    assert (result, log) == ("left", ["started"])
    assert cancelling == 0  # nothing pending that would cancel a later await of that task


def test_a_cancellation_from_elsewhere_goes_through() -> None:
    async def main() -> bool:
        client = Client()
        task = asyncio.ensure_future(_wait_in_block(client, []))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait({task}, timeout=1)
        return task.cancelled()

    assert asyncio.run(main())


def test_a_cancellation_from_elsewhere_goes_through_even_if_the_client_left_too() -> None:
    async def main() -> bool:
        client = Client()
        task = asyncio.ensure_future(_wait_in_block(client, []))
        await asyncio.sleep(0.01)
        client.leave()
        task.cancel()
        await asyncio.wait({task}, timeout=1)
        return task.cancelled()

    assert asyncio.run(main())


def test_an_error_in_the_block_is_not_absorbed() -> None:
    async def main() -> None:
        with CancelOnDisconnect(Client().receive):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
