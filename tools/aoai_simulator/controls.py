"""Per-request knobs, read from `x-sim-*` request headers (they pass through the proxy untouched).

| header                  | effect                                                              |
|-------------------------|---------------------------------------------------------------------|
| x-sim-tokens            | completion length in tokens                                         |
| x-sim-ttft-ms           | delay before the first event / the JSON body                        |
| x-sim-token-ms          | delay between stream events                                         |
| x-sim-status            | answer with that error status (400 content filter, 401, 404, 429..) |
| x-sim-retry-after       | seconds announced by a simulated 429                                |
| x-sim-fail-after        | cut the connection after N content events of a stream               |
| x-sim-content-filter    | `completion`: stream ends with finish_reason content_filter;        |
|                         | `prompt`: the 400 content-filter error; `async`: Asynchronous       |
|                         | Filter mode (annotation-only events, some after finish_reason)      |
| x-sim-reasoning-tokens  | reasoning tokens reported in usage (added to completion tokens)     |
| x-sim-cached-tokens     | cached prompt tokens reported in usage                              |
| x-sim-tool-calls        | how many tool calls to make when `tools` are given (default 1)      |
| x-sim-replay            | fixture name: replay the recording byte for byte                    |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from .settings import SimulatorSettings

ContentFilterMode = Literal["none", "completion", "prompt", "async"]


class BadControl(ValueError):
    """An x-sim-* header has a value the simulator cannot use (answered with 400)."""


def _int(headers: Headers, name: str, default: int | None) -> int | None:
    raw = headers.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadControl(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise BadControl(f"{name} must not be negative, got {raw!r}")
    return value


def _ms(headers: Headers, name: str, default: float) -> float:
    raw = headers.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadControl(f"{name} must be a number of milliseconds, got {raw!r}") from None
    if value < 0:
        raise BadControl(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Controls:
    tokens: int
    ttft_s: float
    token_s: float
    status: int | None
    retry_after_s: int
    fail_after: int | None
    content_filter: ContentFilterMode
    reasoning_tokens: int
    cached_tokens: int
    tool_calls: int
    replay: str | None

    @classmethod
    def from_headers(cls, headers: Headers, settings: SimulatorSettings) -> Controls:
        mode = headers.get("x-sim-content-filter", "none").strip().lower() or "none"
        if mode not in ("none", "completion", "prompt", "async"):
            raise BadControl(
                f"x-sim-content-filter must be completion, prompt or async, got {mode!r}"
            )
        status = _int(headers, "x-sim-status", None)
        if status is not None and not 400 <= status <= 599:
            raise BadControl(f"x-sim-status must be an error status (400-599), got {status}")
        return cls(
            tokens=_int(headers, "x-sim-tokens", settings.completion_tokens) or 0,
            ttft_s=_ms(headers, "x-sim-ttft-ms", settings.ttft_ms) / 1000,
            token_s=_ms(headers, "x-sim-token-ms", settings.token_ms) / 1000,
            status=status,
            retry_after_s=_int(headers, "x-sim-retry-after", settings.retry_after_s) or 0,
            fail_after=_int(headers, "x-sim-fail-after", None),
            content_filter=mode,  # type: ignore[arg-type]  # checked just above
            reasoning_tokens=_int(headers, "x-sim-reasoning-tokens", 0) or 0,
            cached_tokens=_int(headers, "x-sim-cached-tokens", 0) or 0,
            tool_calls=max(1, _int(headers, "x-sim-tool-calls", 1) or 1),
            replay=headers.get("x-sim-replay") or None,
        )


# Which api-versions accept stream_options: the table "Behaviour per api-version" in
# docs/simulator.md, each row with its evidence (tests/integration/test_simulator_api_versions.py
# checks that the simulator follows it). Dated versions from 2024-08-01(-preview) on accept it,
# older dated ones answer Azure's 400; non-dated values (`preview`, `latest`, the v1 API) know it.
STREAM_OPTIONS_SINCE = "2024-08-01"


def accepts_stream_options(api_version: str | None) -> bool:
    if not api_version or len(api_version) < 10 or not api_version[:4].isdigit():
        return True
    # Lexicographic comparison of the ISO date part is a date comparison.
    return api_version[:10] >= STREAM_OPTIONS_SINCE
