"""One benchmark run: start the servers, run the phases, stop them, check the usage records."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from aoai_bench_proxy import raise_fd_limit
from aoai_proxy.config import Settings
from aoai_simulator import SimulatorSettings

from . import load
from .load import Target, Timing
from .metrics import cpu_delta, cpu_snapshot, machine, peak_rss
from .report import (
    BenchResult,
    Dist,
    LatencyReport,
    Memory,
    StreamsReport,
    StreamsSide,
    ThroughputReport,
    ThroughputSide,
    UsageCheck,
    added,
)
from .servers import ProxyShape, ServerProcess, start_proxy, start_simulator

# Chunk timing like a small Azure OpenAI chat model (the simulator's default inter-token delay); the
# time to first token is shorter than Azure's so the sequential phase stays short: it is the same
# constant on both paths and cancels out of every "added" figure.
LATENCY_TIMING = Timing(ttft_ms=50, token_ms=15, tokens=20)
STREAMS_TIMING = Timing(ttft_ms=150, token_ms=15, tokens=50)


@dataclass(frozen=True)
class BenchConfig:
    pairs: int = 100  # sequential direct/proxy stream pairs for TTFB and per-event delay
    timing: Timing = LATENCY_TIMING
    clients: int = 50  # concurrent clients in the non-streamed throughput phase
    seconds: float = 5.0  # length of each throughput phase
    streams: tuple[int, ...] = (100, 500, 1000)
    stream_timing: Timing = STREAMS_TIMING
    warmup: int = 10
    timeout_s: float = 120.0
    sample_s: float = 0.01  # RSS sampling interval
    # "local": the proxy's ASGI adapter under uvicorn[standard] (httptools, uvloop), as local runs;
    # "worker": shaped like the Functions Python worker (aoai_bench_proxy.serve_worker).
    proxy_server: ProxyShape = "local"
    # The throughput phase's load generator (aoai_bench.rawload): "raw" (lean), or "httpx".
    load_client: load.LoadClient = "raw"


@dataclass
class _Proxies:
    """Every proxy process of the run with its usage file and the calls sent to it."""

    simulator_url: str
    workdir: Path
    shape: ProxyShape
    calls: Counter[Path] = field(default_factory=Counter)

    def start(self) -> tuple[ServerProcess, Path]:
        path = self.workdir / f"usage-{len(self.calls)}.jsonl"
        self.calls[path] += 0
        settings = Settings(
            openai_endpoint=self.simulator_url,
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(path),
        )
        return start_proxy(settings, self.shape), path

    def check(self) -> UsageCheck:
        records = [
            json.loads(line)
            for path in self.calls
            if path.exists()
            for line in path.read_bytes().splitlines()
        ]
        injected = sum(1 for r in records if r.get("usage", {}).get("source") == "injected")
        return UsageCheck(sum(self.calls.values()), len(records), injected)


async def _warm(client: httpx.AsyncClient, url: str, count: int, timing: Timing) -> None:
    await asyncio.gather(*(load.read_stream(client, url, timing) for _ in range(count)))
    for _ in range(count):
        await client.post(
            url + load.CHAT_PATH, json=load.JSON_BODY, headers=Timing(0, 0, 5).headers()
        )


async def _latency(
    client: httpx.AsyncClient, urls: dict[Target, str], config: BenchConfig
) -> tuple[LatencyReport, int]:
    results, stamps, phase = await load.stream_pairs(client, urls, config.timing, config.pairs)
    ttfb: dict[str, Dist] = {}
    delays: dict[str, Dist] = {}
    request_leg: dict[str, Dist] = {}
    first_event: dict[str, Dist] = {}
    for target, runs in results.items():
        ok = [(r, stamps.get(load.stamp_id(target, i), [])) for i, r in enumerate(runs)]
        ok = [(r, sent) for r, sent in ok if not r.error and r.ttfb_ms is not None and sent]
        per_stream = [load.event_delays_ms(r, sent) for r, sent in ok]
        ttfb[target] = Dist.of([r.ttfb_ms for r, _ in ok if r.ttfb_ms is not None])
        delays[target] = Dist.of([delay for stream in per_stream for delay in stream])
        # TTFB = request leg (client start -> simulator sends event 0, the model time included)
        # + first-event leg (simulator send -> client arrival): where the added TTFB comes from.
        request_leg[target] = Dist.of([(sent[0] - r.started_ns) / 1e6 for r, sent in ok])
        first_event[target] = Dist.of([stream[0] for stream in per_stream if stream])
    report = LatencyReport(
        pairs=config.pairs,
        ttfb_ms=ttfb,
        event_delay_ms=delays,
        added_ttfb_median_ms=added(ttfb["proxy"].median, ttfb["direct"].median),
        added_ttfb_p99_ms=added(ttfb["proxy"].p99, ttfb["direct"].p99),
        added_event_delay_median_ms=added(delays["proxy"].median, delays["direct"].median),
        added_event_delay_p99_ms=added(delays["proxy"].p99, delays["direct"].p99),
        added_request_leg_median_ms=added(
            request_leg["proxy"].median, request_leg["direct"].median
        ),
        added_first_event_median_ms=added(
            first_event["proxy"].median, first_event["direct"].median
        ),
        errors=dict(phase.errors),
    )
    return report, phase.calls


async def _throughput(
    servers: dict[str, ServerProcess],
    urls: dict[Target, str],
    config: BenchConfig,
) -> tuple[ThroughputReport, int]:
    sides: dict[Target, ThroughputSide] = {}
    calls = 0
    proxy_requests = 0
    targets: tuple[Target, Target] = ("direct", "proxy")
    for target in targets:
        before = cpu_snapshot(servers)
        result = await load.throughput(
            urls[target],
            target,
            config.clients,
            config.seconds,
            config.timeout_s,
            config.load_client,
        )
        cpu = cpu_delta(before, cpu_snapshot(servers))
        calls += result.phase.calls
        sides[target] = ThroughputSide(
            requests_per_s=round(result.requests / result.seconds, 1),
            latency_ms=Dist.of(result.latencies_ms),
            errors=dict(result.phase.errors),
            cpu_s=cpu,
        )
        if target == "proxy":
            proxy_requests = result.requests
    proxy_cpu = sides["proxy"].cpu_s["proxy"]
    report = ThroughputReport(
        clients=config.clients,
        seconds=config.seconds,
        direct=sides["direct"],
        proxy=sides["proxy"],
        proxy_cpu_ms_per_request=(
            round(proxy_cpu * 1000 / proxy_requests, 3) if proxy_requests else None
        ),
    )
    return report, calls


async def _stream_side(
    servers: dict[str, ServerProcess],
    url: str,
    count: int,
    config: BenchConfig,
) -> StreamsSide:
    before = cpu_snapshot(servers)
    run = await load.concurrent_streams(url, count, config.stream_timing, config.timeout_s)
    return StreamsSide(
        errors=dict(run.errors),
        wall_s=round(run.seconds, 3),
        peak_open=run.peak_open,
        ttfb_ms=Dist.of([r.ttfb_ms for r in run.results if r.ttfb_ms is not None]),
        events=sum(len(r.event_ns) for r in run.results),
        cpu_s=cpu_delta(before, cpu_snapshot(servers)),
    )


async def _streams(
    count: int, simulator: ServerProcess, proxies: _Proxies, config: BenchConfig
) -> StreamsReport:
    """One concurrency level: direct, then a fresh proxy process (so memory starts from a clean
    baseline) warmed up, then the same load through it."""
    proxy, usage_path = proxies.start()
    servers = {"simulator": simulator, "proxy": proxy}
    urls: dict[Target, str] = {"direct": simulator.url, "proxy": proxy.url}
    sides: dict[Target, StreamsSide] = {}
    try:
        async with load.new_client(config.warmup, config.timeout_s) as client:
            await _warm(client, proxy.url, config.warmup, config.timing)
        proxies.calls[usage_path] += 2 * config.warmup
        sides["direct"] = await _stream_side(servers, urls["direct"], count, config)
        baseline = proxy.rss_kib()
        reset = proxy.reset_hwm()
        with peak_rss(proxy, config.sample_s) as peak:
            sides["proxy"] = await _stream_side(servers, urls["proxy"], count, config)
        proxies.calls[usage_path] += count
        peak_kib = max(peak[0], proxy.hwm_kib() if reset else 0)
        memory = Memory(
            baseline_kib=baseline,
            peak_kib=peak_kib,
            after_kib=proxy.rss_kib(),
            per_stream_kib=round((peak_kib - baseline) / count, 1),
            per_open_stream_kib=round((peak_kib - baseline) / max(sides["proxy"].peak_open, 1), 1),
            hwm_reset=reset,
        )
    finally:
        proxy.stop()
    events = sides["proxy"].events
    return StreamsReport(
        streams=count,
        direct=sides["direct"],
        proxy=sides["proxy"],
        memory=memory,
        proxy_cpu_us_per_event=(
            round(sides["proxy"].cpu_s["proxy"] * 1e6 / events, 1) if events else None
        ),
    )


async def _run(config: BenchConfig, workdir: Path, result: BenchResult) -> None:
    simulator = start_simulator(SimulatorSettings(recorder_size=16))
    proxies = _Proxies(simulator.url, workdir, config.proxy_server)
    try:
        proxy, usage_path = proxies.start()
        servers = {"simulator": simulator, "proxy": proxy}
        urls: dict[Target, str] = {"direct": simulator.url, "proxy": proxy.url}
        try:
            async with load.new_client(config.warmup, config.timeout_s) as client:
                await _warm(client, proxy.url, config.warmup, config.timing)
                await _warm(client, simulator.url, config.warmup, config.timing)
                proxies.calls[usage_path] += 2 * config.warmup
                result.latency, calls = await _latency(client, urls, config)
                proxies.calls[usage_path] += calls
            result.throughput, calls = await _throughput(servers, urls, config)
            proxies.calls[usage_path] += calls
        finally:
            proxy.stop()
        for count in config.streams:
            result.streams.append(await _streams(count, simulator, proxies, config))
    finally:
        simulator.stop()
    result.usage = proxies.check()


def run(config: BenchConfig, workdir: Path | None = None) -> BenchResult:
    """The whole benchmark in this process (the load generator) and two server processes."""
    raise_fd_limit()
    result = BenchResult(machine=machine(), config=_describe(config))
    with tempfile.TemporaryDirectory(prefix="aoai-bench-") as scratch:
        asyncio.run(_run(config, workdir or Path(scratch), result))
    return result


def _describe(config: BenchConfig) -> dict[str, object]:
    described = asdict(config)
    described["streams"] = list(config.streams)
    return described
