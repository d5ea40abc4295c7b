"""The usage record: one per call, built by a per-request meter from what the relay saw.

The meter never touches the bytes the client gets; it reads the teed copy after each event has
been handed on. Every field is documented in docs/usage-record.md; SCHEMA_VERSION changes when a
field changes meaning or goes away (adding a field keeps the major version).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .inbound import Call
from .record_bounds import bounded
from .sse import SSEEvent

SCHEMA_VERSION = "1.2"

# Every value of usage.source_reason (docs/usage-record.md explains each).
NO_USAGE_REASONS = (
    "client_disconnected_before_usage",
    "stream_failed_before_usage",
    "proxy_error",
    "upstream_error",
    "response_queued",
    "response_in_progress",
    "no_api_version",
    "api_version_not_dated",
    "api_version_before_injection_minimum",
    "api_version_excluded_from_injection",
    "api_version_not_in_injection_allow_list",
    "api_version_rejected_stream_options",
    "request_has_data_sources",
    "request_has_image_input",
    "operation_not_injected",
    "body_not_reinjectable",
    "no_usage_in_response",
)
# Reasons from inject.injection_decision that explain a missing usage (the others do not: a client
# that asked for usage itself, or a non-streamed call, should have had it in the response).
_INJECTION_EXPLAINS_NO_USAGE = frozenset(
    {
        "no_api_version",
        "api_version_not_dated",
        "api_version_before_injection_minimum",
        "api_version_excluded_from_injection",
        "api_version_not_in_injection_allow_list",
        "api_version_rejected_stream_options",
        "request_has_data_sources",
        "request_has_image_input",
        "operation_not_injected",
        "body_not_reinjectable",
    }
)

UsageSource = Literal["provider", "injected", "none"]
Outcome = Literal[
    "completed", "upstream_error", "proxy_error", "stream_failed", "client_disconnected"
]


def now_ms() -> float:
    """Monotonic milliseconds: durations only, immune to wall-clock steps."""
    return time.perf_counter() * 1000.0


@dataclass(slots=True)
class _Capture:
    """Keeps at most `limit` bytes of a text while hashing and measuring all of it."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, text: str) -> None:
        # surrogatepass: a lone surrogate (a client that split an emoji) is measured, not fatal.
        data = text.encode("utf-8", errors="surrogatepass")
        self.size += len(data)
        self.digest.update(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.kept.decode("utf-8", errors="ignore"),
            "bytes": self.size,
            "truncated": self.size > len(self.kept),
            "sha256": self.digest.hexdigest(),
        }


class UsageMeter:
    """Per-request state; never shared between calls."""

    def __init__(
        self,
        call: Call,
        *,
        instance_id: str,
        capture_limit: int | None,
        started_ms: float | None = None,
        started_at: datetime | None = None,
    ) -> None:
        self.record_id = str(uuid.uuid4())
        self.call = call
        self._instance_id = instance_id
        self._started_wall = started_at or datetime.now(UTC)
        self._started = now_ms() if started_ms is None else started_ms
        self.injected = False
        self.injection_skipped_reason: str | None = None
        self.status: int | None = None
        # The upstream answered with an event stream: a catch-all call (e.g. an Assistants run)
        # streams without the body saying so.
        self.event_stream = False
        self._headers_ms: float | None = None
        self._first_byte_ms: float | None = None
        self._first_token_ms: float | None = None
        self._response_headers: dict[str, str] = {}
        self.response_bytes = 0
        self.response_id: str | None = None
        self.model: str | None = None
        self.error_code: str | None = None
        self.error_message: str | None = None
        self._finish_reasons: dict[int, str] = {}
        self._choice_indexes: set[int] = set()
        self._tool_calls: set[tuple[int, int | str]] = set()
        # Streamed events carrying output: the partial count when usage never arrives.
        self.output_events = 0
        self.prompt_filtered = False
        self.completion_filtered = False
        self.usage: dict[str, int | None] | None = None
        self._no_usage_reason: str | None = None
        self._outcome: Outcome | None = None
        self.client_disconnected = False
        self._capture_limit = capture_limit
        self._completion = _Capture(capture_limit) if capture_limit is not None else None
        self._record: dict[str, Any] | None = None

    # -- what the relay reports, in order -------------------------------------------------------

    def upstream_headers(self, status: int, headers: Mapping[str, str]) -> None:
        self._headers_ms = now_ms()
        self.status = status
        self.event_stream = headers.get("content-type", "").startswith("text/event-stream")
        # Only the ids and the region go into the record: no need to copy every header.
        self._response_headers = {
            name: value
            for name in ("x-ms-region", "apim-request-id", "x-request-id")
            if (value := headers.get(name)) is not None
        }

    def first_byte_sent(self) -> None:
        if self._first_byte_ms is None:
            self._first_byte_ms = now_ms()

    def observe_body(self, body: bytes) -> None:
        """A whole (non-streamed) JSON response body."""
        self.response_bytes = len(body)
        try:
            payload = json.loads(body)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        if payload.get("object") == "response" or "output" in payload:
            # Checked before `error`: a Response object always has one, `null` unless it failed.
            self._observe_response_object(payload)
        elif isinstance(payload.get("error"), dict):
            self._observe_error(payload["error"])
        else:
            self._observe_completion_payload(payload, received_ms=None, streamed=False)

    def observe_event(self, event: SSEEvent, received_ms: float) -> None:
        """One streamed event, after it was sent on to the client."""
        if event.data == "[DONE]":
            return
        try:
            payload = json.loads(event.data)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        if event.event.startswith("thread.") or event.event == "error":
            self._observe_assistants_event(event.event, payload, received_ms)
        elif event.event != "message" or str(payload.get("type", "")).startswith("response."):
            self._observe_responses_event(payload, received_ms)
        elif "error" in payload:
            self._observe_error(payload["error"])
        else:
            self._observe_completion_payload(payload, received_ms=received_ms, streamed=True)

    def fail(self, outcome: Outcome, code: str, message: str) -> None:
        self._outcome = outcome
        self.error_code = code
        self.error_message = message

    def proxy_error(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.fail("proxy_error", code, message)

    def disconnected(self) -> None:
        self.client_disconnected = True
        if self._outcome is None:
            self._outcome = "client_disconnected"

    # -- parsing ----------------------------------------------------------------------------------

    def _observe_completion_payload(
        self, payload: dict[str, Any], *, received_ms: float | None, streamed: bool
    ) -> None:
        if not self.response_id and payload.get("id"):
            self.response_id = str(payload["id"])
        if not self.model and payload.get("model"):
            self.model = str(payload["model"])
        for result in _items(payload.get("prompt_filter_results")):
            if isinstance(result, dict) and _any_filtered(result.get("content_filter_results")):
                self.prompt_filtered = True
        for choice in _items(payload.get("choices")):
            if isinstance(choice, dict):
                self._observe_choice(choice, received_ms, streamed)
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage, "prompt", "completion")

    def _observe_choice(
        self, choice: dict[str, Any], received_ms: float | None, streamed: bool
    ) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        self._choice_indexes.add(index)
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self._finish_reasons[index] = reason
            if reason == "content_filter":
                self.completion_filtered = True
        if _any_filtered(choice.get("content_filter_results")):
            self.completion_filtered = True
        message = choice.get("delta") if streamed else choice.get("message")
        text: str | None = None
        tool_calls: Any = None
        if isinstance(message, dict):
            content = message.get("content")
            text = content if isinstance(content, str) else None
            tool_calls = message.get("tool_calls")
        elif isinstance(choice.get("text"), str):  # legacy completions
            text = choice["text"]
        for position, call in enumerate(_items(tool_calls)):
            if isinstance(call, dict) and (call.get("id") or not streamed):
                key = call.get("index", position)
                self._tool_calls.add((index, key if isinstance(key, int | str) else position))
        if received_ms is not None and (text or tool_calls):
            self.output_events += 1
            if self._first_token_ms is None:
                self._first_token_ms = received_ms
        if text and self._completion is not None:
            self._completion.add(text)

    def _observe_responses_event(self, payload: dict[str, Any], received_ms: float) -> None:
        kind = str(payload.get("type", ""))
        if kind in (
            "response.created",
            "response.in_progress",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "response.queued",
        ):
            response = payload.get("response")
            if isinstance(response, dict):
                self._observe_response_object(response)
        elif kind.endswith(".delta"):
            self.output_events += 1
            if self._first_token_ms is None:
                self._first_token_ms = received_ms
            if kind == "response.output_text.delta" and self._completion is not None:
                self._completion.add(str(payload.get("delta", "")))
        elif kind == "response.output_item.added":
            item = payload.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._tool_calls.add((0, str(item.get("id") or len(self._tool_calls))))
        elif kind == "error":
            self._observe_error(payload)

    def _observe_response_object(self, response: dict[str, Any]) -> None:
        if response.get("id"):
            self.response_id = str(response["id"])
        if response.get("model"):
            self.model = str(response["model"])
        status = response.get("status")
        if isinstance(status, str) and status not in ("in_progress", "queued"):
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            self._finish_reasons[0] = str(reason or status)
            self._choice_indexes.add(0)
            if reason == "content_filter":
                self.completion_filtered = True
        elif isinstance(status, str):
            self._no_usage_reason = f"response_{status}"
        error = response.get("error")
        if isinstance(error, dict):
            self._observe_error(error)
        for item in _items(response.get("output")):
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._tool_calls.add((0, str(item.get("id") or item.get("call_id"))))
            elif isinstance(item, dict) and self._completion is not None and not self.output_events:
                # A non-streamed response: its text is here, not in delta events.
                for part in _items(item.get("content")):
                    if isinstance(part, dict) and part.get("type") == "output_text":
                        self._completion.add(str(part.get("text", "")))
        usage = response.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage, "input", "output")

    def _observe_assistants_event(
        self, kind: str, payload: dict[str, Any], received_ms: float
    ) -> None:
        """An Assistants API event (catch-all route): `thread.run.*` events carry the run, whose
        `usage` is set once it ends; `thread.message.delta` events carry the output."""
        if kind == "error":
            self._observe_error(payload.get("error", payload))
        elif kind == "thread.message.delta":
            self.output_events += 1
            if self._first_token_ms is None:
                self._first_token_ms = received_ms
            delta = payload.get("delta")
            for part in _items(delta.get("content") if isinstance(delta, dict) else None):
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, dict) and self._completion is not None:
                    self._completion.add(str(text.get("value") or ""))
        elif payload.get("object") == "thread.run":
            self._observe_run(payload)

    def _observe_run(self, run: dict[str, Any]) -> None:
        if run.get("id"):
            self.response_id = str(run["id"])
        if run.get("model"):
            self.model = str(run["model"])
        status = run.get("status")
        if status in (
            "completed",
            "incomplete",
            "failed",
            "cancelled",
            "expired",
            "requires_action",
        ):
            details = run.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            self._finish_reasons[0] = str(reason or status)
            self._choice_indexes.add(0)
        action = run.get("required_action")
        outputs = action.get("submit_tool_outputs") if isinstance(action, dict) else None
        for call in _items(outputs.get("tool_calls") if isinstance(outputs, dict) else None):
            if isinstance(call, dict):
                self._tool_calls.add((0, str(call.get("id"))))
        if isinstance(run.get("last_error"), dict):
            self._observe_error(run["last_error"])
        usage = run.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage, "prompt", "completion")

    def _observe_error(self, error: Any) -> None:
        if not isinstance(error, dict):
            return
        code = error.get("code") or error.get("type")
        self.error_code = str(code) if code is not None else self.error_code
        if isinstance(error.get("message"), str):
            self.error_message = error["message"][:500]
        inner = error.get("innererror")
        if isinstance(inner, dict):
            if inner.get("code") == "ResponsibleAIPolicyViolation":
                self.prompt_filtered = True
            if isinstance(inner.get("content_filter_result"), dict) and _any_filtered(
                inner["content_filter_result"]
            ):
                self.prompt_filtered = True

    # -- the record ---------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Builds the record once; later calls return the same record."""
        if self._record is None:
            self._record = bounded(self._build())
        return self._record

    @property
    def finished(self) -> bool:
        return self._record is not None

    def _build(self) -> dict[str, Any]:
        ended = now_ms()
        call = self.call
        status = self.status
        failed_upstream = (status is not None and status >= 400) or self.error_code is not None
        outcome = self._outcome or ("upstream_error" if failed_upstream else "completed")
        usage = self.usage or {}
        completion_tokens = usage.get("completion_tokens")
        # Reasoning tokens are generated before the first visible token: the streaming rate after
        # the first token counts only the visible ones.
        visible_tokens = (completion_tokens or 0) - (usage.get("reasoning_tokens") or 0)
        tokens_per_second: float | None = None
        if visible_tokens > 0 and self._first_token_ms is not None and ended > self._first_token_ms:
            tokens_per_second = round(visible_tokens / ((ended - self._first_token_ms) / 1000), 2)
        headers = self._response_headers
        record: dict[str, Any] = {
            "type": "usage",
            "schema_version": SCHEMA_VERSION,
            "record_id": self.record_id,
            "timestamp": self._started_wall.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "instance_id": self._instance_id,
            "caller": dict(call.caller.fields),
            "request": {
                "method": call.method,
                "route": call.route,
                "path": call.path,
                "operation": call.operation,
                "deployment": call.deployment,
                "api_version": call.api_version,
                "stream": call.stream or self.event_stream,
                "bytes": len(call.body),
                "traceparent": call.caller.traceparent,
            },
            "response": {
                "status": status,
                "outcome": outcome,
                "error_code": self.error_code,
                "error_message": self.error_message,
                "id": self.response_id,
                "model": self.model,
                "region": headers.get("x-ms-region"),
                "upstream_apim_request_id": headers.get("apim-request-id"),
                "upstream_request_id": headers.get("x-request-id"),
                "finish_reasons": [self._finish_reasons[i] for i in sorted(self._finish_reasons)],
                "choices": len(self._choice_indexes),
                "tool_calls": len(self._tool_calls),
                "output_events": self.output_events,
                "prompt_filtered": self.prompt_filtered,
                "completion_filtered": self.completion_filtered,
                "client_disconnected": self.client_disconnected,
                "bytes": self.response_bytes,
            },
            "usage": {
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": completion_tokens,
                "total_tokens": usage.get("total_tokens"),
                "cached_tokens": usage.get("cached_tokens"),
                "reasoning_tokens": usage.get("reasoning_tokens"),
                "source": self._usage_source(),
                "source_reason": None if self.usage else self._why_no_usage(outcome),
            },
            "timings": {
                "upstream_headers_ms": _since(self._started, self._headers_ms),
                "first_byte_ms": _since(self._started, self._first_byte_ms),
                "first_token_ms": _since(self._started, self._first_token_ms),
                "duration_ms": round(ended - self._started, 2),
                "output_tokens_per_second": tokens_per_second,
            },
        }
        if self._capture_limit is not None:
            prompt = _Capture(self._capture_limit)
            prompt.add(_prompt_text(call))
            record["capture"] = {
                "prompt": prompt.to_json(),
                "completion": self._completion.to_json() if self._completion else None,
            }
        return record

    def _usage_source(self) -> UsageSource:
        if not self.usage:
            return "none"
        return "injected" if self.injected else "provider"

    def _why_no_usage(self, outcome: Outcome) -> str:
        if outcome == "client_disconnected":
            return "client_disconnected_before_usage"
        if outcome == "stream_failed":
            return "stream_failed_before_usage"
        if outcome == "proxy_error":
            return "proxy_error"
        if outcome == "upstream_error":
            return "upstream_error"
        if self._no_usage_reason:  # a Responses API call that has not finished yet
            return self._no_usage_reason
        if self.injection_skipped_reason in _INJECTION_EXPLAINS_NO_USAGE:
            return self.injection_skipped_reason
        return "no_usage_in_response"


def _items(value: Any) -> list[Any]:
    """A JSON array, or nothing: an unexpected shape is skipped, never an error."""
    return value if isinstance(value, list) else []


def _since(start: float, at: float | None) -> float | None:
    return None if at is None else round(at - start, 2)


def _any_filtered(results: Any) -> bool:
    if not isinstance(results, dict):
        return False
    return any(isinstance(v, dict) and v.get("filtered") is True for v in results.values())


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _detail(usage: dict[str, Any], group: str, key: str) -> int | None:
    details = usage.get(group)
    return _int(details.get(key)) if isinstance(details, dict) else None


def _usage(usage: dict[str, Any], prompt: str, completion: str) -> dict[str, int | None]:
    """Token counts in the record's one vocabulary: chat names them prompt/completion, the
    Responses API input/output."""
    return {
        "prompt_tokens": _int(usage.get(f"{prompt}_tokens")),
        "completion_tokens": _int(usage.get(f"{completion}_tokens")),
        "total_tokens": _int(usage.get("total_tokens")),
        "cached_tokens": _detail(usage, f"{prompt}_tokens_details", "cached_tokens"),
        "reasoning_tokens": _detail(usage, f"{completion}_tokens_details", "reasoning_tokens"),
    }


def _prompt_text(call: Call) -> str:
    payload = call.payload or {}
    for key in ("messages", "prompt", "input", "instructions"):
        if key in payload:
            value = payload[key]
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return ""
