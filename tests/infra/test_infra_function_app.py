"""The Function App is the Flex Consumption app azd deploys src/ to, configured as the issue asks."""

from __future__ import annotations

import re

from tests.infra import bicep_text as bt

ROOT = bt.INFRA.parent
MAIN = bt.read(bt.INFRA / "main.bicep")
APP_MODULE = bt.read(bt.INFRA / "modules" / "functionapp.bicep")


def _one(text: str, resource_type: str) -> bt.Resource:
    found = [r for r in bt.resources(text) if r.type == resource_type and not r.existing]
    assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
    return found[0]


def _allowed(text: str, param: str) -> list[str]:
    m = re.search(rf"@allowed\(\[(?P<values>[^\]]*)\]\)\s*(?:@.*\s*)*param\s+{param}\b", text)
    assert m, f"param {param} has no @allowed list"
    return m.group("values").split()


def test_python_runtime_defaults_to_the_version_ci_tests() -> None:
    assert bt.param_default(MAIN, "pythonVersion") == "'3.11'"
    assert _allowed(MAIN, "pythonVersion") == ["'3.11'", "'3.12'"]
    assert _allowed(APP_MODULE, "pythonVersion") == ["'3.11'", "'3.12'"]
    site = _one(APP_MODULE, "Microsoft.Web/sites")
    assert bt.get_path(site.body, "properties.functionAppConfig.runtime.name") == "'python'"
    assert bt.get_path(site.body, "properties.functionAppConfig.runtime.version") == "pythonVersion"


def test_plan_is_flex_consumption_on_linux() -> None:
    plan = _one(APP_MODULE, "Microsoft.Web/serverfarms")
    assert bt.get_path(plan.body, "sku.name") == "'FC1'"
    assert bt.get_path(plan.body, "sku.tier") == "'FlexConsumption'"
    assert bt.get_path(plan.body, "properties.reserved") == "true"


def test_site_is_https_only_and_deploys_through_the_user_assigned_identity() -> None:
    site = _one(APP_MODULE, "Microsoft.Web/sites")
    assert bt.get_path(site.body, "kind") == "'functionapp,linux'"
    assert bt.get_path(site.body, "properties.httpsOnly") == "true"
    assert bt.get_path(site.body, "properties.siteConfig.ftpsState") == "'Disabled'"
    assert bt.get_path(site.body, "identity.type") == "'UserAssigned'"
    auth = "properties.functionAppConfig.deployment.storage.authentication"
    assert bt.get_path(site.body, f"{auth}.type") == "'UserAssignedIdentity'"
    assert bt.get_path(site.body, f"{auth}.userAssignedIdentityResourceId") == "identityId"


def test_scale_settings_come_from_parameters() -> None:
    site = _one(APP_MODULE, "Microsoft.Web/sites")
    scale = "properties.functionAppConfig.scaleAndConcurrency"
    assert bt.get_path(site.body, f"{scale}.instanceMemoryMB") == "instanceMemoryMB"
    assert bt.get_path(site.body, f"{scale}.maximumInstanceCount") == "maximumInstanceCount"
    assert (
        bt.get_path(site.body, f"{scale}.triggers.http.perInstanceConcurrency")
        == "httpPerInstanceConcurrency"
    )
    for param in ("instanceMemoryMB", "maximumInstanceCount", "httpPerInstanceConcurrency"):
        assert f"{param}: {param}" in MAIN, f"main.bicep does not pass {param}"


def test_site_carries_the_azd_service_tag_of_azure_yaml() -> None:
    site = _one(APP_MODULE, "Microsoft.Web/sites")
    assert "'azd-service-name': 'api'" in site.properties["tags"]
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    services = azure_yaml.split("services:", 1)[1]
    assert re.search(
        r"^  api:\n    project: \./src\n    language: python\n    host: function$",
        services,
        re.MULTILINE,
    )


def test_event_hubs_is_standard_with_bounded_hub_settings() -> None:
    module = bt.read(bt.INFRA / "modules" / "eventhubs.bicep")
    ns = _one(module, "Microsoft.EventHub/namespaces")
    assert bt.get_path(ns.body, "sku.name") == "'Standard'"
    assert bt.get_path(ns.body, "properties.minimumTlsVersion") == "'1.2'"
    groups = [
        r
        for r in bt.resources(module)
        if r.type == "Microsoft.EventHub/namespaces/eventhubs/consumergroups"
    ]
    # Downstream readers and the usage landing function each have their own checkpoints.
    assert sorted(g.properties["name"] for g in groups) == [
        "consumerGroupName",
        "landingConsumerGroupName",
    ]
    for param, low, high in (("partitionCount", 1, 32), ("messageRetentionInDays", 1, 7)):
        m = re.search(
            rf"@minValue\({low}\)\s*@maxValue\({high}\)\s*(?:@.*\s*)*param\s+{param}\b", module
        )
        assert m, f"{param} is not bounded to {low}..{high}"


def test_openai_deployment_is_parameterised_with_a_small_default_capacity() -> None:
    assert bt.param_default(MAIN, "openAiDeploymentSku") == "'GlobalStandard'"
    capacity = bt.param_default(MAIN, "openAiDeploymentCapacity")
    assert capacity is not None
    assert int(capacity) <= 50
    module = bt.read(bt.INFRA / "modules" / "openai.bicep")
    account = _one(module, "Microsoft.CognitiveServices/accounts")
    assert bt.get_path(account.body, "properties.customSubDomainName") == "customSubDomainName"
