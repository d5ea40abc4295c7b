"""The benchmark (tools/bench.py) still runs end to end: tiny sizes, no timing assertions."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from aoai_bench import BenchConfig, Timing, run
from aoai_bench.cli import main, parse_args
from aoai_bench.load import StreamResult, event_delays_ms
from aoai_bench.report import lines

FAST = Timing(ttft_ms=5, token_ms=1, tokens=3)
TINY = BenchConfig(
    pairs=2,
    timing=FAST,
    clients=2,
    seconds=0.2,
    streams=(3,),
    stream_timing=FAST,
    warmup=1,
    timeout_s=10,
)


def test_benchmark_runs_every_phase_and_counts_one_usage_record_per_proxy_call(
    tmp_path: Path,
) -> None:
    result = run(TINY, workdir=tmp_path)

    assert result.usage is not None
    assert result.usage.proxy_calls > 0
    assert result.usage.ok, result.usage
    assert result.usage.injected > 0  # the streams took the proxy's include_usage path
    assert result.latency is not None
    assert result.latency.errors == {}
    assert result.latency.ttfb_ms["proxy"].n == 2
    assert result.latency.event_delay_ms["direct"].n > 0
    assert result.throughput is not None
    assert result.throughput.proxy.errors == {}
    [streams] = result.streams
    assert (streams.direct.errors, streams.proxy.errors) == ({}, {})
    assert streams.memory.peak_kib >= streams.memory.baseline_kib > 0
    assert any("usage records" in line for line in lines(result))
    json.dumps(asdict(result))  # --json must be able to write it


def test_the_worker_shaped_proxy_serves_every_phase_with_one_record_per_call(
    tmp_path: Path,
) -> None:
    config = replace(TINY, pairs=1, clients=1, seconds=0.1, streams=(2,), proxy_server="worker")

    result = run(config, workdir=tmp_path)

    assert result.usage is not None
    assert result.usage.ok, result.usage
    assert result.latency is not None
    assert result.latency.errors == {}
    assert result.throughput is not None
    assert result.throughput.proxy.errors == {}
    [streams] = result.streams
    assert streams.proxy.errors == {}
    assert result.config["proxy_server"] == "worker"


def test_event_delays_pair_the_done_event_with_the_last_send_when_usage_was_removed() -> None:
    # Through the proxy the simulator sends an extra usage event that the client never sees.
    result = StreamResult(started_ns=0, event_ns=[10_000_000, 20_000_000, 30_000_000])
    sent = [9_000_000, 19_000_000, 25_000_000, 29_000_000]

    assert event_delays_ms(result, sent) == [1.0, 1.0, 1.0]


def test_quick_flag_and_overrides_shape_the_config() -> None:
    config, json_path = parse_args(["--quick", "--streams", "10,20", "--token-ms", "3"])

    assert config.streams == (10, 20)
    assert config.timing.token_ms == config.stream_timing.token_ms == 3
    assert json_path is None


def test_usage_coverage_subcommand_measures_every_api_version(tmp_path: Path) -> None:
    out = tmp_path / "coverage.json"

    assert main(["usage-coverage", "--calls", "1", "--json", str(out)]) == 0

    rows = json.loads(out.read_text())
    assert {row["api_version"] for row in rows} >= {"2024-10-21", "v1", "2024-06-01"}
    assert all(row["ok"] and row["calls"] == 1 for row in rows)
