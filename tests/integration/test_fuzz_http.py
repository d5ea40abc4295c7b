"""Hostile HTTP against the proxy under uvicorn on 127.0.0.1, with a recording upstream.

Random methods, paths (encoded dots and slashes, double encoding, unicode, overlong), query strings,
headers (sizes, duplicates, latin-1 bytes, credentials, Transfer-Encoding with Content-Length) and
bodies (truncated, nested, non-UTF-8, huge numbers, wrong types), written over a raw socket.
Properties, for every request:

- the proxy never answers 5xx (the upstream always answers 200, so any 5xx would be the proxy's);
- nothing reaches the upstream outside /openai/ (checked on the request line it received);
- no caller credential reaches the upstream;
- a call the application answered has exactly one usage record, with the id of its
  x-usage-record-id header; a request the HTTP server itself refused has none;
- /healthz is still ok afterwards.

Profiles: `ci` (default; deterministic, well under a minute) and `long` (FUZZ_PROFILE=long, random,
many more examples), e.g. `FUZZ_PROFILE=long .venv/bin/pytest tests/integration/test_fuzz_http.py`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.raw_http import RawResponse, exchange

from aoai_proxy.paths import confined

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}
settings.register_profile("ci", max_examples=400, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=3_000, derandomize=False, **_COMMON)
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")

SECRET = "SECRET-d1f0c2"
EXCHANGE_TIMEOUT_S = 20.0  # generous: CI machines can be slow; a hang still fails
RECORD_WAIT_S = 5.0

# -- paths ---------------------------------------------------------------------------------------

_SEGMENTS = st.sampled_from(
    [
        "..", "%2e%2e", "%2E%2e", ".", "%2e", "%252e%252e", "..%2f..%2f", "%2f", "%2F", "%5c",
        "..%5c", "%00", "%0d%0aX-Evil:1", "%0a", "%0d", "", "%25", "%", "%zz", "%c3%a9", "%ff",
        "a%20b", "x" * 300, "d" * 64, "d" * 65, "~user", "@:;=", "a+b",
        "deployments", "gpt-4o", "gpt-4.1-mini", "chat", "completions", "embeddings", "v1",
        "responses", "models", "files", "healthz", "etc", "passwd",
    ]
)  # fmt: skip
_TEXT_SEGMENT = st.text(max_size=40).map(lambda text: quote(text, safe=""))
_PREFIXES = st.sampled_from(
    [
        "/openai/",
        "/openai/deployments/",
        "/openai/v1/",
        "/openai",
        "/",
        "//openai/",
        "/OpenAI/",
        "http://evil.example/openai/",  # absolute form
        "*",
    ]
)


_ROUTES = [
    "/openai/deployments/gpt-4o/chat/completions",
    "/openai/deployments/gpt-4o/completions",
    "/openai/deployments/text-embedding-3-large/embeddings",
    "/openai/v1/chat/completions",
    "/openai/v1/embeddings",
    "/openai/v1/responses",
    "/openai/responses",
    "/openai/v1/models",
]


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    """Half the time a real route with hostile segments spliced in, else any composition."""
    if draw(st.booleans()):
        segments = draw(st.sampled_from(_ROUTES)).split("/")
        for _ in range(draw(st.integers(0, 3))):
            position = draw(st.integers(2, len(segments)))
            segments.insert(position, draw(st.one_of(_SEGMENTS, _TEXT_SEGMENT)))
        path = "/".join(segments)
    else:
        segments = draw(st.lists(st.one_of(_SEGMENTS, _TEXT_SEGMENT), max_size=8))
        path = draw(_PREFIXES) + "/".join(segments)
    if draw(st.integers(0, 9)) == 0:
        path += "/" + "y" * draw(st.integers(0, 6_000))  # overlong
    return path.encode("utf-8")


# -- query strings --------------------------------------------------------------------------------

_QUERY_PARTS = st.one_of(
    st.sampled_from(
        [
            "api-version=2024-10-21",
            "api-version=2025-04-01-preview",
            "api-version=preview",
            "api-version=foo",
            "api-version=",
            "api-version=2024-10-21%0d%0aX:1",
            f"code={SECRET}",
            f"Code={SECRET}",
            f"%63ode={SECRET}",
            "a=b",
            "a",
            "=",
            "%zz=%zz",
            "x=%ff%fe",
            "x=" + "q" * 3_000,
        ]
    ),
    st.tuples(_TEXT_SEGMENT, _TEXT_SEGMENT).map(lambda kv: f"{kv[0]}={kv[1]}"),
)
queries = st.lists(_QUERY_PARTS, max_size=5).map(lambda parts: "&".join(parts).encode())

# -- headers ---------------------------------------------------------------------------------------

_CREDENTIALS = [
    (b"Authorization", f"Bearer {SECRET}".encode()),
    (b"api-key", SECRET.encode()),
    (b"Ocp-Apim-Subscription-Key", SECRET.encode()),
    (b"x-functions-key", SECRET.encode()),
    (b"Cookie", f"session={SECRET}".encode()),
    (b"Proxy-Authorization", f"Basic {SECRET}".encode()),
]
_NAMES = st.sampled_from(
    [
        b"x-apim-subscription-id", b"x-apim-request-id", b"x-apim-user-id", b"traceparent",
        b"Content-Type", b"content-type", b"Accept", b"x-ms-client-request-id", b"X-Custom",
        b"Connection", b"Keep-Alive", b"TE", b"Upgrade", b"x-forwarded-for", b"Expect-Nothing",
    ]
)  # fmt: skip
# Field values as bytes: visible ASCII, latin-1 octets (obs-text), long ones.
_VALUES = st.one_of(
    st.binary(max_size=60).map(lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F)),
    st.sampled_from(
        [b"application/json", b"text/plain", b"x" * 9_000, "caf\xe9".encode("latin-1")]
    ),
)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
    headers += draw(st.lists(st.sampled_from(_CREDENTIALS), max_size=3))
    return headers


# -- bodies ------------------------------------------------------------------------------------------

_CHAT = {"messages": [{"role": "user", "content": "hi"}]}
_BODIES = st.one_of(
    st.just(json.dumps(_CHAT).encode()),
    st.just(json.dumps({**_CHAT, "stream": True}).encode()),
    st.just(json.dumps({**_CHAT, "model": "gpt-4o", "stream_options": {"include_usage": 1}}).encode()),
    st.integers(1, 6_000).map(lambda n: b'{"a":' + b"[" * n + b"]" * n + b"}"),
    st.integers(1, 6_000).map(lambda n: b'{"messages":' + b"[" * n),
    st.just(b'{"max_tokens":' + b"9" * 20_000 + b"}"),
    st.just(b'{"temperature":1e999999,"n":-1e-999999}'),
    st.just(b'{"messages":"\xff\xfe\x00"}'),
    st.just(b'{"messages":5,"stream":"yes","stream_options":[]}'),
    st.just(b'{"stream":true,"stream_options":{"include_usage":false}'),
    st.binary(max_size=200),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode()),
)  # fmt: skip

_METHODS = st.one_of(
    st.just(b"POST"),
    st.sampled_from([b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"FOO"]),
)
_FRAMINGS = st.sampled_from(["content-length", "chunked", "chunked+content-length", "none"])


def _framed(
    framing: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """(headers, wire body, add Content-Length?) for one framing; every framing is consistent, so
    no server waits for bytes that never come."""
    if framing == "content-length":
        return headers, body, True
    if framing == "none":
        return headers, b"", True
    chunked = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    framed = [*headers, (b"Transfer-Encoding", b"chunked")]
    if framing == "chunked+content-length":
        framed.append((b"Content-Length", str(len(chunked)).encode()))
    return framed, chunked, False


def _records(path: Path) -> list[dict[str, Any]]:
    """Complete lines only: the sink may be appending the last one while the test reads."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _wait_for_record(path: Path, record_id: str) -> list[dict[str, Any]]:
    """All records, once the one with `record_id` is among them (or the wait is over)."""
    deadline = time.monotonic() + RECORD_WAIT_S
    records = _records(path)
    while not any(r["record_id"] == record_id for r in records) and time.monotonic() < deadline:
        time.sleep(0.005)
        records = _records(path)
    return records


@pytest.mark.timeout(600)
def test_hostile_http_never_escapes_never_fails_and_is_always_recorded(
    recorded_proxy: Any, recording_upstream: Any
) -> None:
    usage_log = Path(recorded_proxy.settings.usage_log_path)
    answered: set[str] = set()  # record ids of the calls the proxy answered

    chat = b"/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    plain = json.dumps(_CHAT).encode()
    apim = [(b"x-apim-subscription-id", b"s" * 10_000), *_CREDENTIALS]

    # The shapes issue 12 reported run in every profile; generation covers the space around them.
    @example(b"POST", b"/openai/%2e%2e/%2e%2e/etc/passwd", b"", apim, plain, "content-length")
    @example(b"GET", b"/openai/%2E%2E/healthz", b"", [], b"", "none")
    @example(b"GET", b"/openai/..%2f..%2fhealthz", b"", [], b"", "none")
    @example(b"GET", b"/openai/%252e%252e/healthz", b"", [], b"", "none")
    @example(b"GET", b"/openai/models%0a", b"", [], b"", "none")
    @example(
        b"POST", b"/openai/deployments/a%0d%0aX-Evil:1/chat/completions", b"", [], plain, "chunked"
    )
    @example(b"POST", chat, b"code=" + SECRET.encode(), apim, plain, "chunked+content-length")
    @example(b"POST", chat, b"", [], b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "chunked")
    @settings(settings.get_profile(PROFILE))
    @given(
        method=_METHODS,
        path=paths(),
        query=queries,
        headers=header_lists(),
        body=_BODIES,
        framing=_FRAMINGS,
    )
    def one_request(
        method: bytes,
        path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        framing: str,
    ) -> None:
        upstream_before = len(recording_upstream.requests)
        target = path + (b"?" + query if query else b"")
        wire_headers, wire_body, content_length = _framed(framing, headers, body)
        response = exchange(
            recorded_proxy.base_url,
            method,
            target,
            wire_headers,
            wire_body,
            content_length=content_length,
            timeout=EXCHANGE_TIMEOUT_S,
        )

        assert response is not None, "the connection closed without an answer"
        assert response.status < 500, (response.status, response.body[:300])
        for received in recording_upstream.requests[upstream_before:]:
            assert received.path.startswith(b"/openai/"), received.request_line
            confined(received.path.decode("ascii"))  # no dot segment, however it is decoded
            assert SECRET.encode() not in received.head, received.head
        record_id = response.header("x-usage-record-id")
        if record_id is not None:
            answered.add(record_id)
            mine = [
                r for r in _wait_for_record(usage_log, record_id) if r["record_id"] == record_id
            ]
            assert len(mine) == 1, f"{len(mine)} usage records for one call"
        else:
            _assert_not_answered_by_the_proxy(response)

    one_request()

    time.sleep(0.2)  # a late extra record would be a bug: give it the chance to show
    records = _records(usage_log)
    assert len(records) == len(answered)
    assert {record["record_id"] for record in records} == answered
    health = exchange(recorded_proxy.base_url, b"GET", b"/healthz")
    assert health is not None
    assert health.status == 200
    assert health.json()["status"] == "ok"
    assert answered


def _assert_not_answered_by_the_proxy(response: RawResponse) -> None:
    """No record id: the HTTP server refused the request before the application saw it (4xx), or
    it was /healthz, which records nothing."""
    is_health = response.status == 200 and response.body.startswith(b'{"status"')
    assert is_health or 400 <= response.status < 500, (response.status, response.body[:300])
