"""What a platform engineer looks at first: calls, errors, tokens and latency from usage records.

    python -m aoai_proxy.report usage.jsonl [more.jsonl ...] [--by subscription|deployment|both]

Reads JSONL files of usage records (`-` is standard input) and prints one aligned table per
APIM subscription and one per deployment. Records of other types (APIM's `"type": "gateway"` events
share the hub) are skipped, and lines that are not JSON objects are counted, never fatal. Field
meanings: docs/usage-record.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

GroupBy = Literal["subscription", "deployment", "both"]
NO_SUBSCRIPTION = "(no subscription)"
NO_DEPLOYMENT = "(no deployment)"
MALFORMED_SHOWN = 5


@dataclass(slots=True)
class Inputs:
    """What the files held: usage records, and everything that was not one."""

    records: list[Mapping[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # by `type`
    malformed: list[str] = field(default_factory=list)  # "file:line"


@dataclass(slots=True)
class Group:
    """Totals for one subscription or deployment (or all of them)."""

    calls: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    no_usage: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    duration_ms: list[float] = field(default_factory=list)

    def add(self, record: Mapping[str, Any]) -> None:
        usage, timings = _section(record, "usage"), _section(record, "timings")
        self.calls += 1
        self.errors += is_error(record)
        self.prompt_tokens += _int(usage.get("prompt_tokens"))
        self.completion_tokens += _int(usage.get("completion_tokens"))
        self.total_tokens += _int(usage.get("total_tokens"))
        self.no_usage += usage.get("source") == "none"
        for values, value in (
            (self.ttft_ms, timings.get("first_token_ms")),
            (self.duration_ms, timings.get("duration_ms")),
        ):
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.append(float(value))


def read_lines(lines: Iterable[bytes], source: str, into: Inputs) -> None:
    """Sorts each JSONL line into a usage record, a skipped type or a malformed line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            value = None
        if not isinstance(value, dict):
            into.malformed.append(f"{source}:{number}")
        elif value.get("type") == "usage":
            into.records.append(value)
        else:
            into.skipped[str(value.get("type", "(no type)"))] += 1


def is_error(record: Mapping[str, Any]) -> bool:
    response = _section(record, "response")
    status = response.get("status")
    failed_status = isinstance(status, int) and status >= 400
    return failed_status or response.get("outcome") != "completed"


def subscription_of(record: Mapping[str, Any]) -> str:
    caller = _section(record, "caller")
    sub_id, name = caller.get("subscription_id"), caller.get("subscription_name")
    if not sub_id:
        return str(name) if name else NO_SUBSCRIPTION
    return f"{name} ({sub_id})" if name and name != sub_id else str(sub_id)


def deployment_of(record: Mapping[str, Any]) -> str:
    deployment = _section(record, "request").get("deployment")
    return str(deployment) if deployment else NO_DEPLOYMENT


def summarise(records: Iterable[Mapping[str, Any]], key: str) -> dict[str, Group]:
    """One group per subscription or deployment, plus the records' total under the key ""."""
    key_of = subscription_of if key == "subscription" else deployment_of
    groups: dict[str, Group] = {}
    total = Group()
    for record in records:
        groups.setdefault(key_of(record), Group()).add(record)
        total.add(record)
    ordered = dict(sorted(groups.items(), key=lambda item: (-item[1].total_tokens, item[0])))
    return {**ordered, "": total}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


COLUMNS = (
    "calls",
    "errors",
    "prompt_tok",
    "completion_tok",
    "total_tok",
    "no_usage",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "dur_p50_ms",
    "dur_p95_ms",
)


def row(name: str, group: Group) -> list[str]:
    counts = (
        group.calls,
        group.errors,
        group.prompt_tokens,
        group.completion_tokens,
        group.total_tokens,
        group.no_usage,
    )
    latencies = (
        percentile(values, p) for values in (group.ttft_ms, group.duration_ms) for p in (50, 95)
    )
    return [name or "TOTAL", *map(str, counts), *map(_ms, latencies)]


def table(key: str, groups: Mapping[str, Group]) -> str:
    """Plain text: the key left-aligned, numbers right-aligned, a rule under the header and
    above the TOTAL row."""
    rows = [[key, *COLUMNS], *(row(name, group) for name, group in groups.items())]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in rows
    ]
    rule = "  ".join("-" * width for width in widths)
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


def render(inputs: Inputs, by: GroupBy = "both") -> str:
    keys = ("subscription", "deployment") if by == "both" else (by,)
    skipped = ", ".join(f"{n} {kind!r}" for kind, n in sorted(inputs.skipped.items()))
    parts = [
        f"{len(inputs.records)} usage records"
        + (f"; other types skipped: {skipped}" if skipped else "")
    ]
    if inputs.records:
        parts += [table(key, summarise(inputs.records, key)) for key in keys]
    if inputs.malformed:
        shown = ", ".join(inputs.malformed[:MALFORMED_SHOWN])
        more = len(inputs.malformed) - MALFORMED_SHOWN
        parts.append(
            f"malformed lines skipped: {len(inputs.malformed)} ({shown}"
            + (f" and {more} more)" if more > 0 else ")")
        )
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None, stdin: BinaryIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aoai_proxy.report",
        description="Calls, errors, tokens and p50/p95 latency per APIM subscription and "
        "deployment, from JSONL usage records (docs/usage-record.md).",
    )
    parser.add_argument("files", nargs="+", help="JSONL files of usage records; - for stdin")
    parser.add_argument("--by", choices=("subscription", "deployment", "both"), default="both")
    args = parser.parse_args(argv)
    inputs = Inputs()
    for name in args.files:
        if name == "-":
            read_lines(stdin or sys.stdin.buffer, "<stdin>", inputs)
            continue
        try:
            with open(name, "rb") as file:
                read_lines(file, name, inputs)
        except OSError as exc:
            print(f"report: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    sys.stdout.write(render(inputs, args.by))
    return 0


def _section(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = record.get(name)
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
