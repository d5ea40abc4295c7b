"""Exact-usage share: of the streamed calls whose client did not ask for usage, how many records
still carry Azure's exact token counts, per api-version (`python tools/bench.py --usage-coverage`).

Chat completions are measured on every api-version in VERSIONS; the Responses API only where Azure
offers it (from 2025-03-01-preview, and v1). The goal is 100% everywhere but on 2024-06-01, which
predates `stream_options`: 0% there, each record saying why. docs/usage-record.md has the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from aoai_proxy.config import Settings
from aoai_simulator import SimulatorSettings

from .servers import start_proxy, start_simulator

V1 = "v1"
NEWEST_PREVIEW = "2025-04-01-preview"
FUTURE_PREVIEW = "2030-01-01-preview"  # newer than any version the proxy was written against
BEFORE_STREAM_USAGE = "2024-06-01"
# (api-version, operations measured, expected share of records with exact usage)
VERSIONS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("2024-08-01-preview", ("chat",), 1.0),
    ("2024-10-21", ("chat",), 1.0),
    (NEWEST_PREVIEW, ("chat", "responses"), 1.0),
    (FUTURE_PREVIEW, ("chat", "responses"), 1.0),
    (V1, ("chat", "responses"), 1.0),
    (BEFORE_STREAM_USAGE, ("chat",), 0.0),
)
_DEPLOYMENT = "gpt-4o-mini"
_MESSAGES = [{"role": "user", "content": "How many tokens is this?"}]
_TIMING = {"x-sim-ttft-ms": "2", "x-sim-token-ms": "1", "x-sim-tokens": "8"}


@dataclass(frozen=True)
class Share:
    api_version: str
    operation: str
    expected: float
    calls: int = 0
    exact: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # source_reason of the others

    @property
    def share(self) -> float:
        return self.exact / self.calls if self.calls else 0.0

    @property
    def ok(self) -> bool:
        return self.calls > 0 and self.share == self.expected


def _request(api_version: str, operation: str) -> tuple[str, dict[str, Any]]:
    """A streamed call as a client that does not ask for usage sends it."""
    if operation == "chat":
        body: dict[str, Any] = {"messages": _MESSAGES, "stream": True}
        if api_version == V1:
            return "/openai/v1/chat/completions", {**body, "model": _DEPLOYMENT}
        path = f"/openai/deployments/{_DEPLOYMENT}/chat/completions?api-version={api_version}"
        return path, body
    body = {"model": _DEPLOYMENT, "input": "How many tokens is this?", "stream": True}
    if api_version == V1:
        return "/openai/v1/responses", body
    return f"/openai/responses?api-version={api_version}", body


async def drive(client: httpx.AsyncClient, calls_per_case: int) -> int:
    """Sends every case `calls_per_case` times (a few at once); returns how many calls were sent."""
    cases = [(v, op) for v, operations, _ in VERSIONS for op in operations]

    async def one(api_version: str, operation: str) -> None:
        path, body = _request(api_version, operation)
        async with client.stream("POST", path, json=body, headers=_TIMING) as response:
            await response.aread()
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")

    for _ in range(calls_per_case):
        await asyncio.gather(*(one(v, op) for v, op in cases))
    return calls_per_case * len(cases)


def shares(records: Iterable[dict[str, Any]]) -> list[Share]:
    """The exact-usage share per measured (api-version, operation), in VERSIONS order."""
    found: dict[tuple[str, str], Share] = {
        (v, op): Share(v, op, expected) for v, operations, expected in VERSIONS for op in operations
    }
    for record in records:
        request, usage = record["request"], record["usage"]
        key = (request["api_version"] or V1, request["operation"])
        if key not in found or not request["stream"]:
            continue
        share = found[key]
        exact = usage["source"] in ("provider", "injected") and usage["total_tokens"] is not None
        reasons = dict(share.reasons)
        if not exact:
            reason = str(usage["source_reason"])
            reasons[reason] = reasons.get(reason, 0) + 1
        found[key] = replace(
            share, calls=share.calls + 1, exact=share.exact + int(exact), reasons=reasons
        )
    return list(found.values())


def lines(results: list[Share]) -> list[str]:
    out = [
        "Exact usage on streamed calls that did not ask for it (goal: 100%; 0% before stream_options)",
        f"{'api-version':<20} {'operation':<10} {'calls':>5} {'exact':>6}  without usage",
    ]
    for s in results:
        why = ", ".join(f"{reason} x{n}" for reason, n in sorted(s.reasons.items())) or "-"
        mark = "" if s.ok else f"   <-- expected {s.expected:.0%}"
        out.append(
            f"{s.api_version:<20} {s.operation:<10} {s.calls:>5} {s.share:>6.0%}  {why}{mark}"
        )
    return out


def run_coverage(workdir: Path, calls_per_case: int = 10) -> list[Share]:
    """Starts the simulator and the proxy (own processes, loopback), sends the calls, and reads
    the proxy's records once it has stopped and flushed them."""
    simulator = start_simulator(SimulatorSettings())
    usage_path = workdir / "usage-coverage.jsonl"
    try:
        settings = Settings(
            openai_endpoint=simulator.url,
            upstream_auth="none",
            sink="jsonl",
            usage_log_path=str(usage_path),
        )
        proxy = start_proxy(settings)
        try:
            asyncio.run(_drive(proxy.url, calls_per_case))
        finally:
            proxy.stop()
    finally:
        simulator.stop()
    records = [json.loads(line) for line in usage_path.read_text().splitlines()]
    return shares(records)


async def _drive(url: str, calls_per_case: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        await drive(client, calls_per_case)


def main(argv: Sequence[str] | None = None) -> int:
    """`python tools/bench.py usage-coverage [--calls N] [--json PATH]`; fails unless every share
    is what VERSIONS expects."""
    parser = argparse.ArgumentParser(
        prog="bench.py usage-coverage",
        description="Share of streamed calls recorded with exact usage, per api-version.",
    )
    parser.add_argument("--calls", type=int, default=10, help="calls per api-version and API")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usage-coverage-") as workdir:
        results = run_coverage(Path(workdir), max(1, args.calls))
    print("\n".join(lines(results)))
    if args.json is not None:
        payload = [{**vars(s), "share": s.share, "ok": s.ok} for s in results]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(s.ok for s in results) else 1
