"""One HTTP/1.1 exchange over a raw socket: the request target and headers go out byte for byte.

HTTP client libraries normalise what hostile-input tests must send as is (httpx resolves dot
segments and re-encodes paths, http.client refuses control characters), so these tests write the
request themselves. Every exchange is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    base_url: str,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
    timeout: float = TIMEOUT_S,
) -> RawResponse | None:
    """Sends one request and reads the whole answer (Connection: close). None when the server
    closed the connection without an answer."""
    url = urlsplit(base_url)
    head = [method + b" " + target + b" HTTP/1.1", b"Host: " + url.netloc.encode()]
    head += [name + b": " + value for name, value in headers or []]
    if content_length:
        head.append(b"Content-Length: " + str(len(body)).encode())
    head.append(b"Connection: close")
    wire = b"\r\n".join(head) + b"\r\n\r\n" + body
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        # The server may answer (and close) before it has read everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(wire)
        received = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return parse_response(bytes(received))


def parse_response(data: bytes) -> RawResponse | None:
    if b"\r\n\r\n" not in data:
        return None
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [
        (name.strip().lower(), value.strip())
        for name, value in (line.split(":", 1) for line in lines[1:] if ":" in line)
    ]
    if dict(headers).get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawResponse(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)
