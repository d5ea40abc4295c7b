"""main.bicep, rbac.bicep, the parameters file and azure.yaml wire the APIM modules as docs/apim.md says."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from tests.infra import bicep_text as bt
from tests.infra import posture

ROOT = bt.INFRA.parent
MAIN = bt.INFRA / "main.bicep"
RBAC = bt.INFRA / "modules" / "rbac.bicep"


def module_block(main: str, symbol: str) -> str:
    m = re.search(rf"^module\s+{symbol}\s+'[^']+'\s*=\s*\{{", main, re.MULTILINE)
    assert m, f"module {symbol} not found in main.bicep"
    return main[m.end() : bt.matching_brace(main, m.end() - 1)]


def test_apim_has_its_own_identity_and_the_api_waits_for_its_roles() -> None:
    main = bt.read(MAIN)
    assert "apimPrincipalId: apimIdentity.outputs.principalId" in module_block(main, "rbac")
    service = module_block(main, "apim")
    assert "identityId: apimIdentity.outputs.id" in service
    api = module_block(main, "apimApi")
    assert "identityClientId: apimIdentity.outputs.clientId" in api
    # After the roles, and after the named value the backend refers to (key mode, code deployed).
    assert re.search(r"dependsOn:\s*\[\s*rbac\s+apimFunctionKey\s*\]", api)
    # The service itself does not wait: it is the slow part.
    assert "dependsOn" not in service


def test_the_api_module_gets_the_platform_it_fronts() -> None:
    api = module_block(bt.read(MAIN), "apimApi")
    for wiring in (
        "apimName: apim.outputs.name",
        "functionAppHostName: functionApp.outputs.defaultHostName",
        "eventHubNamespaceHost: eventHubs.outputs.fullyQualifiedNamespace",
        "eventHubName: eventHubs.outputs.hubName",
        "appInsightsId: monitoring.outputs.applicationInsightsId",
        "appInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString",
    ):
        assert wiring in api


def test_apim_identity_roles_are_managed_identity_assignments() -> None:
    rbac = RBAC.read_text(encoding="utf-8")
    assert posture.role_problems(rbac) == []
    dropped = rbac.replace(
        "scope: appInsights\n  name: guid(appInsights.id, apimPrincipalId",
        "scope: eventHub\n  name: guid(eventHub.id, apimPrincipalId",
        1,
    )
    assert any(
        "apimPrincipalId -> Monitoring Metrics Publisher" in p
        for p in posture.role_problems(dropped)
    )


def test_outputs_name_apim_and_never_its_keys() -> None:
    outputs = {o.name: o.value for o in bt.outputs(bt.read(MAIN))}
    assert outputs["APIM_GATEWAY_URL"] == "apim.outputs.gatewayUrl"
    for name in ("APIM_NAME", "APIM_SUBSCRIPTION_NAME", "APIM_FUNCTION_KEY_NAMED_VALUE"):
        assert name in outputs
    assert not [n for n in outputs if n.startswith("APIM_") and re.search(r"KEY$|SECRET", n)]


def test_the_smoke_test_finds_every_setting_it_needs_in_the_outputs() -> None:
    from scripts.smoke_test import REQUIRED_SETTINGS

    outputs = {o.name for o in bt.outputs(bt.read(MAIN))}
    # AZURE_SUBSCRIPTION_ID is set by azd itself.
    assert set(REQUIRED_SETTINGS) - {"AZURE_SUBSCRIPTION_ID"} <= outputs


def test_the_hooks_find_every_setting_they_need_in_the_outputs() -> None:
    outputs = {o.name for o in bt.outputs(bt.read(MAIN))}
    for hook in ("postdeploy", "postdown"):
        text = (ROOT / "scripts" / "hooks" / f"{hook}.sh").read_text(encoding="utf-8")
        needed = (
            set(re.findall(r"require_env ([A-Z_ ]+)", text)[0].split())
            if hook == "postdeploy"
            else set()
        )
        needed |= set(re.findall(r"\$\{?(ENTRA_APP_OBJECT_ID)", text))
        assert needed - {"AZURE_SUBSCRIPTION_ID"} <= outputs, hook


def test_parameters_file_maps_the_apim_settings() -> None:
    params = json.loads((bt.INFRA / "main.parameters.json").read_text(encoding="utf-8"))[
        "parameters"
    ]
    assert params["apimSku"]["value"] == "${APIM_SKU=BasicV2}"
    assert bt.param_default(bt.read(MAIN), "apimSku") == "'BasicV2'"
    assert "apimPublisherEmail" in params


@pytest.mark.parametrize("hook", ["preprovision", "postdeploy", "postdown"])
def test_azure_yaml_runs_each_hook_on_both_platforms(hook: str) -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    entry = config["hooks"][hook]
    posix, windows = entry["posix"], entry["windows"]
    assert (posix["shell"], windows["shell"]) == ("sh", "pwsh")
    assert posix["run"] == f"sh ./scripts/hooks/{hook}.sh"
    assert windows["run"] == f"./scripts/hooks/{hook}.ps1"
    for run in (posix["run"], windows["run"]):
        path = re.search(r"\./(scripts/\S+)", run).group(1)
        assert (ROOT / path).is_file()
    assert set(config["hooks"]) == {"preprovision", "postdeploy", "postdown"}


# Regions with Basic v2 and Standard v2: the dated snapshot in infra/availability.json (its sources
# and the other two tables: tests/infra/test_locations.py).
APIM_V2_REGIONS = frozenset(
    json.loads((bt.INFRA / "availability.json").read_text(encoding="utf-8"))["apimV2"]["regions"]
)


def allowed_locations(main: str) -> list[str]:
    """The values of the last @allowed list before `param location`."""
    head = main[: main.index("\nparam location string")]
    lists = re.findall(r"@allowed\(\[([^\]]*)\]\)", head)
    assert lists, "param location has no @allowed list"
    return re.findall(r"'(\w+)'", lists[-1])


def test_every_allowed_location_offers_the_apim_v2_tiers() -> None:
    main = bt.read(MAIN)
    locations = allowed_locations(main)
    assert locations
    assert [loc for loc in locations if loc not in APIM_V2_REGIONS] == []
    altered = main.replace("  'westeurope'\n", "  'westeurope'\n  'westus3'\n", 1)
    assert [loc for loc in allowed_locations(altered) if loc not in APIM_V2_REGIONS] == ["westus3"]
