"""Review findings of issue 9, each read from the templates and each with a broken copy that fails:
operation loops in order, APIM capacity per tier, the Flex instance minimum, diagnostic settings to
the workspace, and one gateway event per call even when on-error runs after outbound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.infra import apim_rules as rules
from tests.infra import bicep_text as bt

MODULES = bt.INFRA / "modules"
MAIN = bt.INFRA / "main.bicep"
API = MODULES / "apim-api.bicep"
SERVICE = MODULES / "apim.bicep"
DIAGNOSTICS = MODULES / "diagnostics.bicep"
FRAGMENT = MODULES / "apim-gateway-event-fragment.xml"


def test_the_wildcard_operations_wait_for_the_named_operations() -> None:
    text = bt.read(API)
    m = re.search(r"^resource wildcardOperations '[^']+' = \[", text, re.M)
    assert m
    loop = text[m.end() : bt.matching_brace(text, m.end() - 1)]
    depends = re.search(r"dependsOn:\s*\[([^\]]*)\]", loop)
    assert depends
    assert depends.group(1).split() == ["operations"]
    assert "@batchSize(1)\nresource wildcardOperations" in bt.read(API)


def test_developer_runs_one_unit_and_v2_tiers_up_to_ten() -> None:
    text = bt.read(SERVICE)
    (service,) = [r for r in bt.resources(text) if r.symbol == "apim"]
    assert bt.get_path(service.body, "sku.capacity") == "skuName == 'Developer' ? 1 : skuCapacity"
    assert re.search(r"@minValue\(1\)\s*@maxValue\(10\)\s*param skuCapacity int", text)
    main = bt.read(MAIN)
    assert re.search(r"@minValue\(1\)\s*@maxValue\(10\)\s*param apimSkuCapacity int", main)


@pytest.mark.parametrize("path", [MAIN, MODULES / "functionapp.bicep"], ids=lambda p: p.name)
def test_flex_maximum_instances_follow_the_current_limits(path: Path) -> None:
    text = bt.read(path)
    assert re.search(r"@minValue\(1\)\s*@maxValue\(1000\)\s*param maximumInstanceCount int", text)
    assert "event-driven-scaling#limit-scale-out" in path.read_text(encoding="utf-8")


def test_apim_openai_and_event_hubs_send_logs_and_metrics_to_the_workspace() -> None:
    text = bt.read(DIAGNOSTICS)
    settings = [r for r in bt.resources(text) if r.type == "Microsoft.Insights/diagnosticSettings"]
    existing = {r.symbol: r.type for r in bt.resources(text) if r.existing}
    scopes = {existing[bt.get_path(r.body, "scope") or ""] for r in settings}
    assert scopes == {
        "Microsoft.ApiManagement/service",
        "Microsoft.CognitiveServices/accounts",
        "Microsoft.EventHub/namespaces",
    }
    assert {bt.get_path(r.body, "properties") for r in settings} == {"everything"}
    everything = bt.var_object(text, "everything")
    assert everything["workspaceId"] == "workspaceId"
    assert "categoryGroup: 'allLogs'" in everything["logs"]
    assert "category: 'AllMetrics'" in everything["metrics"]
    main = bt.read(MAIN)
    m = re.search(r"^module diagnostics 'modules/diagnostics.bicep' = \{", main, re.M)
    assert m
    block = main[m.end() : bt.matching_brace(main, m.end() - 1)]
    assert "workspaceId: monitoring.outputs.logAnalyticsWorkspaceId" in block


def test_the_gateway_event_is_logged_once_per_call() -> None:
    fragment = FRAGMENT.read_text(encoding="utf-8")
    assert rules.check_gateway_event(fragment) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('ContainsKey("gateway-event-sent")', 'ContainsKey("other")', "not guarded"),
        ('<set-variable name="gateway-event-sent" value="@(true)" />', "", "does not set"),
    ],
)
def test_a_fragment_that_could_log_twice_is_reported(old: str, new: str, problem: str) -> None:
    fragment = FRAGMENT.read_text(encoding="utf-8")
    assert old in fragment
    problems = rules.check_gateway_event(fragment.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


def test_an_unguarded_fragment_is_reported() -> None:
    fragment = FRAGMENT.read_text(encoding="utf-8")
    start, end = fragment.index("<choose>"), fragment.index("</choose>") + len("</choose>")
    inner = fragment[start:end]
    log = inner[inner.index("<log-to-eventhub") : inner.index("</log-to-eventhub>") + 18]
    problems = rules.check_gateway_event(fragment[:start] + log + fragment[end:])
    assert problems == [
        "log-to-eventhub is not inside a <when> guard: on-error could log a second event"
    ]


def test_main_bicep_says_which_credentials_exist() -> None:
    header = MAIN.read_text(encoding="utf-8").split("targetScope")[0]
    assert "Keyless throughout" not in header
    for phrase in ("subscription keys", "host key", "Entra mode", "managed identity"):
        assert phrase in header, phrase
