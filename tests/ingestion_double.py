"""A loopback fake of the Azure Monitor Logs Ingestion API, for the real azure-monitor-ingestion client.

It speaks the service's HTTP contract (learn.microsoft.com/azure/azure-monitor/logs/
logs-ingestion-api-overview, REST "Logs Ingestion - Upload"): `POST {endpoint}/dataCollectionRules/
{immutableId}/streams/{stream}?api-version=2023-01-01`, a bearer token for https://monitor.azure.com,
a gzip-compressed JSON array, 204 on success, `{"error": {"code", "message"}}` otherwise, 413 over
the 1 MB limit, 429/503 with `Retry-After` when throttled. The DCR's streams are the ones
infra/analytics/tables.json declares, so a row with a column the stream does not have, without one it
has, or with a value of the wrong type is refused like a misdeclared row would be. Faults can be
scripted. The fixture is re-exported by tests/conftest.py.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aoai_proxy.landing.settings import LandingSettings

TABLES = json.loads(
    (Path(__file__).resolve().parents[1] / "infra" / "analytics" / "tables.json").read_text()
)
API_VERSION = "2023-01-01"
MAX_BYTES = 1_048_576  # 1 MB per call
RULE_ID = "dcr-0123456789abcdef0123456789abcdef"
AUDIENCE = "https://monitor.azure.com"
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})$")


def _fits(dcr_type: str, value: Any) -> bool:
    if value is None:
        return True
    if dcr_type == "string":
        return isinstance(value, str)
    if dcr_type in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if dcr_type == "real":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if dcr_type == "boolean":
        return isinstance(value, bool)
    if dcr_type == "datetime":
        return isinstance(value, str) and bool(ISO_8601.match(value))
    return dcr_type == "dynamic"


STREAMS: dict[str, dict[str, str]] = {
    TABLES[table]["stream"]: {
        column["name"]: TABLES["dcrTypes"][column["type"]] for column in TABLES[table]["columns"]
    }
    for table in ("usage", "gateway")
}


@dataclass
class Fault:
    """The next `times` matching requests get this answer instead of being ingested."""

    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    only_if: Callable[[list[dict[str, Any]]], bool] | None = None  # on the request's rows


@dataclass
class Received:
    stream: str
    status: int
    rows: list[dict[str, Any]]
    headers: dict[str, str]
    at: float  # time.monotonic()
    raw_bytes: int  # the JSON before gzip


@dataclass
class IngestionFake:
    base_url: str = ""
    token: str = f"entra-token-for {AUDIENCE}"
    max_bytes: int = MAX_BYTES
    received: list[Received] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def landed(self, stream: str) -> list[dict[str, Any]]:
        return [
            row for r in self.received if r.status == 204 and r.stream == stream for row in r.rows
        ]

    def settings(self, **overrides: Any) -> LandingSettings:
        values: dict[str, Any] = {
            "endpoint": self.base_url,
            "rule_id": RULE_ID,
            "usage_stream": TABLES["usage"]["stream"],
            "gateway_stream": TABLES["gateway"]["stream"],
        }
        return LandingSettings(**(values | overrides))

    def env(self) -> dict[str, str]:
        """The app settings the Bicep writes, pointing at this fake."""
        return {
            "LOGS_INGESTION_ENDPOINT": self.base_url,
            "LOGS_DCR_IMMUTABLE_ID": RULE_ID,
            "LOGS_USAGE_STREAM": TABLES["usage"]["stream"],
            "LOGS_GATEWAY_STREAM": TABLES["gateway"]["stream"],
        }

    def _fault_for(self, rows: list[dict[str, Any]]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.only_if is None or fault.only_if(rows)):
                    fault.times -= 1
                    return fault
        return None

    def app(self) -> Starlette:
        async def upload(request: Request) -> Response:
            stream = request.path_params["stream"]
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            rows: list[dict[str, Any]] = []
            raw = b""

            def answer(status: int, code: str = "", message: str = "", **extra: str) -> Response:
                self.received.append(
                    Received(stream, status, rows, headers, time.monotonic(), len(raw))
                )
                if status == 204:
                    return Response(status_code=204)
                error = {"error": {"code": code, "message": message or code}}
                return JSONResponse(error, status_code=status, headers=extra or None)

            if request.query_params.get("api-version") != API_VERSION:
                return answer(400, "InvalidApiVersion")
            if headers.get("authorization") != f"Bearer {self.token}":
                return answer(
                    401, "InvalidToken", "the bearer token is missing or not for " + AUDIENCE
                )
            if request.path_params["rule_id"] != RULE_ID:
                return answer(404, "InvalidDcrImmutableId")
            if stream not in STREAMS:
                return answer(400, "InvalidStream", f"stream {stream} is not declared in the DCR")
            if headers.get("content-type") != "application/json":
                return answer(415, "UnsupportedMediaType")
            if headers.get("content-encoding") != "gzip":
                return answer(400, "InvalidContentEncoding", "the client sends gzip")
            raw = gzip.decompress(body)
            try:
                rows = json.loads(raw)
            except ValueError:
                return answer(400, "InvalidJson")
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                return answer(400, "InvalidPayload", "the body must be a JSON array of objects")
            fault = self._fault_for(rows)
            if fault is not None:
                return answer(fault.status, fault.code, **fault.headers)
            if len(raw) > self.max_bytes or len(body) > self.max_bytes:
                return answer(
                    413,
                    "ContentLengthLimitExceeded",
                    f"Maximum allowed content length: {self.max_bytes} bytes; got {len(raw)}",
                )
            columns = STREAMS[stream]
            for row in rows:
                if set(row) != set(columns):
                    return answer(
                        400, "InvalidColumns", f"columns differ: {set(row) ^ set(columns)}"
                    )
                wrong = [name for name, value in row.items() if not _fits(columns[name], value)]
                if wrong:
                    return answer(400, "InvalidColumnValue", f"wrong type in {wrong}")
            return answer(204)

        route = "/dataCollectionRules/{rule_id}/streams/{stream}"
        return Starlette(routes=[Route(route, upload, methods=["POST"])])


@pytest.fixture
def ingestion(serve_asgi: Callable[..., str]) -> IngestionFake:
    fake = IngestionFake()
    fake.base_url = serve_asgi(fake.app())
    return fake
