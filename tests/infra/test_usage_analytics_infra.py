"""The usage analytics infra (tables, DCR, workbook, alerts) follows the documented rules.

Read as text (no Bicep compiler offline): the rules the issue names, each tied to a documented
pitfall (reserved column names, the DCR deploying before its table, the action group's location and
short name, the workbook's shape) so a change that breaks one fails here.
"""

from __future__ import annotations

import json
import re

import pytest
from tests.infra import bicep_text as bt

import kql_check

ROOT = bt.INFRA.parent
SCHEMA = json.loads((bt.INFRA / "analytics" / "tables.json").read_text(encoding="utf-8"))
ANALYTICS = bt.read(bt.INFRA / "modules" / "analytics.bicep")
WORKBOOK = bt.read(bt.INFRA / "modules" / "workbook.bicep")
ALERTS = bt.read(bt.INFRA / "modules" / "alerts.bicep")
MAIN = bt.read(bt.INFRA / "main.bicep")
PARAMETERS = json.loads((bt.INFRA / "main.parameters.json").read_text(encoding="utf-8"))[
    "parameters"
]

# Names Log Analytics reserves or adds itself; a custom column with one of them is rejected.
# https://learn.microsoft.com/azure/azure-monitor/logs/create-custom-table
# https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns
RESERVED = {"type", "id", "tenantid", "_resourceid", "_subscriptionid", "_itemid"}
RESERVED_PREFIX = "_"
# Column types of a DCR stream declaration (no guid: it is string there).
# https://learn.microsoft.com/azure/azure-monitor/essentials/data-collection-rule-structure
DCR_TYPES = {"string", "int", "long", "real", "boolean", "datetime", "dynamic"}


@pytest.mark.parametrize("key", ["usage", "gateway"])
def test_each_table_follows_the_custom_table_rules(key: str) -> None:
    entry = SCHEMA[key]
    assert entry["table"].endswith("_CL")
    assert entry["stream"] == "Custom-" + entry["table"].removesuffix("_CL")
    columns = entry["columns"]
    names = [c["name"] for c in columns]
    assert len(names) == len(set(names))
    # Every custom table needs TimeGenerated; the record's own time has a column of its own.
    assert any(c["name"] == "TimeGenerated" and c["type"] == "dateTime" for c in columns)
    assert sum(c["type"] == "dateTime" for c in columns) >= 2
    for column in columns:
        # analytics.bicep hands these objects to the table API as they are.
        assert set(column) == {"name", "type", "description"}, column
        assert column["name"].lower() not in RESERVED
        assert not column["name"].startswith(RESERVED_PREFIX)
        assert column["type"] in SCHEMA["dcrTypes"]
        assert column["description"]


def test_dcr_types_are_types_a_dcr_accepts() -> None:
    assert set(SCHEMA["dcrTypes"].values()) <= DCR_TYPES
    assert SCHEMA["dcrTypes"]["dateTime"] == "datetime"
    assert SCHEMA["dcrTypes"]["guid"] == "string"


def test_tables_use_the_analytics_plan_and_the_retention_parameters() -> None:
    m = re.search(
        r"resource tables 'Microsoft\.OperationalInsights/workspaces/tables@[^']+' = "
        r"\[for s in streams: \{(?P<body>.*?)\n\}\]",
        ANALYTICS,
        re.DOTALL,
    )
    assert m
    body = m.group("body")
    assert "plan: 'Analytics'" in body
    assert "retentionInDays: interactiveRetentionInDays" in body
    assert "totalRetentionInDays: max(totalRetentionInDays, interactiveRetentionInDays)" in body
    assert "columns: s.columns" in body
    assert "loadJsonContent('../analytics/tables.json')" in ANALYTICS


def test_dcr_is_direct_passes_rows_through_and_waits_for_its_tables() -> None:
    (dcr,) = [
        r for r in bt.resources(ANALYTICS) if r.type == "Microsoft.Insights/dataCollectionRules"
    ]
    assert bt.get_path(dcr.body, "kind") == "'Direct'"
    assert "dataCollectionEndpointId" not in dcr.body
    assert "transformKql: 'source'" in dcr.body
    # Naming the table resource makes Bicep deploy the DCR after it (a DCR whose output table does
    # not exist yet fails to deploy).
    assert "outputStream: 'Custom-${tables[i].name}'" in dcr.body
    assert "'${schema.usage.stream}'" in dcr.body
    assert "'${schema.gateway.stream}'" in dcr.body
    assert "schema.dcrTypes[c.type]" in ANALYTICS


def test_workbook_is_a_shared_workbook_on_the_workspace() -> None:
    (workbook,) = [r for r in bt.resources(WORKBOOK) if r.type == "Microsoft.Insights/workbooks"]
    assert (bt.get_path(workbook.body, "name") or "").startswith("guid(")
    assert bt.get_path(workbook.body, "kind") == "'shared'"
    assert bt.get_path(workbook.body, "properties.category") == "'workbook'"
    assert bt.get_path(workbook.body, "properties.sourceId") == "workspaceId"
    assert bt.get_path(workbook.body, "properties.serializedData") == "serializedData"
    content = json.loads((bt.INFRA / "analytics" / "workbook.json").read_text(encoding="utf-8"))
    assert content["version"] == "Notebook/1.0"
    # Opened from its own link, the workbook queries the workspace Bicep puts here.
    assert content["fallbackResourceIds"] == ["__WORKSPACE_ID__"]
    assert "'__WORKSPACE_ID__', workspaceId)" in WORKBOOK


def test_action_group_is_global_with_a_short_name_email_can_show() -> None:
    (group,) = [r for r in bt.resources(ALERTS) if r.type == "Microsoft.Insights/actionGroups"]
    assert bt.get_path(group.body, "location") == "'global'"
    short = bt.unquote(bt.get_path(group.body, "properties.groupShortName"))
    assert short
    assert len(short) <= 12
    assert "if (!empty(alertEmail))" in ALERTS


def test_alert_rules_query_the_workspace_and_cover_the_four_signals() -> None:
    m = re.search(
        r"resource rule 'Microsoft\.Insights/scheduledQueryRules@[^']+' = \[for r in rules: \{",
        ALERTS,
    )
    assert m
    body = ALERTS[m.end() :]
    assert "kind: 'LogAlert'" in body
    assert "skipQueryValidation: true" in body  # validated offline by tools/kql_check instead
    assert "workspaceId" in body.split("evaluationFrequency")[0]
    names = re.findall(r"^\s*name: '([a-z-]+)'$", ALERTS, re.MULTILINE)
    assert {"throttled-rate", "error-rate", "daily-tokens", "missing-usage-records"} <= set(names)


def test_function_app_gets_the_landing_settings_from_the_dcr() -> None:
    app = bt.read(bt.INFRA / "modules" / "functionapp.bicep")
    for setting, value in {
        "LOGS_INGESTION_ENDPOINT": "logsIngestionEndpoint",
        "LOGS_DCR_IMMUTABLE_ID": "dataCollectionRuleImmutableId",
        "LOGS_USAGE_STREAM": "usageStreamName",
        "LOGS_GATEWAY_STREAM": "gatewayStreamName",
        "USAGE_LANDING_CONSUMER_GROUP": "landingConsumerGroupName",
        "EventHubConnection__fullyQualifiedNamespace": "eventHubFullyQualifiedNamespace",
        "EventHubConnection__credential": "'managedidentity'",
        "EventHubConnection__clientId": "identityClientId",
    }.items():
        assert f"{setting}: {value}" in app
    assert (
        "output logsIngestionEndpoint string = dcr.properties.endpoints.logsIngestion" in ANALYTICS
    )
    assert "output dataCollectionRuleImmutableId string = dcr.properties.immutableId" in ANALYTICS


def test_main_outputs_what_the_smoke_test_and_users_read() -> None:
    outputs = {o.name: o.value for o in bt.outputs(MAIN)}
    assert outputs["LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID"] == (
        "monitoring.outputs.logAnalyticsWorkspaceCustomerId"
    )
    assert "/workbook'" in outputs["USAGE_WORKBOOK_URL"]
    monitoring = bt.read(bt.INFRA / "modules" / "monitoring.bicep")
    assert "= workspace.properties.customerId" in monitoring


def test_every_new_parameter_is_mapped_from_the_azd_environment() -> None:
    for param in (
        "eventHubLandingConsumerGroupName",
        "usageRetentionDays",
        "usageTotalRetentionDays",
        "usageModelPrices",
        "usageAlertEmail",
        "usageAlertThrottledPercent",
        "usageAlertErrorPercent",
        "usageAlertMinCalls",
        "usageAlertDailyTokens",
        "usageAlertMissingRecords",
    ):
        assert re.search(rf"^param {param} \w+", MAIN, re.MULTILINE), param
        value = PARAMETERS[param]["value"]
        m = re.fullmatch(r"\$\{([A-Z_]+)=(.*)\}", value)
        assert m, f"{param}: {value}"
        default = bt.param_default(MAIN, param)
        assert default is not None
        assert m.group(2) == default.strip("'"), f"{param}: file default differs from Bicep"


def test_the_doc_names_every_column() -> None:
    doc = (ROOT / "docs" / "usage-analytics.md").read_text(encoding="utf-8")
    for key in ("usage", "gateway"):
        assert f"`{SCHEMA[key]['table']}`" in doc
        for column in SCHEMA[key]["columns"]:
            assert f"`{column['name']}`" in doc, column["name"]


def test_the_workbook_stays_valid_json_once_bicep_fills_it() -> None:
    text = (bt.INFRA / "analytics" / "workbook.json").read_text(encoding="utf-8")
    filled = text.replace(kql_check.PRICE_ROWS_TOKEN, kql_check.default_price_rows()).replace(
        "__WORKSPACE_ID__",
        "/subscriptions/0000/resourceGroups/rg-x/providers/Microsoft.OperationalInsights/workspaces/log-x",
    )
    workbook = json.loads(filled)
    assert "__" not in json.dumps(workbook["fallbackResourceIds"])
    assert kql_check.PRICE_ROWS_TOKEN not in filled


def test_readme_using_it_ends_with_where_to_open_the_dashboard() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it", 1)[1].split("\n## ", 1)[0]
    last_paragraph = section.strip().split("\n\n")[-1]
    assert "USAGE_WORKBOOK_URL" in last_paragraph
    assert "Workbooks" in last_paragraph
