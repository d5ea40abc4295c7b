"""The SSE framer relays bytes unchanged and finds every event at any chunk boundary."""

from __future__ import annotations

import pytest

from aoai_proxy.sse import SSEEvent, SSEFramer, parse_event

SAMPLE = (
    b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
    b": keep-alive comment\n\n"
    b"event: response.output_text.delta\n"
    b'data: {"delta":"hi"}\n\n'
    b"data: line one\n"
    b"data: line two\n\n"
    b"data: [DONE]\n\n"
)


def frame_all(stream: bytes, cuts: list[int]) -> tuple[list[bytes], bytes]:
    framer = SSEFramer()
    events: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        events += framer.feed(stream[start:cut])
        start = cut
    return events, framer.flush()


def data_events(raw_events: list[bytes]) -> list[SSEEvent]:
    return [event for raw in raw_events if (event := parse_event(raw)) is not None]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_split_at_every_byte_boundary_gives_the_same_events_and_bytes(newline: bytes) -> None:
    stream = SAMPLE.replace(b"\n", newline)
    whole, rest = frame_all(stream, [])
    assert rest == b""
    assert [e.data for e in data_events(whole)] == [
        '{"choices":[],"prompt_filter_results":[]}',
        '{"delta":"hi"}',
        "line one\nline two",
        "[DONE]",
    ]
    for cut in range(len(stream) + 1):
        events, rest = frame_all(stream, [cut])
        assert b"".join(events) + rest == stream
        assert data_events(events) == data_events(whole), f"cut at {cut}"


def test_byte_by_byte_feeding_keeps_crlf_pairs_together() -> None:
    stream = SAMPLE.replace(b"\n", b"\r\n")
    events, rest = frame_all(stream, list(range(1, len(stream))))
    assert b"".join(events) + rest == stream
    assert len(data_events(events)) == 4
    # The LF of a CRLF split from its CR goes out alone at once, never glued to the next event.
    assert all(event == b"\n" or not event.startswith(b"\n") for event in events)


def test_mixed_terminators_in_one_stream() -> None:
    stream = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\n"
    events, rest = frame_all(stream, [])
    assert [e.data for e in data_events(events)] == ["a", "b", "c", "d"]
    assert b"".join(events) + rest == stream


def test_an_event_is_emitted_as_soon_as_its_blank_line_arrives() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: first\n") == []
    assert framer.feed(b"\n") == [b"data: first\n\n"]
    assert framer.feed(b"data: sec") == []


def test_unterminated_tail_is_returned_by_flush() -> None:
    events, rest = frame_all(b"data: a\n\ndata: partial", [])
    assert events == [b"data: a\n\n"]
    assert rest == b"data: partial"


def test_parse_event_follows_whatwg_field_rules() -> None:
    event = parse_event(b"event: ping\nid: 7\nretry: 1500\ndata:no-space\ndata:  two spaces\n\n")
    assert event == SSEEvent(event="ping", data="no-space\n two spaces", id="7", retry=1500)
    assert parse_event(b": comment only\n\n") is None
    assert parse_event(b"\n") is None


def test_recorded_azure_streams_split_at_every_byte(recorded: object) -> None:
    from pathlib import Path

    assert isinstance(recorded, Path)
    for name in ("chat_stream.sse", "chat_stream_usage.sse", "tools_stream.sse", "long_stream.sse"):
        stream = (recorded / name).read_bytes()
        whole, _ = frame_all(stream, [])
        assert data_events(whole)[-1].data == "[DONE]"
        assert data_events(whole)[0].data.startswith('{"choices":[]')
        for cut in range(len(stream) + 1):
            events, rest = frame_all(stream, [cut])
            assert b"".join(events) + rest == stream
            assert len(events) == len(whole)
