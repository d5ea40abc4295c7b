"""The landing's settings are read once and a bad one is named."""

from __future__ import annotations

import pytest

from aoai_proxy.config import ConfigError
from aoai_proxy.landing.settings import LandingSettings

GOOD = {
    "LOGS_INGESTION_ENDPOINT": "https://dcr-abc-0a1b.swedencentral-1.ingest.monitor.azure.com/",
    "LOGS_DCR_IMMUTABLE_ID": "dcr-0123456789abcdef0123456789abcdef",
    "LOGS_USAGE_STREAM": "Custom-AoaiUsage",
    "LOGS_GATEWAY_STREAM": "Custom-ApimGatewayEvents",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000abcd",
    "WEBSITE_INSTANCE_ID": "abc123",
}


def test_the_app_settings_the_bicep_writes_are_read() -> None:
    settings = LandingSettings.from_env(GOOD)
    assert settings.endpoint == "https://dcr-abc-0a1b.swedencentral-1.ingest.monitor.azure.com"
    assert settings.rule_id == GOOD["LOGS_DCR_IMMUTABLE_ID"]
    assert settings.usage_stream == "Custom-AoaiUsage"
    assert settings.gateway_stream == "Custom-ApimGatewayEvents"
    assert settings.managed_identity_client_id == GOOD["AZURE_CLIENT_ID"]
    assert settings.instance_id == "abc123"
    assert not settings.loopback


@pytest.mark.parametrize(
    "name",
    [
        "LOGS_INGESTION_ENDPOINT",
        "LOGS_DCR_IMMUTABLE_ID",
        "LOGS_USAGE_STREAM",
        "LOGS_GATEWAY_STREAM",
    ],
)
@pytest.mark.parametrize("value", [None, "", "  "])
def test_a_missing_setting_is_named(name: str, value: str | None) -> None:
    env = {k: v for k, v in GOOD.items() if k != name}
    if value is not None:
        env[name] = value  # azd writes unset values as empty strings
    with pytest.raises(ConfigError, match=name):
        LandingSettings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGS_INGESTION_ENDPOINT", "dcr-abc.swedencentral-1.ingest.monitor.azure.com"),
        ("LOGS_INGESTION_ENDPOINT", "http://dcr-abc.swedencentral-1.ingest.monitor.azure.com"),
        ("LOGS_DCR_IMMUTABLE_ID", "/subscriptions/x/resourceGroups/rg/providers/dcr"),
        ("LOGS_DCR_IMMUTABLE_ID", "dcr-123"),
        ("LOGS_USAGE_STREAM", "AoaiUsage_CL"),
        ("LOGS_GATEWAY_STREAM", "ApimGatewayEvents"),
    ],
)
def test_a_bad_setting_is_named_with_its_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as raised:
        LandingSettings.from_env(GOOD | {name: value})
    assert repr(value) in str(raised.value)


def test_plain_http_is_allowed_only_on_loopback() -> None:
    settings = LandingSettings.from_env(GOOD | {"LOGS_INGESTION_ENDPOINT": "http://127.0.0.1:8123"})
    assert settings.loopback
    assert (
        LandingSettings.from_env(GOOD | {"AZURE_CLIENT_ID": ""}).managed_identity_client_id is None
    )
