"""Embeddings, legacy completions, the Responses API and the models list, over real HTTP and
through the official SDK."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import httpx
import openai
from tests.integration.sse_shapes import shape, split_events
from tests.loopback import SimulatorServer

TIMEOUT = httpx.Timeout(10.0)
WEATHER_TOOL = {  # the Responses API's flat function-tool layout
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_sdk_parses_float_and_base64_embeddings_with_the_same_numbers(
    simulator: SimulatorServer,
) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=simulator.base_url, api_key="unused", api_version="2024-10-21", max_retries=0
    ) as client:
        floats = client.embeddings.create(
            model="text-embedding-3-small", input=["hello world", "bye"], encoding_format="float"
        )
        # The SDK asks for base64 by default and decodes it itself.
        decoded = client.embeddings.create(
            model="text-embedding-3-small", input=["hello world", "bye"]
        )
    assert len(floats.data) == 2
    assert len(floats.data[0].embedding) == 1536
    assert floats.data[0].embedding == decoded.data[0].embedding
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 3


def test_embeddings_honour_dimensions_and_match_the_recorded_layout(
    simulator: SimulatorServer, recorded: Path
) -> None:
    url = f"{simulator.base_url}/openai/deployments/emb/embeddings?api-version=2023-07-01-preview"
    body = {"input": "Tell me a joke", "encoding_format": "base64", "dimensions": 3072}
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(url, json=body)
    live = json.loads((recorded / "embeddings.json").read_bytes())
    assert shape(response.json()) == shape(live)
    vector = base64.b64decode(response.json()["data"][0]["embedding"])
    assert len(vector) == 3072 * 4
    norm = sum(v * v for v in struct.unpack("<3072f", vector))
    assert abs(norm - 1.0) < 1e-3


def test_legacy_completions_match_the_recorded_layout_and_stream(
    simulator: SimulatorServer, recorded: Path
) -> None:
    url = f"{simulator.base_url}/openai/deployments/davinci/completions?api-version=2024-10-21"
    with httpx.Client(timeout=TIMEOUT) as client:
        plain = client.post(url, json={"prompt": "Say this is a test", "max_tokens": 5})
        stream = client.post(url, json={"prompt": "Say this is a test", "stream": True})
    live = json.loads((recorded / "completions.json").read_bytes())
    assert shape(plain.json()) == shape(live)
    assert plain.json()["choices"][0]["finish_reason"] == "length"
    events = split_events(stream.content)
    assert b'"prompt_filter_results"' in events[0]
    assert events[-1] == b"data: [DONE]"
    assert b'"object":"text_completion"' in events[1]


def test_sdk_parses_a_responses_stream_ending_in_completed_with_usage(
    simulator: SimulatorServer,
) -> None:
    with openai.OpenAI(base_url=simulator.v1_url, api_key="unused", max_retries=0) as client:
        events = list(
            client.responses.create(model="gpt-4o-mini", input="Tell me a story", stream=True)
        )
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == deltas
    usage = completed.response.usage
    assert usage is not None
    assert usage.output_tokens == 20
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_stream_is_named_events_without_done(simulator: SimulatorServer) -> None:
    url = f"{simulator.base_url}/openai/responses?api-version=2025-04-01-preview"
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(url, json={"model": "gpt-4o-mini", "input": "hi", "stream": True})
    events = split_events(response.content)
    for event in events:
        name, data = event.split(b"\n")
        assert name.startswith(b"event: response.")
        assert json.loads(data[len(b"data: ") :])["type"] == name[len(b"event: ") :].decode()
    assert b"[DONE]" not in response.content


def test_responses_function_calls_and_limits(simulator: SimulatorServer) -> None:
    with openai.OpenAI(base_url=simulator.v1_url, api_key="unused", max_retries=0) as client:
        called = client.responses.create(
            model="gpt-4o-mini", input="weather?", tools=[WEATHER_TOOL]
        )  # type: ignore[list-item]
        limited = client.responses.create(
            model="gpt-4o-mini",
            input="hi",
            max_output_tokens=16,
            extra_headers={"x-sim-tokens": "40"},
        )
    call = called.output[0]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "simulated"}
    assert limited.status == "incomplete"
    assert limited.incomplete_details is not None
    assert limited.incomplete_details.reason == "max_output_tokens"
    assert limited.usage is not None
    assert limited.usage.output_tokens == 16


def test_background_response_is_queued_without_usage(simulator: SimulatorServer) -> None:
    url = f"{simulator.v1_url}responses"
    with httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(
            url, json={"model": "gpt-4o-mini", "input": "hi", "background": True}
        )
    body = response.json()
    assert body["status"] == "queued"
    assert body["usage"] is None
    assert body["output"] == []


def test_models_are_listed_on_both_surfaces(simulator: SimulatorServer) -> None:
    with openai.OpenAI(base_url=simulator.v1_url, api_key="unused", max_retries=0) as client:
        ids = [m.id for m in client.models.list()]
    assert ids == list(simulator.settings.deployments)
    with httpx.Client(timeout=TIMEOUT) as client:
        dated = client.get(f"{simulator.base_url}/openai/models?api-version=2024-10-21")
    assert dated.status_code == 200


def test_sdk_parses_a_streamed_responses_function_call(simulator: SimulatorServer) -> None:
    with openai.OpenAI(base_url=simulator.v1_url, api_key="unused", max_retries=0) as client:
        events = list(
            client.responses.create(
                model="gpt-4o-mini", input="weather?", tools=[WEATHER_TOOL], stream=True
            )  # type: ignore[list-item]
        )
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert deltas == done.arguments
    assert json.loads(done.arguments) == {"city": "simulated"}
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output[0].type == "function_call"


def test_azure_client_reaches_the_dated_responses_route(simulator: SimulatorServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=simulator.base_url,
        api_key="unused",
        api_version="2025-04-01-preview",
        max_retries=0,
    ) as client:
        response = client.responses.create(model="gpt-4o-mini", input="hello")
    assert response.status == "completed"
    assert response.output_text
    record = simulator.recorder.last()
    assert record.path == "/openai/responses"
    assert record.query == "api-version=2025-04-01-preview"
