"""Every KQL query the template ships binds against the tables it declares.

The workbook's queries (its parameters' too), the alert rules' queries and the KQL blocks of
docs/usage-analytics.md go through Microsoft's Kusto language service (tools/kql_check), with
the columns of infra/analytics/tables.json. The mutation tests prove the check can fail: a
misspelled column, an unknown function, a syntax error and an undeclared parameter are each
reported.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from tests.infra import bicep_text as bt

import kql_check

WORKBOOK: dict[str, Any] = json.loads(kql_check.WORKBOOK_JSON.read_text(encoding="utf-8"))
TABLES = kql_check.load_tables()


def _run(queries: list[kql_check.Query]) -> list[kql_check.Analysis]:
    try:
        return kql_check.run(TABLES, queries)
    except kql_check.AnalyzerUnavailable as exc:  # the check must run in CI: never skip it
        pytest.fail(str(exc))


def _analyze(queries: list[kql_check.Query]) -> list[kql_check.Problem]:
    return [p for a in _run(queries) for p in a.problems]


@pytest.fixture(scope="module")
def shipped() -> dict[str, kql_check.Analysis]:
    """Every shipped query (workbook, alerts, doc) bound once, by source."""
    queries, problems = kql_check.all_queries()
    assert problems == []
    return {a.query.source: a for a in _run(queries)}


def _query_item(workbook: dict[str, Any], name: str) -> dict[str, Any]:
    items = [i for i in workbook["items"] if i.get("name") == name]
    assert len(items) == 1, f"workbook has no single item named {name}"
    return items[0]["content"]


def test_every_shipped_query_binds_against_the_declared_tables(
    shipped: dict[str, kql_check.Analysis],
) -> None:
    sources = {s.split(" (variant")[0] for s in shipped}
    # Something of each kind was found: an empty list would pass vacuously.
    assert sum(s.startswith("workbook item") for s in sources) >= 12
    assert sum(s.startswith("workbook parameter") for s in sources) == 2
    assert sum(s.startswith("alert query") for s in sources) == 8
    assert sum(s.startswith("usage-analytics.md") for s in sources) >= 3
    assert sum(s.startswith("delivery.md") for s in sources) == 3
    assert [str(p) for a in shipped.values() for p in a.problems] == []


def test_parameters_are_replaced_by_typed_values_in_every_shape() -> None:
    queries, problems = kql_check.workbook_queries(WORKBOOK)
    assert problems == []
    for query in queries:
        assert not kql_check.PARAMETER_REF.search(query.text), query.source
        assert kql_check.PRICE_ROWS_TOKEN not in query.text
    tiles = [q.text for q in queries if q.source.startswith("workbook item 'tiles'")]
    # A relative and an absolute time range; one selection and "All" for the drop-downs.
    assert any("> ago(7d)" in t for t in tiles)
    assert any("between (datetime(" in t for t in tiles)
    assert any("in ('team-a', 'team-b')" in t for t in tiles)
    assert any("in ('*')" in t for t in tiles)


def test_a_misspelled_column_fails_the_check() -> None:
    broken = copy.deepcopy(WORKBOOK)
    content = _query_item(broken, "latency-per-deployment")
    assert "TtftMs" in content["query"]
    content["query"] = content["query"].replace("TtftMs", "TtftMS")
    queries, _ = kql_check.workbook_queries(broken)
    problems = _analyze(queries)
    assert problems
    assert all("latency-per-deployment" in p.source for p in problems)
    assert any("KS142" in p.message and "'TtftMS'" in p.message for p in problems)


def test_an_unknown_function_and_a_syntax_error_fail_the_check() -> None:
    text = (kql_check.ALERTS_DIR / "throttled-rate.kql").read_text(encoding="utf-8")
    unknown = text.replace("countif(", "count_if(", 1)
    dangling = text.rstrip() + "\n| where"
    queries = []
    for label, variant in (("unknown", unknown), ("dangling", dangling)):
        expanded, problems = kql_check.expand(label, variant, {"MinCalls": {"": ("20",)}})
        assert problems == []
        queries += expanded
    problems = _analyze(queries)
    assert any(p.source == "unknown" and "count_if" in p.message for p in problems)
    assert any(p.source == "dangling" for p in problems)


def test_a_misspelled_application_insights_column_fails_the_check() -> None:
    text = (kql_check.ALERTS_DIR / "delivery-at-risk.kql").read_text(encoding="utf-8")
    assert "AppRoleName" in text
    problems = _analyze(
        [
            kql_check.Query("role", text.replace("AppRoleName", "AppRolename")),
            kql_check.Query("message", "AppTraces | where Messages startswith 'usage'"),
            kql_check.Query("column of another table", "AppTraces | where Success == false"),
        ]
    )
    assert {p.source for p in problems} == {"role", "message", "column of another table"}
    assert all("KS142" in p.message for p in problems)


def test_application_insights_columns_have_their_documented_types() -> None:
    traces = {c["name"]: c["type"] for c in TABLES["AppTraces"]}
    assert traces["Message"] == "string"
    assert traces["SeverityLevel"] == "int"
    assert traces["Properties"] == "dynamic"
    assert traces["TimeGenerated"] == "dateTime"
    assert traces["_ResourceId"] == "string"  # a standard column, added as to every table


def test_an_unknown_table_fails_the_check() -> None:
    problems = _analyze([kql_check.Query("typo", "AoaiUsages_CL | take 1")])
    assert [p.source for p in problems] == ["typo"]


def test_a_parameter_the_workbook_does_not_declare_is_reported() -> None:
    broken = copy.deepcopy(WORKBOOK)
    content = _query_item(broken, "outcome-status")
    content["query"] = content["query"].replace("{TimeRange}", "{Timerange}")
    _, problems = kql_check.workbook_queries(broken)
    assert [p.message for p in problems] == ["{Timerange} is not a declared parameter or format"]


def test_doc_blocks_are_read_as_written() -> None:
    blocks = kql_check.doc_queries()
    assert blocks
    for block in blocks:
        assert not kql_check.PARAMETER_REF.search(block.text), "doc KQL must run as pasted"
        assert kql_check.PRICE_ROWS_TOKEN not in block.text


# ---------------------------------------------------------------- the workbook's content

# The views the issue asks for, by item name.
VIEWS = {
    "tiles": "tiles",
    "tokens-per-subscription": "timechart",
    "month-to-date": "table",
    "latency-per-deployment": "table",
    "outcome-status": "table",
    "throttled-rate": "timechart",
    "top-callers": "table",
    "calls-without-usage": "table",
    "reconciliation-gateway-without-usage": "table",
    "reconciliation-usage-without-gateway": "table",
}


@pytest.mark.parametrize(("name", "visualization"), sorted(VIEWS.items()))
def test_the_workbook_has_each_view_on_the_workspace(name: str, visualization: str) -> None:
    content = _query_item(WORKBOOK, name)
    assert content["version"] == "KqlItem/1.0"
    assert content["queryType"] == 0
    assert content["resourceType"] == "microsoft.operationalinsights/workspaces"
    assert content["visualization"] == visualization
    if name == "month-to-date":
        assert "startofmonth(now())" in content["query"]
        assert content["timeContext"]["durationMs"] >= 31 * 24 * 3600 * 1000
    else:
        assert content["timeContextFromParameter"] == "TimeRange"


def test_tiles_show_the_six_headline_numbers() -> None:
    query = _query_item(WORKBOOK, "tiles")["query"]
    metrics = re.findall(r"bag_pack\('Metric', '([^']+)'", query)
    assert metrics == [
        "Calls",
        "Tokens",
        "Estimated cost (USD)",
        "Errors % (not 429)",
        "429 %",
        "p95 TTFT (ms)",
    ]


def test_usage_queries_count_each_record_once() -> None:
    for item in WORKBOOK["items"]:
        query = item["content"].get("query", "")
        if "AoaiUsage_CL" in query and item["name"] != "reconciliation-gateway-without-usage":
            assert "by RecordId" in query, item["name"]


def test_reconciliation_joins_on_the_request_id_and_waits_30_minutes() -> None:
    for name in ("reconciliation-gateway-without-usage", "reconciliation-usage-without-gateway"):
        query = _query_item(WORKBOOK, name)["query"]
        assert "join kind=leftanti" in query
        assert "RequestKey = tolower(ApimRequestId)" in query
        assert "ago(30m)" in query


def test_costs_come_from_the_prices_datatable() -> None:
    cost_items = [i for i in WORKBOOK["items"] if "Cost" in i["content"].get("query", "")]
    assert {i["name"] for i in cost_items} == {"tiles", "month-to-date", "top-callers"}
    for item in cost_items:
        assert f"[{kql_check.PRICE_ROWS_TOKEN}]" in item["content"]["query"]
    prices = kql_check.parse_prices(kql_check.MODEL_PRICES.read_text(encoding="utf-8"))
    default_model = bt.unquote(
        bt.param_default(bt.read(bt.INFRA / "main.bicep"), "openAiModelName")
    )
    assert default_model in {p[0] for p in prices}
    assert kql_check.price_rows("gpt-5-mini=0.25/0.025/2.00, gpt-4.1 = 2/0.5/8") == (
        "'gpt-5-mini', real(0.25), real(0.025), real(2.00), 'gpt-4.1', real(2), real(0.5), real(8)"
    )
    with pytest.raises(ValueError, match="model=input/cachedInput/output"):
        kql_check.parse_prices("gpt-5-mini=0.25/2")


def test_workbook_bicep_fills_the_price_rows_the_checker_fills() -> None:
    text = bt.read(bt.INFRA / "modules" / "workbook.bicep")
    assert f"'{kql_check.PRICE_ROWS_TOKEN}'" in text
    # Same row shape as kql_check.price_rows, from the same default file.
    assert (
        "'\\'${model}\\', real(${json(priceValues[i][0])}), real(${json(priceValues[i][1])}), "
        "real(${json(priceValues[i][2])})'"
    ) in text
    assert "loadTextContent('../analytics/model-prices.txt')" in text
    assert "loadTextContent('../analytics/workbook.json')" in text


def test_alerts_bicep_loads_every_alert_query_and_fills_its_placeholders() -> None:
    text = bt.read(bt.INFRA / "modules" / "alerts.bicep")
    for path in sorted(kql_check.ALERTS_DIR.glob("*.kql")):
        assert f"loadTextContent('../analytics/alerts/{path.name}')" in text
        for name in {m.group(1) for m in kql_check.PARAMETER_REF.finditer(path.read_text())}:
            assert name in kql_check.ALERT_PLACEHOLDERS
            assert (
                f"replace(loadTextContent('../analytics/alerts/{path.name}'), '{{{name}}}'" in text
            )


# ---------------------------------------------------------------- what the queries return

NUMERIC = {"int", "long", "real", "decimal"}


def _alert_rules() -> list[dict[str, Any]]:
    """Each rule of alerts.bicep: its query file, measure column and dimension columns."""
    text = bt.read(bt.INFRA / "modules" / "alerts.bicep")
    files = dict(
        re.findall(
            r"^\s*(\w+): replace\(loadTextContent\('\.\./analytics/alerts/([\w-]+\.kql)'\)",
            text,
            re.MULTILINE,
        )
    )
    # The dimension objects, by variable name: `var byX = {\n  name: 'Column'`.
    columns = dict(re.findall(r"^var (by\w+) = \{\n  name: '(\w+)'", text, re.MULTILINE))
    rules_body = text.split("var rules = [", 1)[1].split("\n]\n", 1)[0]
    rules = []
    for block in re.split(r"\n  \{\n", rules_body)[1:]:
        # One `key: value` a line (descriptions hold escaped quotes, so no generic parser).
        entries = dict(re.findall(r"^    (name|query|measure): (.+)$", block, re.MULTILINE))
        dimensions = re.search(r"^    dimensions: \[(.*?)\]$", block, re.MULTILINE | re.DOTALL)
        assert dimensions, block
        query = entries["query"]
        m = re.fullmatch(r"loadTextContent\('\.\./analytics/alerts/([\w-]+\.kql)'\)", query)
        file = m.group(1) if m else files[query.removeprefix("withMinCalls.")]
        rules.append(
            {
                "name": bt.unquote(entries["name"]) or "",
                "file": file,
                "measure": bt.unquote(entries["measure"]) or "",
                "dimensions": [columns[v] for v in re.findall(r"\w+", dimensions.group(1))],
            }
        )
    return rules


def test_each_alert_query_returns_the_columns_its_rule_reads(
    shipped: dict[str, kql_check.Analysis],
) -> None:
    # Rules skip deploy-time query validation, so a measure or dimension the query does not
    # return would only fail once the rule runs in Azure: checked here instead.
    rules = _alert_rules()
    assert {r["name"] for r in rules} == {
        "throttled-rate",
        "error-rate",
        "daily-tokens",
        "missing-usage-records",
        "delivery-lost",
        "delivery-at-risk",
        "landing-failed",
        "landing-unknown-events",
    }
    for rule in rules:
        analysis = shipped[f"alert query {rule['file']}"]
        assert analysis.problems == []
        assert analysis.columns.get(rule["measure"]) in NUMERIC, (rule, analysis.columns)
        for dimension in rule["dimensions"]:
            assert analysis.columns.get(dimension) == "string", (rule, analysis.columns)
        # Every text column is a dimension: one left out would merge what should be separate alerts.
        texts = {name for name, kind in analysis.columns.items() if kind == "string"}
        assert texts == set(rule["dimensions"]), (rule, analysis.columns)


def test_workbook_visualizations_get_the_columns_they_are_set_up_for(
    shipped: dict[str, kql_check.Analysis],
) -> None:
    analyses = shipped
    for item in WORKBOOK["items"]:
        content = item["content"]
        if item["type"] != 3:
            continue
        columns = analyses[f"workbook item '{item['name']}' (variant 1)"].columns
        assert columns, item["name"]
        if content["visualization"] == "timechart":
            assert "datetime" in columns.values(), item["name"]
            assert NUMERIC & set(columns.values()), item["name"]
        for part in content.get("tileSettings", {}).values():
            if isinstance(part, dict) and "columnMatch" in part:
                assert part["columnMatch"] in columns, (item["name"], part["columnMatch"])
    tiles = analyses["workbook item 'tiles' (variant 1)"].columns
    assert tiles == {"Metric": "string", "Value": "real", "Order": "int"}


# ---------------------------------------------------------------- the pipeline's own alerts


def test_the_pipeline_alerts_read_lines_and_fields_the_code_writes() -> None:
    """The AppTraces queries match log lines by a fixed prefix and read fields of the JSON after it:
    a renamed event or counter would silence an alert without failing any query, so each prefix
    must be one the code logs and each counter one of the dataclasses' fields."""
    from dataclasses import fields

    from aoai_proxy.landing.lander import LandingCounters
    from aoai_proxy.sinks.counters import DeliveryCounters

    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (bt.INFRA.parent / "src" / "aoai_proxy").rglob("*.py")
    )
    counters = {
        "delta": {f.name for f in fields(DeliveryCounters)},
        "batch": {f.name for f in fields(LandingCounters)},
    }
    files = [p for p in sorted(kql_check.ALERTS_DIR.glob("*.kql")) if "AppTraces" in p.read_text()]
    assert len(files) == 4
    for path in files:
        text = path.read_text(encoding="utf-8")
        prefixes = re.findall(r'startswith "([^"]+) "', text)
        assert prefixes, path.name
        for prefix in prefixes:
            assert f'"{prefix}' in source, (path.name, prefix)
        for group, name in re.findall(r"\b[cb]\.(delta|batch)\.(\w+)", text):
            assert name in counters[group], (path.name, group, name)
