"""Command line: `python tools/bench.py [--quick] [--streams 100,500,1000] [--json out.json]`,
or `python tools/bench.py usage-coverage [--calls N]` (the exact-usage share per api-version)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from . import coverage
from .load import Timing
from .report import print_report
from .runner import BenchConfig, run

QUICK = BenchConfig(pairs=20, clients=20, seconds=2.0, streams=(50, 200), warmup=5)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 100,500,1000; got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers; got {text!r}")
    return counts


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, Path | None]:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Direct-to-simulator vs through-the-proxy: TTFB, per-event delay, "
        "throughput, concurrent streams and proxy memory.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about half a minute)")
    parser.add_argument("--streams", type=_counts, help="concurrency levels, e.g. 100,500,1000")
    parser.add_argument("--pairs", type=int, help="sequential direct/proxy stream pairs")
    parser.add_argument("--clients", type=int, help="concurrent clients, non-streamed phase")
    parser.add_argument("--seconds", type=float, help="length of each throughput phase")
    parser.add_argument("--ttft-ms", type=float, help="simulated time to first token")
    parser.add_argument("--token-ms", type=float, help="simulated delay between stream events")
    parser.add_argument(
        "--proxy-server",
        choices=("local", "worker"),
        help="local: uvicorn[standard] as local runs (default); worker: shaped like the Functions "
        "Python worker (uvicorn defaults, asyncio loop, FastAPI catch-all, src/requirements.txt)",
    )
    parser.add_argument(
        "--load-client",
        choices=("raw", "httpx"),
        help="the non-streamed phase's load generator: raw (lean keep-alive HTTP/1.1, default) "
        "or httpx (CPU-hungry: on 2 cores it sets the pace)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else BenchConfig()
    overrides = {
        name: getattr(args, name)
        for name in ("streams", "pairs", "clients", "seconds", "proxy_server", "load_client")
        if getattr(args, name) is not None
    }
    config = replace(config, **overrides)

    def paced(timing: Timing) -> Timing:
        if args.ttft_ms is not None:
            timing = replace(timing, ttft_ms=args.ttft_ms)
        if args.token_ms is not None:
            timing = replace(timing, token_ms=args.token_ms)
        return timing

    config = replace(config, timing=paced(config.timing), stream_timing=paced(config.stream_timing))
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["usage-coverage"]:
        return coverage.main(args[1:])
    config, json_path = parse_args(args)
    result = run(config)
    print_report(result)
    if json_path is not None:
        payload = asdict(result)
        payload["usage"] = {**payload["usage"], "ok": result.usage.ok if result.usage else False}
        json_path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {json_path}")
    # The usage-record count is a correctness check: a mismatch fails the run.
    return 0 if result.usage is not None and result.usage.ok else 1


if __name__ == "__main__":
    sys.exit(main())
