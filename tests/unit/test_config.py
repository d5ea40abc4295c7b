"""Settings are validated once, and every error names the variable to fix."""

from __future__ import annotations

import pytest

from aoai_proxy.config import ConfigError, InjectionPolicy, Settings

BASE = {"AZURE_OPENAI_ENDPOINT": "https://my-aoai.openai.azure.com/"}


def test_defaults_are_secure_and_local() -> None:
    settings = Settings.from_env(BASE)
    assert settings.openai_endpoint == "https://my-aoai.openai.azure.com"
    assert settings.upstream_auth == "entra"
    assert settings.sink == "jsonl"
    assert settings.capture_content is False
    assert settings.response_timeout < 230  # Azure ends silent HTTP-triggered calls at 230 s
    assert settings.injection == InjectionPolicy(min_api_version="2024-08-01-preview")


def test_empty_strings_from_azd_count_as_unset() -> None:
    settings = Settings.from_env(
        {**BASE, "AZURE_CLIENT_ID": "", "USAGE_SINK": "", "EVENTHUB_NAME": ""}
    )
    assert settings.managed_identity_client_id is None
    assert settings.sink == "jsonl"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_ENDPOINT": "my-aoai.openai.azure.com"}, "AZURE_OPENAI_ENDPOINT"),
        ({**BASE, "PROXY_UPSTREAM_AUTH": "key"}, "PROXY_UPSTREAM_AUTH"),
        ({**BASE, "PROXY_UPSTREAM_AUTH": "none"}, "PROXY_UPSTREAM_AUTH"),
        ({**BASE, "PROXY_MAX_REQUEST_BYTES": "lots"}, "PROXY_MAX_REQUEST_BYTES"),
        ({**BASE, "PROXY_RESPONSE_TIMEOUT_SECONDS": "0"}, "PROXY_RESPONSE_TIMEOUT_SECONDS"),
        ({**BASE, "USAGE_CAPTURE_CONTENT": "maybe"}, "USAGE_CAPTURE_CONTENT"),
        ({**BASE, "USAGE_SINK": "kafka"}, "USAGE_SINK"),
        ({**BASE, "USAGE_SINK": "eventhub"}, "USAGE_SINK"),
        (
            {
                **BASE,
                "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "sb://my-usage-ns.servicebus.windows.net/",
            },
            "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
        ),
        (
            {**BASE, "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net"},
            "EVENTHUB_NAME",
        ),
        # POST /api/aoaifn would answer every call 404 DeploymentNotFound, blaming the caller.
        ({**BASE, "AZURE_OPENAI_DEPLOYMENT": "gpt 4o/mini"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({**BASE, "AZURE_OPENAI_DEPLOYMENT": "d" * 65}, "AZURE_OPENAI_DEPLOYMENT"),
        # A client id typo would only show as a 502 (no token) or a 401 on every call.
        ({**BASE, "AZURE_CLIENT_ID": "my-identity"}, "AZURE_CLIENT_ID"),
        (
            {
                **BASE,
                "PROXY_INBOUND_AUTH": "Entra",
                "PROXY_ALLOWED_CALLER_CLIENT_ID": "00000000-0000-0000-0000-00000000000",
            },
            "PROXY_ALLOWED_CALLER_CLIENT_ID",
        ),
    ],
)
def test_invalid_settings_fail_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


EVENTHUB = {
    **BASE,
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
    "EVENTHUB_NAME": "usage",
    "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Blob storage answers 400 InvalidResourceName for each of these container names.
        ("DEADLETTER_CONTAINER", "deadletter-A"),
        ("DEADLETTER_CONTAINER", "dl"),
        ("DEADLETTER_CONTAINER", "usage--deadletter"),
        ("DEADLETTER_CONTAINER", "-usage"),
        ("DEADLETTER_CONTAINER", "usage-"),
        ("DEADLETTER_CONTAINER", "usage_deadletter"),
        ("DEADLETTER_CONTAINER", "x" * 64),
        # Not a namespace host: no such namespace can exist, or the value is not a bare host.
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "my-usage-ns"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "my-ns.servicebus.windows.net"),  # 5 characters
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "1usage-ns.servicebus.windows.net"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "my-usage-ns-.servicebus.windows.net"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "my-usage-ns.servicebus.windows.net:5671"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "my-usage-ns.blob.core.windows.net"),
        (
            "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
            "Endpoint=sb://my-usage-ns.servicebus.windows.net/;SharedAccessKeyName=x",
        ),
        ("EVENTHUB_NAME", "usage hub"),
        ("EVENTHUB_NAME", "-usage"),
        ("EVENTHUB_NAME", "usage/other"),
        ("EVENTHUB_NAME", "u" * 257),
    ],
)
def test_a_name_azure_would_refuse_stops_the_app_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**EVENTHUB, name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEADLETTER_CONTAINER", "usage-deadletter"),
        ("DEADLETTER_CONTAINER", "dl1"),
        ("DEADLETTER_CONTAINER", "a-b-c-" + "x" * 57),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "evhns-a1b2c3.servicebus.windows.net"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "My-Usage-NS.servicebus.windows.net"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "evhns-a1b2c3.servicebus.chinacloudapi.cn"),
        ("EVENTHUB_FULLY_QUALIFIED_NAMESPACE", "evhns-a1b2c3.servicebus.usgovcloudapi.net"),
        ("EVENTHUB_NAME", "usage.records_v1-eu"),
        ("EVENTHUB_NAME", "u"),
    ],
)
def test_names_azure_accepts_are_accepted(name: str, value: str) -> None:
    settings = Settings.from_env({**EVENTHUB, name: value})
    assert value in (
        settings.deadletter_container,
        settings.eventhub_namespace,
        settings.eventhub_name,
    )


def test_upstream_auth_can_be_off_only_for_a_loopback_simulator() -> None:
    for endpoint in ("http://127.0.0.1:8090", "http://localhost:8090", "http://[::1]:8090"):
        assert Settings.from_env({"AZURE_OPENAI_ENDPOINT": endpoint, "PROXY_UPSTREAM_AUTH": "none"})
    with pytest.raises(ConfigError, match="loopback"):
        Settings.from_env(
            {"AZURE_OPENAI_ENDPOINT": "http://10.0.0.4", "PROXY_UPSTREAM_AUTH": "none"}
        )


def test_event_hub_settings_select_the_event_hub_sink() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
            "EVENTHUB_NAME": "usage",
            "AzureWebJobsStorage__blobServiceUri": "https://st.blob.core.windows.net",
        }
    )
    assert settings.sink == "eventhub"
    assert settings.deadletter_blob_service_uri == "https://st.blob.core.windows.net"


def test_the_legacy_allow_list_still_names_exactly_the_injected_versions() -> None:
    settings = Settings.from_env(
        {**BASE, "USAGE_INJECT_API_VERSIONS": "2025-04-01-preview, 2024-10-21"}
    )
    assert settings.injection.only == {"2025-04-01-preview", "2024-10-21"}


def test_injection_policy_settings() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "USAGE_INJECT_MIN_API_VERSION": "2024-10-21",
            "USAGE_INJECT_EXTRA_API_VERSIONS": "2024-06-01, custom",
            "USAGE_INJECT_EXCLUDED_API_VERSIONS": "2025-01-01-preview",
        }
    )
    assert settings.injection == InjectionPolicy(
        min_api_version="2024-10-21",
        extra=frozenset({"2024-06-01", "custom"}),
        excluded=frozenset({"2025-01-01-preview"}),
    )


@pytest.mark.parametrize("value", ["latest", "2024-13-45", "2024-10-21-beta", "20241021"])
def test_the_injection_minimum_must_be_a_dated_version(value: str) -> None:
    with pytest.raises(ConfigError, match="USAGE_INJECT_MIN_API_VERSION"):
        Settings.from_env({**BASE, "USAGE_INJECT_MIN_API_VERSION": value})


def test_the_legacy_list_cannot_be_mixed_with_the_new_settings() -> None:
    with pytest.raises(ConfigError, match=r"USAGE_INJECT_API_VERSIONS.*USAGE_INJECT_EXTRA"):
        Settings.from_env(
            {
                **BASE,
                "USAGE_INJECT_API_VERSIONS": "2024-10-21",
                "USAGE_INJECT_EXTRA_API_VERSIONS": "2024-06-01",
            }
        )


def test_every_reader_of_the_managed_identity_checks_its_client_id() -> None:
    from aoai_proxy.landing.settings import LandingSettings
    from aoai_proxy.replay import ReplaySettings

    landing = {
        "LOGS_INGESTION_ENDPOINT": "https://dcr-x.westeurope-1.ingest.monitor.azure.com",
        "LOGS_DCR_IMMUTABLE_ID": "dcr-" + "0" * 32,
        "LOGS_USAGE_STREAM": "Custom-AoaiUsage",
        "LOGS_GATEWAY_STREAM": "Custom-ApimGatewayEvents",
    }
    replay = {
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "my-usage-ns.servicebus.windows.net",
        "EVENTHUB_NAME": "usage",
        "DEADLETTER_BLOB_SERVICE_URI": "https://myaccount.blob.core.windows.net",
    }
    good = "0b3e1a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    for read, env in ((LandingSettings.from_env, landing), (ReplaySettings.from_env, replay)):
        assert read({**env, "AZURE_CLIENT_ID": good}).managed_identity_client_id == good  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match="AZURE_CLIENT_ID"):
            read({**env, "AZURE_CLIENT_ID": "not-a-guid"})
