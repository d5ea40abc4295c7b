"""The proxy's own log lines reach Application Insights from any task or thread, not only from
inside an invocation: the real Azure Monitor exporter (aoai_proxy.telemetry) posts them to a
loopback fake of the ingestion endpoint (`POST {IngestionEndpoint}/v2.1/track`, a JSON array of
envelopes, optionally gzip), which answers as the service does. A connection string's
IngestionEndpoint ends with a slash, so the exporter posts to `//v2.1/track`, which the service
takes; the fake takes it too.

The lines come from the Event Hub sink's counters reporter, a background task that outlives the
request that started it: in Azure the Functions host would drop them (no executing invocation).
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_mock import MockerFixture
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.delivery_doubles import HubDouble, MemoryDeadLetterStore, eventually, make_sink
from tests.delivery_doubles import usage_record as make_record

from aoai_proxy import telemetry
from aoai_proxy.sinks.counters import COUNTERS_EVENT

IKEY = "00000000-0000-0000-0000-000000000001"


class TrackFake:
    """Application Insights' track endpoint: every envelope it was sent."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        async def track(request: Request) -> JSONResponse:
            if request.url.path.lstrip("/") != "v2.1/track":
                return JSONResponse({"error": "not found"}, status_code=404)
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            items = json.loads(body)
            with self.lock:
                self.envelopes += items
            return JSONResponse({"itemsReceived": len(items), "itemsAccepted": len(items)})

        return Starlette(routes=[Route("/{path:path}", track, methods=["POST"])])

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**e["data"]["baseData"], "tags": e["tags"]}
                for e in self.envelopes
                if e["data"]["baseType"] == "MessageData"
            ]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing but the track call leaves the process: the exporter's own usage statistics and its
    remote configuration are off, and no managed identity is asked for a token."""
    for name in (
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
    ):
        monkeypatch.setenv(name, "true")
    monkeypatch.delenv("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", raising=False)


@pytest.fixture
def exported(serve_asgi: Callable[..., str]) -> Iterator[tuple[TrackFake, Any]]:
    """Log export on, to the fake; the logger is put back afterwards."""
    fake = TrackFake()
    url = serve_asgi(fake.app())
    logger = logging.getLogger(telemetry.LOGGER)
    handlers, level = list(logger.handlers), logger.level
    provider = telemetry.export_logs(
        f"InstrumentationKey={IKEY};IngestionEndpoint={url}/",
        role_name="func-aoai-test",
        role_instance="instance-1",
        disable_offline_storage=True,
    )
    try:
        yield fake, provider
    finally:
        provider.shutdown()
        logger.handlers[:] = handlers
        logger.setLevel(level)


async def test_background_task_lines_reach_application_insights_as_logged(
    exported: tuple[TrackFake, Any], hub: HubDouble, memory_deadletter: MemoryDeadLetterStore
) -> None:
    fake, provider = exported
    sink = make_sink(memory_deadletter, log_seconds=0.05)
    sink.submit(make_record())  # starts the sender and the counters reporter tasks
    await eventually(lambda: len(hub.records) == 1, what="the record at the hub")
    await eventually(
        lambda: (
            provider.force_flush(2000)
            and any(m["message"].startswith(COUNTERS_EVENT + " ") for m in fake.messages())
        ),
        what="a counters line at the track endpoint",
    )
    await sink.aclose()
    provider.force_flush(2000)

    lines = [m for m in fake.messages() if m["message"].startswith(COUNTERS_EVENT + " ")]
    # As the alert queries parse it: the fixed word, then the JSON the sink wrote.
    parsed = [json.loads(m["message"].removeprefix(COUNTERS_EVENT + " ")) for m in lines]
    assert parsed[-1]["final"] is True
    assert parsed[-1]["total"]["sent"] == 1
    assert sum(p["delta"]["sent"] for p in parsed) == 1
    for line in lines:
        assert line["severityLevel"] == 1  # Information: AppTraces.SeverityLevel
        # AppRoleName / AppRoleInstance: the host's values, so the two copies of a line match.
        assert line["tags"]["ai.cloud.role"] == "func-aoai-test"
        assert line["tags"]["ai.cloud.roleInstance"] == "instance-1"


def test_only_the_proxys_loggers_at_info_and_above_are_exported(
    exported: tuple[TrackFake, Any],
) -> None:
    fake, provider = exported
    done = threading.Event()

    def elsewhere() -> None:  # a thread of its own, as the SDKs' and the exporter's are
        logging.getLogger("aoai_proxy.sinks.eventhub").warning("usage_delivery_at_risk {}")
        logging.getLogger("aoai_proxy.replay").debug("not exported: below INFO")
        logging.getLogger("azure.core.pipeline").warning("not exported: a library's line")
        done.set()

    threading.Thread(target=elsewhere).start()
    assert done.wait(5)
    assert provider.force_flush(5000)

    assert [(m["message"], m["severityLevel"]) for m in fake.messages()] == [
        ("usage_delivery_at_risk {}", 2)  # 2: Warning
    ]


def test_export_is_on_only_with_a_connection_string(caplog: pytest.LogCaptureFixture) -> None:
    assert telemetry.export_logs_from_env({}) is None  # local runs and tests
    logger = logging.getLogger(telemetry.LOGGER)
    handlers = list(logger.handlers)
    with caplog.at_level(logging.ERROR, logger="aoai_proxy.telemetry"):
        provider = telemetry.export_logs_from_env(
            {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=not-a-guid"}
        )
    # A broken telemetry setting must not stop the gateway: said once, export off.
    assert provider is None
    assert logger.handlers == handlers
    assert "log export to Application Insights is off" in caplog.text


def test_the_exporter_takes_the_managed_identity_from_the_authentication_string(
    monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture
) -> None:
    """Keyless: functionapp.bicep writes APPLICATIONINSIGHTS_AUTHENTICATION_STRING, and the exporter
    (not our code) builds a ManagedIdentityCredential for that client id from it: the library
    behaviour the template relies on, checked where the exporter builds it."""
    from azure.monitor.opentelemetry.exporter.export import _base

    credential_class = mocker.patch.object(_base, "ManagedIdentityCredential", autospec=True)
    client_id = "11111111-2222-3333-4444-555555555555"
    monkeypatch.setenv(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", f"ClientId={client_id};Authorization=AAD"
    )
    logger = logging.getLogger(telemetry.LOGGER)
    handlers, level = list(logger.handlers), logger.level
    provider = telemetry.export_logs_from_env(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY};"
            "IngestionEndpoint=https://127.0.0.1/"
        }
    )
    try:
        assert provider is not None
        credential_class.assert_called_once_with(client_id=client_id)
    finally:
        if provider is not None:
            provider.shutdown()
        logger.handlers[:] = handlers
        logger.setLevel(level)


@pytest.mark.parametrize(
    ("settings", "role"),
    [
        ({"WEBSITE_SITE_NAME": "func-aoai"}, "func-aoai"),
        ({"WEBSITE_SITE_NAME": "func-aoai", "WEBSITE_CLOUD_ROLENAME": "gateway"}, "gateway"),
        ({}, "aoai-proxy"),
    ],
)
def test_the_role_name_is_the_one_the_host_uses(settings: dict[str, str], role: str) -> None:
    """So a line that also arrives through the host has the same AppRoleName and counts once."""
    logger = logging.getLogger(telemetry.LOGGER)
    handlers, level = list(logger.handlers), logger.level
    provider = telemetry.export_logs_from_env(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": f"InstrumentationKey={IKEY};"
            "IngestionEndpoint=https://127.0.0.1/",
            "WEBSITE_INSTANCE_ID": "instance-7",
            **settings,
        }
    )
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == role
        assert provider.resource.attributes["service.instance.id"] == "instance-7"
    finally:
        if provider is not None:
            provider.shutdown()
        logger.handlers[:] = handlers
        logger.setLevel(level)
