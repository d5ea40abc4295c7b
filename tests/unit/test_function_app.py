"""Index the Function app the way the Python worker does, so a broken registration fails here."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import pytest
from azurefunctions.extensions.http.fastapi import Request, Response

from aoai_proxy.routes import HEALTH_ROUTE, PROXY_ROUTES


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    import function_app

    # azure-functions 1.x raises on a second get_functions() call: index once, like the worker.
    return {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


def bindings(fn: Any) -> list[dict[str, Any]]:
    return list(json.loads(fn.get_function_json())["bindings"])


def test_every_proxy_route_is_an_http_function_with_function_auth(
    functions: dict[str, Any],
) -> None:
    for spec in PROXY_ROUTES:
        trigger = bindings(functions[spec.name])[0]
        assert trigger["type"] == "httpTrigger"
        assert trigger["route"] == spec.template
        assert trigger["authLevel"] == "FUNCTION"
        assert set(trigger["methods"]) == set(spec.methods)
        assert bindings(functions[spec.name])[1] == {
            "direction": "OUT",
            "type": "http",
            "name": "$return",
        }


def test_catch_all_covers_everything_under_openai(functions: dict[str, Any]) -> None:
    assert bindings(functions["openai_passthrough"])[0]["route"] == "openai/{*path}"


def test_the_origin_route_is_post_api_aoaifn(functions: dict[str, Any]) -> None:
    trigger = bindings(functions["aoaifn"])[0]
    assert trigger["route"] == "api/aoaifn"  # served at /api/aoaifn, like the origin's Function
    assert trigger["methods"] == ["POST"]
    assert trigger["authLevel"] == "FUNCTION"


def test_openai_routes_serve_every_method(functions: dict[str, Any]) -> None:
    for spec in PROXY_ROUTES:
        if spec.template.startswith("openai/"):
            assert {"GET", "POST", "DELETE"} <= set(bindings(functions[spec.name])[0]["methods"])


def test_health_is_anonymous_get(functions: dict[str, Any]) -> None:
    trigger = bindings(functions["healthz"])[0]
    assert trigger["route"] == HEALTH_ROUTE
    assert trigger["methods"] == ["GET"]
    assert trigger["authLevel"] == "ANONYMOUS"


def test_http_handlers_use_the_streaming_extension_types(functions: dict[str, Any]) -> None:
    http = [fn for fn in functions.values() if bindings(fn)[0]["type"] == "httpTrigger"]
    assert len(http) == len(PROXY_ROUTES) + 1
    for fn in http:
        signature = inspect.signature(fn.get_user_function())
        assert [p.annotation for p in signature.parameters.values()] == [Request]
        assert signature.return_annotation is Response
        assert inspect.iscoroutinefunction(fn.get_user_function())


def test_dead_letter_replay_timer_is_registered(functions: dict[str, Any]) -> None:
    timer = bindings(functions["replay_usage_deadletters"])[0]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 */5 * * * *"


def test_host_json_removes_the_api_prefix() -> None:
    from pathlib import Path

    host = json.loads((Path(__file__).parents[2] / "src" / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_host_json_neither_filters_nor_samples_the_pipelines_log_lines() -> None:
    """The pipeline alerts count lines the host forwards (category Function.<name>.User, INFO and
    WARNING/ERROR): nothing below Warning may be filtered, and traces are never sampled, or the
    sums would be estimates (learn.microsoft.com/azure/azure-functions/configure-monitoring)."""
    from pathlib import Path

    host = json.loads((Path(__file__).parents[2] / "src" / "host.json").read_text())
    levels = host["logging"]["logLevel"]
    assert levels["default"] == "Information"
    assert levels["Function"] == "Information"
    assert not [name for name in levels if name.startswith("Function.")]  # no narrower filter
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert "Trace" in sampling["excludedTypes"].split(";")


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("entra", "ANONYMOUS"),
        ("key", "FUNCTION"),
        ("", "FUNCTION"),
        ("Entra", "ANONYMOUS"),
        ("entrA ", "ANONYMOUS"),
        ("kEy", "FUNCTION"),
    ],
)
def test_only_entra_mode_opens_the_routes_at_the_functions_level(value: str, level: str) -> None:
    # Decided at indexing, so a fresh interpreter per value (the worker imports the app once).
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).parents[2] / "src"
    script = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): json.loads(f.get_function_json())['bindings'][0]"
        ".get('authLevel') for f in function_app.app.get_functions()}))\n"
    )
    env = {**os.environ, "PROXY_INBOUND_AUTH": value, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=src, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    levels = json.loads(done.stdout.strip().splitlines()[-1])
    assert {levels[spec.name] for spec in PROXY_ROUTES} == {level}
    assert levels["healthz"] == "ANONYMOUS"


def test_in_azure_the_app_exports_its_own_log_lines_with_the_managed_identity() -> None:
    """With the app settings functionapp.bicep writes, importing the app (as the worker does) puts
    the exporter's handler on the proxy's loggers; without them nothing is exported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).parents[2] / "src"
    script = (
        "import json, logging, function_app\n"
        "logger = logging.getLogger('aoai_proxy')\n"
        "print(json.dumps({'export': function_app.log_export is not None, 'level': logger.level,\n"
        "  'handlers': [type(h).__name__ for h in logger.handlers]}))\n"
    )
    offline = {
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    }
    azure = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000001;"
        "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=11111111-2222-3333-4444-555555555555;"
        "Authorization=AAD",
        "WEBSITE_SITE_NAME": "func-aoai",
    }
    results = []
    for extra in ({}, azure):
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")} | {
            **offline,
            **extra,
            "PYTHONPATH": str(src),
        }
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    local, in_azure = results
    assert (local["export"], local["handlers"]) == (False, [])
    assert (in_azure["export"], in_azure["handlers"]) == (True, ["LoggingHandler"])
    assert in_azure["level"] == logging.INFO


def test_usage_landing_is_a_batched_event_hubs_trigger_on_its_own_consumer_group(
    functions: dict[str, Any],
) -> None:
    trigger = bindings(functions["land_usage_events"])[0]
    assert trigger == {
        "direction": "IN",
        "type": "eventHubTrigger",
        "name": "events",
        # Identity-based: EventHubConnection__fullyQualifiedNamespace / __credential / __clientId.
        "connection": "EventHubConnection",
        "eventHubName": "%EVENTHUB_NAME%",
        "consumerGroup": "%USAGE_LANDING_CONSUMER_GROUP%",
        "cardinality": "MANY",
        "dataType": "BINARY",
    }
    assert len(bindings(functions["land_usage_events"])) == 1


def test_usage_landing_parameters_pass_the_workers_type_checks(functions: dict[str, Any]) -> None:
    import azure.functions as func
    from azure.functions.eventhub import EventHubTriggerConverter

    user_function = functions["land_usage_events"].get_user_function()
    assert inspect.iscoroutinefunction(user_function)
    parameters = inspect.signature(user_function).parameters
    assert list(parameters) == ["events", "context"]
    # The worker binds the trigger by this check (list[...] fails it) and `context` by name and type.
    assert EventHubTriggerConverter.check_input_type_annotation(parameters["events"].annotation)
    assert parameters["context"].annotation is func.Context


def test_usage_landing_retries_a_failed_batch_with_bounded_exponential_backoff(
    functions: dict[str, Any],
) -> None:
    retry = functions["land_usage_events"].get_settings_dict("retry_policy")
    assert retry is not None
    assert retry["strategy"] == "exponential_backoff"
    count = int(retry["max_retry_count"])
    # Never -1 (for ever): a batch that cannot land must not hold its partition.
    assert 0 < count <= 10

    def seconds(interval: str) -> int:
        hours, minutes, secs = (int(part) for part in interval.split(":"))
        return hours * 3600 + minutes * 60 + secs

    low, high = seconds(retry["minimum_interval"]), seconds(retry["maximum_interval"])
    waited = sum(min(low * 2**n, high) for n in range(count))
    # Longer than a new role assignment can take to apply (up to 30 minutes), well under the hub's
    # retention, so the first deploy's batches are retried until the roles work.
    assert 30 * 60 < waited < 2 * 3600
