"""Socket reads on asyncio's own event loop sized below glibc's mmap threshold.

The Functions worker serves HTTP on a plain asyncio loop (its uvicorn never installs uvloop), and
asyncio's selector transport reads every socket with `recv(256 KiB)`. That buffer is above glibc's
mmap threshold (128 KiB), so each read maps 256 KiB, then shrinks it to the bytes that came: a
small read costs about 12 µs more than a `recv(64 KiB)` served from the heap, and every kept chunk
holds a 4 KiB page. SSE events and API calls arrive in reads of a few hundred bytes: a fifth of
the proxy's CPU per relayed event in the worker shape (docs/benchmarks.md). Any size is correct
(bigger bodies take more reads); 64 KiB stays under the threshold. uvloop does its own reads and
is not affected.
"""

from __future__ import annotations

from asyncio import selector_events

READ_BYTES = 64 * 1024


def use_heap_sized_reads() -> None:
    """Every asyncio socket transport of the process, open ones included (the size is read on
    each read), reads at most READ_BYTES at a time. Datagram transports are not changed."""
    transport = getattr(selector_events, "_SelectorSocketTransport", None)  # private: not typed
    if transport is not None and hasattr(transport, "max_size"):
        transport.max_size = READ_BYTES
