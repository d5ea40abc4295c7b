"""The APIM Bicep: tiers, keyless loggers, secret named value, api-key header, no bodies, full reach.

Each rule runs on the real templates and on an altered copy that breaks it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.infra import apim_rules as rules
from tests.infra import bicep_text as bt

from aoai_proxy.routes import ALL_METHODS, AOAIFN_ROUTE, HEALTH_ROUTE, PROXY_ROUTES

MODULES = bt.INFRA / "modules"
SERVICE = MODULES / "apim.bicep"
API = MODULES / "apim-api.bicep"


@pytest.fixture(scope="module")
def service() -> str:
    return SERVICE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def api() -> str:
    return API.read_text(encoding="utf-8")


def all_outputs() -> list[bt.Output]:
    return [o for f in bt.bicep_files() for o in bt.outputs(bt.read(f), f)]


def test_every_apim_resource_uses_the_ga_api_version(service: str, api: str) -> None:
    assert rules.check_api_versions(service + api) == []
    altered = api.replace("service/loggers@2024-05-01", "service/loggers@2023-05-01-preview", 1)
    assert rules.check_api_versions(altered)


def test_sku_defaults_to_basicv2_and_never_allows_consumption(service: str) -> None:
    assert rules.check_sku(service) == []
    assert rules.check_sku(
        service.replace("  'Developer'\n", "  'Developer'\n  'Consumption'\n", 1)
    )
    assert rules.check_sku(
        service.replace("param skuName string = 'BasicV2'", "param skuName string = 'Developer'")
    )
    assert rules.check_sku(
        service.replace("param skuCapacity int = 1", "param skuCapacity int = 2")
    )


def test_apim_runs_as_a_user_assigned_identity(service: str) -> None:
    (apim,) = [
        r for r in bt.resources(bt.read(SERVICE)) if r.type == "Microsoft.ApiManagement/service"
    ]
    assert bt.unquote(bt.get_path(apim.body, "identity.type")) == "UserAssigned"


def test_loggers_authenticate_with_the_managed_identity_only(api: str) -> None:
    assert rules.check_loggers(api) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("      identityClientId: identityClientId\n", "", "lack identityClientId"),
        (
            "      endpointAddress: eventHubNamespaceHost\n",
            "      connectionString: 'Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v'\n",
            "carry connectionString",
        ),
        (
            "      connectionString: appInsightsConnectionString\n",
            "      instrumentationKey: 'k'\n",
            "instrumentationKey",
        ),
    ],
)
def test_a_keyed_logger_is_reported(api: str, old: str, new: str, problem: str) -> None:
    assert old in api
    problems = rules.check_loggers(api.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


def test_the_function_key_is_a_secret_named_value_and_never_an_output(api: str) -> None:
    assert rules.check_named_values(api, all_outputs()) == []


def test_a_plain_or_exposed_named_value_is_reported(api: str) -> None:
    assert rules.check_named_values(api.replace("    secret: true\n", "    secret: false\n", 1), [])
    leak = bt.Output(API, "FUNCTION_KEY", "string", "functionKeyPlaceholder.properties.value", "")
    assert any("exposes" in p for p in rules.check_named_values(api, [leak]))
    listkeys = api.replace(
        "value: 'placeholder-replaced-by-the-postdeploy-hook'",
        "value: listKeys('${functionAppId}/host/default', '2024-11-01').functionKeys.default",
    )
    assert any("list*()" in p for p in rules.check_named_values(listkeys, []))


def test_no_output_anywhere_is_a_subscription_key_or_function_key() -> None:
    for output in all_outputs():
        assert not any(
            word in output.value for word in ("listSecrets", "primaryKey", "listKeys", "masterKey")
        ), output
        assert "KEY" not in output.name.upper().replace("_KEY_NAMED_VALUE", "").replace(
            "KEYNAMEDVALUE", ""
        ), output


def test_the_api_reads_the_subscription_key_from_api_key(api: str) -> None:
    assert rules.check_api(api) == []
    altered = api.replace(
        "      header: 'api-key'\n", "      header: 'Ocp-Apim-Subscription-Key'\n", 1
    )
    assert rules.check_api(altered) == ["the subscription key header is not api-key"]
    assert rules.check_api(
        api.replace("subscriptionRequired: true", "subscriptionRequired: false", 1)
    )
    assert rules.check_api(api.replace("      'https'\n", "      'https'\n      'http'\n", 1))


def test_diagnostics_log_no_body_bytes(api: str) -> None:
    assert rules.check_diagnostics_no_body(api) == []
    assert rules.check_diagnostics_no_body(api.replace("bytes: 0", "bytes: 8192", 1))


def test_the_backend_sends_the_host_key_over_verified_https(api: str) -> None:
    assert rules.check_backend(api, "functionKeyNamedValueName") == []
    assert rules.check_backend(
        api.replace("url: 'https://", "url: 'http://", 1), "functionKeyNamedValueName"
    )
    assert rules.check_backend(
        api.replace("'x-functions-key'", "'x-api-key'", 1), "functionKeyNamedValueName"
    )
    assert rules.check_backend(
        api.replace("validateCertificateChain: true", "validateCertificateChain: false", 1),
        "functionKeyNamedValueName",
    )
    # The origin's backend (the Function's /api path) is held to the same rules.
    origin_url = "url: 'https://${functionAppHostName}/api'"
    assert origin_url in api
    assert rules.check_backend(
        api.replace(origin_url, "url: 'http://${functionAppHostName}/api'"),
        "functionKeyNamedValueName",
    )


def test_every_route_the_function_serves_is_reachable_through_an_operation(api: str) -> None:
    ops = rules.operations(api)
    templates = [route.template for route in PROXY_ROUTES if route is not AOAIFN_ROUTE]
    assert rules.check_routes_reachable(ops, templates, ALL_METHODS) == []
    # /healthz is a probe of the Function itself, outside the API's /openai path: not published.
    assert not HEALTH_ROUTE.startswith("openai/")


HOST = "${functionAppHostName}"
ORIGIN_POLICY = MODULES / "apim-aoaifn-operation-policy.xml"


def test_the_origin_route_is_an_operation_sent_to_the_functions_api_path(api: str) -> None:
    policy = ORIGIN_POLICY.read_text(encoding="utf-8")
    assert AOAIFN_ROUTE.template == "api/aoaifn"
    assert rules.check_route_behind_operation(api, policy, AOAIFN_ROUTE.template, HOST) == []
    assert f"loadTextContent('{ORIGIN_POLICY.name}')" in api
    # Broken copies: no operation, the /openai backend, the API policy skipped.
    assert rules.check_route_behind_operation(
        api.replace("urlTemplate: '/aoaifn'", "urlTemplate: '/origin'"), policy, "api/aoaifn", HOST
    )
    assert rules.check_route_behind_operation(
        api, policy.replace("function-app-origin", "function-app"), "api/aoaifn", HOST
    )
    assert rules.check_route_behind_operation(
        api, policy.replace("<backend>\n    <base />", "<backend>", 1), "api/aoaifn", HOST
    )


def test_a_route_no_operation_matches_is_reported(api: str) -> None:
    ops = [op for op in rules.operations(api) if op.method != "DELETE"]
    problems = rules.check_routes_reachable(ops, ["openai/{*path}"], ["GET", "DELETE"])
    assert problems
    assert all("DELETE" in p for p in problems)
    ops = [op for op in rules.operations(api) if op.url_template != "/*"]
    assert rules.check_routes_reachable(ops, ["openai/files/{*path}"], ["GET"])


def test_operation_matching_follows_apim_templates() -> None:
    chat = rules.Operation("POST", "/deployments/{deployment-id}/chat/completions")
    assert chat.matches("POST", "/deployments/gpt-4o/chat/completions")
    assert not chat.matches("POST", "/deployments/a/b/chat/completions")
    assert not chat.matches("GET", "/deployments/gpt-4o/chat/completions")
    wildcard = rules.Operation("GET", "/*")
    assert wildcard.matches("GET", "/v1/models")
    assert wildcard.matches("GET", "/files/f/content")


def test_the_subscription_is_scoped_to_the_product_that_holds_the_api(api: str) -> None:
    (subscription,) = [
        r for r in bt.resources(bt.read(API)) if r.type.endswith("service/subscriptions")
    ]
    assert bt.get_path(subscription.body, "properties.scope") == "'/products/${product.name}'"
    assert bt.get_path(subscription.body, "properties.allowTracing") == "false"
    (link,) = [r for r in bt.resources(bt.read(API)) if r.type.endswith("service/products/apis")]
    assert bt.get_path(link.body, "name") == "api.name"


def test_the_policy_files_sit_next_to_the_module() -> None:
    for name in ("apim-openai-api-policy.xml", "apim-gateway-event-fragment.xml"):
        assert (Path(API).parent / name).is_file()


# The keys a StandardV2 service reports in the 2024-05-01 REST spec example
# (Azure/azure-rest-api-specs, apimanagement examples/ApiManagementCreateServiceSkuv2Service.json).
V2_CUSTOM_PROPERTIES = {
    f"Microsoft.WindowsAzure.ApiManagement.Gateway.{key}"
    for key in (
        "Security.Protocols.Tls10",
        "Security.Protocols.Tls11",
        "Security.Backend.Protocols.Tls10",
        "Security.Backend.Protocols.Tls11",
        "Security.Backend.Protocols.Ssl30",
        "Protocols.Server.Http2",
    )
}


def custom_property_problems(service_bicep: str) -> list[str]:
    (apim,) = [
        r for r in bt.resources(service_bicep) if r.type == "Microsoft.ApiManagement/service"
    ]
    block = bt.object_body(bt.get_path(apim.body, "properties.customProperties") or "") or ""
    keys = set(re.findall(r"^\s*'([^']+)'\s*:", block, re.MULTILINE))
    problems = [f"{k}: not a key the v2 tiers accept" for k in sorted(keys - V2_CUSTOM_PROPERTIES)]
    for protocol in ("Protocols.Tls10", "Protocols.Tls11"):
        if f"Microsoft.WindowsAzure.ApiManagement.Gateway.Security.{protocol}" not in keys:
            problems.append(f"client-side {protocol} is not turned off explicitly")
    return problems


def test_custom_properties_are_ones_every_allowed_tier_accepts(service: str) -> None:
    assert custom_property_problems(service) == []
    ssl30 = (
        "      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'False'\n"
    )
    altered = service.replace("    customProperties: {\n", "    customProperties: {\n" + ssl30, 1)
    assert custom_property_problems(altered) == [
        "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30: "
        "not a key the v2 tiers accept"
    ]
