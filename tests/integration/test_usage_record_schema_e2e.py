"""Every record the running proxy writes validates against docs/usage-record.schema.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "usage-record.schema.json").read_text()
)
CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2025-04-01-preview"
MESSAGES = [{"role": "user", "content": "What is 4200 + 42?"}]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
APIM = {"x-apim-subscription-id": "sub-1", "x-apim-request-id": "apim-1"}


def test_records_of_streams_errors_disconnects_and_other_apis_validate(proxy_factory: Any) -> None:
    proxy = proxy_factory(capture_content=True, capture_max_bytes=16)
    stream = {"messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=proxy.base_url, timeout=10, headers=APIM) as client:
        client.post(CHAT, json=stream)
        client.post(CHAT, json={**stream, "tools": TOOLS}, headers={"x-sim-tool-calls": "2"})
        client.post(CHAT, json=stream, headers={"x-sim-status": "429"})
        client.post(CHAT, json={"messages": MESSAGES}, headers={"x-sim-content-filter": "prompt"})
        client.post(CHAT, json=stream, headers={"x-sim-fail-after": "2"})
        with client.stream(
            "POST", CHAT, json=stream, headers={"x-sim-token-ms": "100", "x-sim-tokens": "100"}
        ) as response:
            next(response.iter_raw())
        client.post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
        client.post("/openai/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
        client.post("/openai/v1/responses", json={"model": "gpt-4o-mini", "input": "hi"})
        client.post(
            "/openai/v1/responses", json={"model": "gpt-4o-mini", "input": "hi", "stream": True}
        )
        client.get("/openai/v1/models")
    records = proxy.records(11)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for record in records:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(record)]
        assert errors == [], json.dumps(record)
    outcomes = {r["response"]["outcome"] for r in records}
    assert outcomes == {
        "completed",
        "upstream_error",
        "stream_failed",
        "client_disconnected",
        "proxy_error",
    }
