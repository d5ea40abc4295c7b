"""Benchmark: the proxy against direct calls to the Azure OpenAI simulator.

Topology (three processes, no shared event loop):

    load generator (this process, httpx.AsyncClient) --+--> simulator (uvicorn, own process)
                                                       |
                                                       +--> proxy (uvicorn, own process) --> simulator

The same simulator process answers both paths, so "direct" and "through the proxy" differ only by
the proxy hop. The simulator is wrapped in `StampingApp`, which notes when each streamed event is
handed to uvicorn (CLOCK_MONOTONIC, shared by every process on the machine), so the per-event relay
delay is measured against the moment the upstream sent the event, not against another request.
Run it with `python tools/bench.py`; docs/benchmarks.md has the numbers and how to read them.
"""

from .load import Target, Timing
from .report import BenchResult
from .runner import BenchConfig, run

__all__ = ["BenchConfig", "BenchResult", "Target", "Timing", "run"]
