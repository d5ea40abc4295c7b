"""The report: calls, errors, tokens and p50/p95 latency per subscription and per deployment."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.calls import parse_call

from aoai_proxy.report import (
    NO_SUBSCRIPTION,
    Inputs,
    is_error,
    main,
    percentile,
    read_lines,
    render,
    summarise,
)
from aoai_proxy.routes import PROXY_ROUTES
from aoai_proxy.usage import UsageMeter

CHAT = next(spec for spec in PROXY_ROUTES if spec.name == "chat_completions")


def base_record() -> dict[str, Any]:
    """A real record from the meter: a non-streamed chat completion with usage."""
    call = parse_call(
        spec=CHAT,
        method="POST",
        path_params={"deployment": "gpt-4o-mini"},
        query="api-version=2025-04-01-preview",
        headers={"x-apim-subscription-id": "sub-a", "x-apim-subscription-name": "team-a"},
        body=b'{"messages": []}',
    )
    meter = UsageMeter(call, instance_id="test", capture_limit=None, started_ms=0.0)
    meter.upstream_headers(200, {})
    meter.observe_body(
        b'{"id":"c1","choices":[{"index":0,"finish_reason":"stop","message":{"content":"x"}}],'
        b'"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'
    )
    return meter.finish()


BASE = base_record()


def record(
    *,
    subscription: str | None = "sub-a",
    name: str | None = "team-a",
    deployment: str | None = "gpt-4o-mini",
    status: int = 200,
    outcome: str = "completed",
    tokens: tuple[int, int] | None = (10, 5),
    ttft: float | None = 100.0,
    duration: float = 500.0,
) -> dict[str, Any]:
    new = copy.deepcopy(BASE)
    new["caller"].update(subscription_id=subscription, subscription_name=name)
    new["request"]["deployment"] = deployment
    new["response"].update(status=status, outcome=outcome)
    if tokens is None:
        new["usage"].update(
            prompt_tokens=None,
            completion_tokens=None,
            total_tokens=None,
            source="none",
            source_reason="upstream_error",
        )
    else:
        prompt, completion = tokens
        new["usage"].update(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )
    new["timings"].update(first_token_ms=ttft, duration_ms=duration)
    return new


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(10, 0, -1)]
    assert percentile(values, 50) == 5.0
    assert percentile(values, 95) == 10.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


def test_lines_are_sorted_into_records_other_types_and_malformed() -> None:
    lines = [
        json.dumps(record()).encode(),
        b"",
        b"   ",
        b'{"type": "gateway", "request_id": "r1", "status": 200}',
        b'{"no_type": true}',
        b"{not json",
        b"[1, 2]",
        b"\xff\xfe not utf-8",
        b"[" * 100_000,
        jsonl(record()),
    ]
    inputs = Inputs()
    read_lines(lines, "usage.jsonl", inputs)
    assert len(inputs.records) == 2
    assert inputs.skipped == {"gateway": 1, "(no type)": 1}
    assert inputs.malformed == [f"usage.jsonl:{n}" for n in (6, 7, 8, 9)]


def test_an_error_is_a_status_of_400_or_more_or_an_unfinished_call() -> None:
    assert not is_error(record())
    assert is_error(record(status=429, outcome="upstream_error"))
    assert is_error(record(outcome="client_disconnected"))
    assert is_error(record(outcome="stream_failed"))
    assert is_error({"type": "usage"})  # no outcome at all: not a completed call


def test_groups_sum_tokens_and_skip_missing_latencies() -> None:
    records = [
        record(tokens=(10, 5), ttft=100.0, duration=400.0),
        record(tokens=(20, 10), ttft=None, duration=600.0),
        record(status=429, outcome="upstream_error", tokens=None, ttft=None, duration=50.0),
        record(subscription="sub-b", name=None, deployment="gpt-4.1", tokens=(1, 1)),
        record(subscription=None, name=None, deployment=None, tokens=(2, 0)),
    ]
    groups = summarise(records, "subscription")
    team_a = groups["team-a (sub-a)"]
    assert (team_a.calls, team_a.errors, team_a.no_usage) == (3, 1, 1)
    assert (team_a.prompt_tokens, team_a.completion_tokens, team_a.total_tokens) == (30, 15, 45)
    assert team_a.ttft_ms == [100.0]
    assert sorted(team_a.duration_ms) == [50.0, 400.0, 600.0]
    assert groups["sub-b"].calls == 1
    assert groups[NO_SUBSCRIPTION].total_tokens == 2
    assert list(groups)[-1] == ""  # the total comes last
    assert groups[""].calls == 5
    assert groups[""].total_tokens == 49
    by_deployment = summarise(records, "deployment")
    assert by_deployment["gpt-4o-mini"].calls == 3
    assert by_deployment["(no deployment)"].calls == 1


def test_records_with_odd_values_never_crash() -> None:
    odd = {"type": "usage", "usage": "lots", "timings": {"duration_ms": "slow"}, "caller": None}
    text = render(Inputs(records=[odd, record()]))
    assert "TOTAL" in text


def cell_ends(line: str) -> list[int]:
    """Where the last ten cells of a table line end (the first column may hold spaces)."""
    return [match.end() for match in re.finditer(r"\S+", line)][-10:]


def test_main_prints_aligned_tables_per_subscription_and_deployment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_bytes(
        jsonl(
            record(ttft=100.0, duration=400.0),
            record(ttft=300.0, duration=900.0, tokens=(1000, 2000)),
            record(status=429, outcome="upstream_error", tokens=None, ttft=None, duration=20.0),
            record(subscription="sub-b", name="team-b", deployment="gpt-4.1"),
        )
        + b'{"type":"gateway","request_id":"r"}\nnot json\n'
    )
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 usage records; other types skipped: 1 'gateway'\n")
    assert f"malformed lines skipped: 1 ({path}:6)" in out
    subscriptions, deployments = (
        block.splitlines() for block in out.split("\n\n")[1:3] if block.startswith(("sub", "dep"))
    )
    header, rule, *rows = subscriptions
    assert " ".join(header.split()) == (
        "subscription calls errors prompt_tok completion_tok total_tok no_usage"
        " ttft_p50_ms ttft_p95_ms dur_p50_ms dur_p95_ms"
    )
    assert set(rule) <= {"-", " "}
    table = {row.split()[0]: row.split()[-10:] for row in rows if not row.startswith("-")}
    # team-a: 3 calls, 1 error, 1010/2005/3015 tokens, 1 without usage, TTFT 100/300, 20/400/900 ms.
    assert table["team-a"] == ["3", "1", "1010", "2005", "3015", "1", "100", "300", "400", "900"]
    assert table["team-b"][:5] == ["1", "0", "10", "5", "15"]
    assert table["TOTAL"][:3] == ["4", "1", "1020"]
    # Numbers are right-aligned under their headers.
    for row in rows:
        assert cell_ends(row) == cell_ends(header), row
    assert deployments[0].split()[0] == "deployment"
    assert any(row.startswith("gpt-4.1 ") for row in deployments)


def test_main_reads_stdin_and_several_files_and_groups_by_one_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "a.jsonl"
    first.write_bytes(jsonl(record()))
    stdin = io.BytesIO(jsonl(record(deployment="gpt-4.1")))
    assert main([str(first), "-", "--by", "deployment"], stdin=stdin) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 usage records\n")
    assert "\ndeployment " in out
    assert "\nsubscription " not in out


def test_main_without_usage_records_and_with_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"garbage\n")
    assert main([str(empty)]) == 0
    assert capsys.readouterr().out == f"0 usage records\n\nmalformed lines skipped: 1 ({empty}:1)\n"
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
