"""Result shapes, percentiles and the printed table. Pure: no I/O but `print_report`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dist:
    n: int
    median: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Dist:
        ordered = sorted(values)
        if not ordered:
            return cls(0, None, None, None)
        return cls(
            len(ordered),
            round(percentile(ordered, 0.5), 3),
            round(percentile(ordered, 0.99), 3),
            round(ordered[-1], 3),
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (p99 of 100 samples is the 99th smallest)."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def added(proxy: float | None, direct: float | None) -> float | None:
    return None if proxy is None or direct is None else round(proxy - direct, 3)


def ratio(proxy: float | None, direct: float | None) -> float | None:
    return None if proxy is None or not direct else round(proxy / direct, 3)


@dataclass
class LatencyReport:
    pairs: int
    ttfb_ms: dict[str, Dist]
    event_delay_ms: dict[str, Dist]
    added_ttfb_median_ms: float | None
    added_ttfb_p99_ms: float | None
    added_event_delay_median_ms: float | None
    added_event_delay_p99_ms: float | None
    added_request_leg_median_ms: float | None  # client start -> simulator's first send
    added_first_event_median_ms: float | None  # simulator's first send -> client arrival
    errors: dict[str, int]


@dataclass
class ThroughputSide:
    requests_per_s: float
    latency_ms: Dist
    errors: dict[str, int]
    cpu_s: dict[str, float]  # process -> CPU seconds used during the phase


@dataclass
class ThroughputReport:
    clients: int
    seconds: float
    direct: ThroughputSide
    proxy: ThroughputSide
    proxy_cpu_ms_per_request: float | None


@dataclass
class StreamsSide:
    errors: dict[str, int]
    wall_s: float
    peak_open: int
    ttfb_ms: Dist
    events: int
    cpu_s: dict[str, float]


@dataclass
class Memory:
    baseline_kib: int
    peak_kib: int  # the larger of VmHWM since the reset and the sampled VmRSS maximum
    after_kib: int
    per_stream_kib: float  # (peak - baseline) / streams started
    per_open_stream_kib: float  # (peak - baseline) / most streams open at once (client side)
    hwm_reset: bool


@dataclass
class StreamsReport:
    streams: int
    direct: StreamsSide
    proxy: StreamsSide
    memory: Memory
    proxy_cpu_us_per_event: float | None


@dataclass
class UsageCheck:
    proxy_calls: int
    usage_records: int
    injected: int = 0  # records whose usage came from the include_usage the proxy injected

    @property
    def ok(self) -> bool:
        return self.proxy_calls == self.usage_records


@dataclass
class BenchResult:
    machine: dict[str, str]
    config: dict[str, object]
    latency: LatencyReport | None = None
    throughput: ThroughputReport | None = None
    streams: list[StreamsReport] = field(default_factory=list)
    usage: UsageCheck | None = None


def _f(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _row(name: str, direct: float | int | None, proxy: float | int | None, digits: int = 2) -> str:
    extra = ""
    if isinstance(direct, int | float) and isinstance(proxy, int | float):
        extra = f"{_f(ratio(proxy, direct), 3):>9}  {_f(added(proxy, direct), digits):>9}"
    return f"  {name:<38}{_f(direct, digits):>11}{_f(proxy, digits):>11}  {extra}"


def lines(result: BenchResult) -> list[str]:
    out = [f"  {'':<38}{'direct':>11}{'proxy':>11}  {'ratio':>9}  {'added':>9}"]
    lat = result.latency
    if lat is not None:
        d, p = lat.ttfb_ms["direct"], lat.ttfb_ms["proxy"]
        out.append(f"streamed chat, sequential ({lat.pairs} pairs)")
        out.append(_row("TTFB median (ms)", d.median, p.median))
        out.append(_row("TTFB p99 (ms)", d.p99, p.p99))
        d, p = lat.event_delay_ms["direct"], lat.event_delay_ms["proxy"]
        out.append(_row(f"event delay median (ms, {p.n} events)", d.median, p.median, 3))
        out.append(_row("event delay p99 (ms)", d.p99, p.p99, 3))
        out.append(
            f"  added TTFB, median: request leg {_f(lat.added_request_leg_median_ms, 3)} ms"
            f" + first event {_f(lat.added_first_event_median_ms, 3)} ms"
        )
    tp = result.throughput
    if tp is not None:
        out.append(f"non-streamed chat, {tp.clients} clients, zero model delay")
        out.append(_row("requests/s", tp.direct.requests_per_s, tp.proxy.requests_per_s, 1))
        out.append(
            _row("latency median (ms)", tp.direct.latency_ms.median, tp.proxy.latency_ms.median)
        )
        out.append(_row("latency p99 (ms)", tp.direct.latency_ms.p99, tp.proxy.latency_ms.p99))
        out.append(_row("errors", sum(tp.direct.errors.values()), sum(tp.proxy.errors.values())))
        # ms of CPU per call is s per 1,000 calls.
        out.append(f"  proxy CPU per 1,000 calls: {_f(tp.proxy_cpu_ms_per_request, 3)} s")
        out.append(_cpu_line(tp.direct.cpu_s, tp.proxy.cpu_s))
    for st in result.streams:
        out.append(f"{st.streams} concurrent streams")
        out.append(_row("errors", sum(st.direct.errors.values()), sum(st.proxy.errors.values())))
        out.append(_row("streams open at once (peak)", st.direct.peak_open, st.proxy.peak_open))
        out.append(_row("wall time (s)", st.direct.wall_s, st.proxy.wall_s))
        out.append(_row("first byte p50 (ms)", st.direct.ttfb_ms.median, st.proxy.ttfb_ms.median))
        out.append(_row("first byte p99 (ms)", st.direct.ttfb_ms.p99, st.proxy.ttfb_ms.p99))
        per_1000 = None if st.proxy_cpu_us_per_event is None else st.proxy_cpu_us_per_event / 1000
        out.append(f"  proxy CPU per 1,000 events: {_f(per_1000, 3)} s")
        out.append(_cpu_line(st.direct.cpu_s, st.proxy.cpu_s))
        m = st.memory
        out.append(
            f"  proxy RSS KiB: baseline {m.baseline_kib:,}, peak {m.peak_kib:,}, "
            f"after {m.after_kib:,}; per stream {m.per_stream_kib:,.1f} KiB "
            f"({m.per_open_stream_kib:,.1f} per stream open at once)"
        )
        for side in ("direct", "proxy"):
            errors = getattr(st, side).errors
            if errors:
                out.append(f"  {side} errors: {dict(errors)}")
    if result.usage is not None:
        u = result.usage
        verdict = "OK" if u.ok else "MISMATCH"
        out.append(
            f"usage records: {u.usage_records} for {u.proxy_calls} proxy calls: {verdict} "
            f"({u.injected} with injected usage)"
        )
    return out


def _cpu_line(direct: dict[str, float], proxy: dict[str, float]) -> str:
    """Each process's CPU seconds in the phase: on a shared machine a ratio depends on all three."""

    def side(cpu: dict[str, float]) -> str:
        return ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items())

    return f"  CPU s, direct run: {side(direct)}; proxied run: {side(proxy)}"


def print_report(result: BenchResult) -> None:
    print("machine: " + ", ".join(f"{k}={v}" for k, v in result.machine.items()))
    print("config: " + ", ".join(f"{k}={v}" for k, v in result.config.items()))
    print("\n".join(lines(result)))
