"""The load generator: httpx.AsyncClient calls, each timed at the client with CLOCK_MONOTONIC.

Every function here takes its client and targets explicitly and returns plain results; nothing is
kept between calls. Errors are counted by kind, never raised, so an overloaded run still reports.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx

from . import rawload
from .servers import STAMP_HEADER, STAMPS_PATH

Target = Literal["direct", "proxy"]
LoadClient = Literal["raw", "httpx"]

# An api-version the proxy injects include_usage on: it asks upstream for the usage and removes it
# again, the production path for clients that do not ask for usage themselves.
API_VERSION = "2025-04-01-preview"
CHAT_PATH = f"/openai/deployments/gpt-4o-mini/chat/completions?api-version={API_VERSION}"
_MESSAGES = [{"role": "user", "content": "Write a haiku about latency."}]
STREAM_BODY: dict[str, object] = {"messages": _MESSAGES, "stream": True}
JSON_BODY: dict[str, object] = {"messages": _MESSAGES}
_DONE = b"data: [DONE]\n\n"
SHARD_STREAMS = 32


@dataclass(frozen=True)
class Timing:
    """Simulator pacing, sent per request (x-sim-* headers pass through the proxy unchanged)."""

    ttft_ms: float
    token_ms: float
    tokens: int

    def headers(self) -> dict[str, str]:
        return {
            "x-sim-ttft-ms": f"{self.ttft_ms:g}",
            "x-sim-token-ms": f"{self.token_ms:g}",
            "x-sim-tokens": str(self.tokens),
        }


@dataclass
class StreamResult:
    started_ns: int
    first_byte_ns: int | None = None
    event_ns: list[int] = field(default_factory=list)  # client arrival time of each event
    error: str | None = None

    @property
    def ttfb_ms(self) -> float | None:
        return None if self.first_byte_ns is None else (self.first_byte_ns - self.started_ns) / 1e6


@dataclass
class Gauge:
    """Streams with response headers received and not yet finished (per phase)."""

    now: int = 0
    peak: int = 0

    def up(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def down(self) -> None:
        self.now -= 1


async def read_stream(
    client: httpx.AsyncClient,
    base_url: str,
    timing: Timing,
    *,
    bench_id: str | None = None,
    gauge: Gauge | None = None,
) -> StreamResult:
    """One streamed chat call; each SSE event is timestamped when its last byte arrives."""
    headers = timing.headers()
    if bench_id is not None:
        headers[STAMP_HEADER] = bench_id
    result = StreamResult(started_ns=time.monotonic_ns())
    try:
        async with client.stream(
            "POST", base_url + CHAT_PATH, json=STREAM_BODY, headers=headers
        ) as response:
            if gauge is not None:
                gauge.up()
            try:
                tail = b""
                async for chunk in response.aiter_raw():
                    arrived = time.monotonic_ns()
                    if result.first_byte_ns is None:
                        result.first_byte_ns = arrived
                    # The simulator frames events with "\n\n"; count the ends this chunk completes.
                    ends = (tail[-1:] + chunk).count(b"\n\n")
                    result.event_ns.extend([arrived] * ends)
                    tail = (tail + chunk)[-len(_DONE) :]
            finally:
                if gauge is not None:
                    gauge.down()
            if response.status_code != 200:
                result.error = f"status {response.status_code}"
            elif tail != _DONE:
                result.error = "stream ended without [DONE]"
    except httpx.HTTPError as exc:
        result.error = type(exc).__name__
    return result


@dataclass
class Phase:
    """What a phase did: proxy calls made (for the usage-record check) and errors by kind."""

    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def stream_pairs(
    client: httpx.AsyncClient,
    urls: dict[Target, str],
    timing: Timing,
    pairs: int,
) -> tuple[dict[Target, list[StreamResult]], dict[str, list[int]], Phase]:
    """Sequential streams, direct and proxied alternately (order swapped every pair), one at a time
    so that nothing but the hop differs. Returns the results (the i-th has stamp_id(target, i))
    and the simulator's send stamps."""
    results: dict[Target, list[StreamResult]] = {"direct": [], "proxy": []}
    phase = Phase()
    for index in range(pairs):
        order: tuple[Target, Target] = ("direct", "proxy") if index % 2 else ("proxy", "direct")
        for target in order:
            result = await read_stream(
                client, urls[target], timing, bench_id=stamp_id(target, index)
            )
            phase.calls += target == "proxy"
            if result.error:
                phase.errors[f"{target}: {result.error}"] += 1
            results[target].append(result)
    return results, await fetch_stamps(client, urls["direct"]), phase


def stamp_id(target: Target, index: int) -> str:
    return f"{target}-{index}"


async def fetch_stamps(client: httpx.AsyncClient, simulator_url: str) -> dict[str, list[int]]:
    response = await client.get(simulator_url + STAMPS_PATH)
    response.raise_for_status()
    stamps: dict[str, list[int]] = response.json()
    return stamps


def event_delays_ms(result: StreamResult, sent_ns: list[int]) -> list[float]:
    """Client arrival minus simulator send, per event. Through the proxy the simulator sends one
    event more (the injected usage event, removed by the proxy just before [DONE]): events pair up
    by position, and the final [DONE] with the final send."""
    arrived = result.event_ns
    if not arrived or len(sent_ns) < len(arrived):
        return []
    pairs = list(zip(arrived[:-1], sent_ns[: len(arrived) - 1], strict=True))
    pairs.append((arrived[-1], sent_ns[-1]))
    return [(a - s) / 1e6 for a, s in pairs]


@dataclass
class Throughput:
    requests: int
    seconds: float
    latencies_ms: list[float]
    phase: Phase


async def throughput(
    base_url: str,
    target: Target,
    clients: int,
    seconds: float,
    timeout_s: float,
    load_client: LoadClient = "raw",
) -> Throughput:
    """`clients` workers each sending non-streamed chat calls back to back for `seconds`, with
    zero simulator delay: what the hop costs when nothing waits on the model. Each target gets
    fresh connections, so idle connections to the other target cannot slow the pool. `raw`: the
    lean client of aoai_bench.rawload; `httpx`: httpx clients (see `sharded`)."""
    zero = Timing(0, 0, 20).headers()
    latencies: list[float] = []
    phase = Phase()

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        while time.monotonic() < deadline:
            sent = time.monotonic_ns()
            phase.calls += target == "proxy"
            try:
                response = await client.post(base_url + CHAT_PATH, json=JSON_BODY, headers=zero)
            except httpx.HTTPError as exc:
                phase.errors[type(exc).__name__] += 1
                continue
            if response.status_code != 200:
                phase.errors[f"status {response.status_code}"] += 1
                continue
            latencies.append((time.monotonic_ns() - sent) / 1e6)

    if load_client == "raw":
        request = rawload.build_request(base_url, CHAT_PATH, JSON_BODY, zero)
        errors: dict[str, int] = {}
        started = time.monotonic()
        deadline = started + seconds
        counts = await asyncio.gather(
            *(
                rawload.caller(base_url, request, deadline, latencies, errors, timeout_s)
                for _ in range(clients)
            )
        )
        elapsed = time.monotonic() - started
        phase.calls += sum(counts) if target == "proxy" else 0
        phase.errors.update(errors)
        return Throughput(len(latencies), elapsed, latencies, phase)
    async with sharded(clients, timeout_s) as pool:
        started = time.monotonic()
        await asyncio.gather(*(worker(client, started + seconds) for client in pool))
        elapsed = time.monotonic() - started
    return Throughput(len(latencies), elapsed, latencies, phase)


@dataclass
class Streams:
    results: list[StreamResult]
    seconds: float
    peak_open: int
    errors: Counter[str]


async def concurrent_streams(
    base_url: str, count: int, timing: Timing, timeout_s: float
) -> Streams:
    """`count` streams started at once; counts errors, wall time and how many were open together."""
    gauge = Gauge()
    async with sharded(count, timeout_s) as pool:
        started = time.monotonic()
        results = await asyncio.gather(
            *(read_stream(client, base_url, timing, gauge=gauge) for client in pool)
        )
        seconds = time.monotonic() - started
    errors = Counter(r.error for r in results if r.error)
    return Streams(list(results), seconds, gauge.peak, errors)


@asynccontextmanager
async def sharded(count: int, timeout_s: float) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` slots (one per concurrent caller) over one fresh client per SHARD_STREAMS callers.

    httpcore 1.0's pool rescans every connection for each idle one whenever a request starts or a
    response closes (`_assign_requests_to_connections`, encode/httpcore#1035): cubic over a burst
    of stream ends. Small pools keep that cost, and the load generator, out of the measurement."""
    async with AsyncExitStack() as stack:
        shards = [
            await stack.enter_async_context(new_client(SHARD_STREAMS, timeout_s))
            for _ in range(-(-count // SHARD_STREAMS))
        ]
        yield [shards[i % len(shards)] for i in range(count)]


def new_client(connections: int, timeout_s: float) -> httpx.AsyncClient:
    """One pooled client; the pool is sized so that no call waits for a connection."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(timeout_s),
        trust_env=False,
    )
