"""Pure, incremental Server-Sent Events framing and parsing. No I/O.

The relay must pass bytes through unchanged, so framing works on raw bytes: `SSEFramer.feed()`
returns each complete event exactly as received, terminator included, and the concatenation of
everything it returns plus `flush()` equals the input. `parse_event()` then interprets one raw
event per the WHATWG algorithm (html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end with CRLF, LF or CR; a blank line ends the event; `data` lines are joined with LF;
one space after the colon is dropped; lines starting with a colon are comments.
"""

from __future__ import annotations

from dataclasses import dataclass

_CR = 0x0D
_LF = 0x0A


class SSEFramer:
    """Splits a byte stream into raw events at blank lines, at any chunk boundary.

    A piece may also be a lone LF: the tail of a CRLF blank line whose CR ended the previous chunk.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._line_start = 0  # where the line being scanned starts, within _buffer
        self._lf_after_cr = False  # the last event ended in a bare CR: a LF next belongs to it

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += chunk
        events: list[bytes] = []
        event_start = 0
        pos = self._line_start
        if self._lf_after_cr and buffer:
            self._lf_after_cr = False
            if buffer[0] == _LF:
                # The rest of the previous event's CRLF: hand it on at once, as its own piece.
                events.append(b"\n")
                event_start = pos = 1
        while True:
            lf = buffer.find(b"\n", pos)
            cr = buffer.find(b"\r", pos, lf if lf >= 0 else len(buffer))
            end = cr if cr >= 0 else lf
            if end < 0:
                break
            if buffer[end] == _CR:
                if end + 1 == len(buffer):
                    if end != pos:
                        break  # CR at the end of a line: wait to see whether LF follows
                    # A bare CR ends the event now; a LF arriving next is part of its CRLF.
                    self._lf_after_cr = True
                    width = 1
                else:
                    width = 2 if buffer[end + 1] == _LF else 1
            else:
                width = 1
            blank = end == pos
            pos = end + width
            if blank:
                events.append(bytes(buffer[event_start:pos]))
                event_start = pos
        del buffer[:event_start]
        self._line_start = pos - event_start
        return events

    def flush(self) -> bytes:
        """What is left at the end of the stream: an event with no blank line after it, if any."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._line_start = 0
        self._lf_after_cr = False
        return rest


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" when the event has no `event:` field
    data: str
    id: str | None = None
    retry: int | None = None


def parse_event(raw: bytes) -> SSEEvent | None:
    """Interprets one raw event; None when it has no data (comments, keep-alives, blank lines)."""
    data = _lone_data_line(raw)
    if data is not None:
        return SSEEvent(event="message", data=data)
    return _parse_fields(raw)


_BLANK_LINES = (b"\n\n", b"\r\n\r\n", b"\r\r")


def _lone_data_line(raw: bytes) -> str | None:
    """The data of an event that is one `data:` line of valid UTF-8, as Azure sends nearly every
    event: what _parse_fields makes of it, without its work per line (measurable per event)."""
    if not raw.startswith(b"data:"):
        return None
    for blank in _BLANK_LINES:
        if raw.endswith(blank):
            break
    else:
        return None
    data = raw[6 if raw.startswith(b"data: ") else 5 : len(raw) - len(blank)]
    if b"\n" in data or b"\r" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # decoded with replacement characters by the general parse
        return None


def _parse_fields(raw: bytes) -> SSEEvent | None:
    text = raw.decode("utf-8", errors="replace")
    event_type = ""
    data: list[str] = []
    event_id: str | None = None
    retry: int | None = None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    if not data:
        return None
    return SSEEvent(event=event_type or "message", data="\n".join(data), id=event_id, retry=retry)
