"""infra/analytics/tables.json, the landing's flattening and the records it flattens agree.

tables.json is the one declaration of the two Log Analytics tables (the Bicep loads it for the tables
and the DCR streams). These tests prove that the Python flattening produces exactly its columns, in
its order; that every field of the usage record (docs/usage-record.schema.json) and of APIM's
gateway event (infra/modules/apim-gateway-event-fragment.xml) has a column of a matching type, but
the ones dropped on purpose; that no column uses a reserved name; and that real records flatten to
rows whose values have their columns' types, without the captured text.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from aoai_proxy.landing.columns import (
    GATEWAY_COLUMNS,
    GATEWAY_DROPPED,
    USAGE_COLUMNS,
    USAGE_DROPPED,
    Columns,
    flatten,
)

ROOT = Path(__file__).resolve().parents[2]
TABLES = json.loads((ROOT / "infra" / "analytics" / "tables.json").read_text())
RECORD_SCHEMA = json.loads((ROOT / "docs" / "usage-record.schema.json").read_text())
FRAGMENT = (ROOT / "infra" / "modules" / "apim-gateway-event-fragment.xml").read_text()
DOC_EXAMPLES = [
    json.loads(block)
    for block in re.findall(
        r"```json\n(.*?)```", (ROOT / "docs" / "usage-record.md").read_text(), flags=re.DOTALL
    )
]
USAGE_EXAMPLES = [e for e in DOC_EXAMPLES if e.get("type") == "usage"]

# Table column types (learn.microsoft.com/azure/azure-monitor/logs/create-custom-table) and the DCR
# stream column types they are declared as (learn.microsoft.com/azure/azure-monitor/essentials/
# data-collection-rule-structure: streamDeclarations take string, int, long, real, boolean,
# datetime, dynamic; there is no guid, so a guid column is declared string).
TABLE_TYPES = {"string", "int", "long", "real", "boolean", "dateTime", "dynamic", "guid"}
DCR_TYPES = {"string", "int", "long", "real", "boolean", "datetime", "dynamic"}
# Standard columns every table has, and names the service refuses for custom columns
# (learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns, .../logs/create-custom-table).
RESERVED = {
    name.lower()
    for name in (
        "id",
        "Type",
        "TenantId",
        "Title",
        "UniqueId",
        "_ResourceId",
        "_SubscriptionId",
        "_ItemId",
        "_TimeReceived",
        "_IsBillable",
        "_BilledSize",
    )
}
# A column name starts with a letter and has at most 45 letters, digits and underscores.
COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,44}$")
# JSON Schema type of a record field -> the table types that can hold it.
FITS = {
    "string": {"string", "dateTime", "guid"},
    "integer": {"int", "long"},
    "number": {"real"},
    "boolean": {"boolean"},
    "array": {"dynamic"},
    "object": {"dynamic"},
}
INT32_MAX = 2**31 - 1
# The Python values a row may carry per table type (None: the record has no value).
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "guid": (str,),
    "dateTime": (str,),
    "int": (int,),
    "long": (int,),
    "real": (int, float),
    "boolean": (bool,),
    "dynamic": (list, dict),
}
ISO_8601_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$")


def declared(table: str) -> list[dict[str, str]]:
    columns: list[dict[str, str]] = TABLES[table]["columns"]
    return columns


def declared_types(table: str) -> dict[str, str]:
    return {column["name"]: column["type"] for column in declared(table)}


# -- the file itself -------------------------------------------------------------------------------


def test_the_file_declares_two_tables_and_the_type_mapping() -> None:
    assert set(TABLES) == {"dcrTypes", "usage", "gateway"}
    assert set(TABLES["dcrTypes"]) == TABLE_TYPES
    assert set(TABLES["dcrTypes"].values()) <= DCR_TYPES
    assert TABLES["dcrTypes"]["dateTime"] == "datetime"
    assert TABLES["dcrTypes"]["guid"] == "string"


@pytest.mark.parametrize("table", ["usage", "gateway"])
def test_each_table_is_custom_with_its_stream_and_typed_documented_columns(table: str) -> None:
    spec = TABLES[table]
    assert set(spec) == {"table", "stream", "description", "columns"}
    # Custom tables end in _CL; a DCR's input stream is Custom-<name> (outputStream Custom-<name>_CL).
    assert spec["table"].endswith("_CL")
    assert spec["stream"] == "Custom-" + spec["table"].removesuffix("_CL")
    assert spec["description"].strip()
    columns = declared(table)
    assert columns[0] == {**columns[0], "name": "TimeGenerated", "type": "dateTime"}
    for column in columns:
        assert set(column) == {"name", "type", "description"}, column
        assert column["type"] in TABLE_TYPES, column
        assert column["description"].strip(), column
        assert COLUMN_NAME.match(column["name"]), column
        assert column["name"].lower() not in RESERVED, column
    names = [column["name"].lower() for column in columns]
    assert len(names) == len(set(names)), "column names must be unique (case-insensitively)"


def test_the_two_tables_name_their_shared_fields_alike() -> None:
    """The join and the per-subscription views read the same column names in both tables."""
    usage, gateway = declared_types("usage"), declared_types("gateway")
    for name in ("ApimRequestId", "ApimSubscriptionId", "ApimProductId", "ClientIp", "Status"):
        assert usage[name] == gateway[name], name


# -- the flattening against the file ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "columns"), [("usage", USAGE_COLUMNS), ("gateway", GATEWAY_COLUMNS)]
)
def test_the_flattening_builds_exactly_the_declared_columns_in_order(
    table: str, columns: Columns
) -> None:
    assert [name for name, _ in columns] == [column["name"] for column in declared(table)]


# -- the usage record against the flattening ------------------------------------------------------


def record_fields(
    schema: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Leaf paths of the record schema: objects are walked into, arrays and scalars are leaves."""
    for name, node in schema["properties"].items():
        path = (*prefix, name)
        if node.get("type") == "object" and "properties" in node:
            yield from record_fields(node, path)
        else:
            yield path


def schema_node(path: tuple[str, ...]) -> dict[str, Any]:
    node: dict[str, Any] = RECORD_SCHEMA
    for key in path:
        node = node["properties"][key]
    return node


def test_every_usage_record_field_has_a_column_but_the_dropped_ones() -> None:
    fields = {path for path in record_fields(RECORD_SCHEMA) if path[0] not in USAGE_DROPPED}
    sources = [source for _, source in USAGE_COLUMNS]
    assert set(sources) == fields
    # Only the record's time is there twice: TimeGenerated, which Azure may rewrite, and its own column.
    twice = {source for source in sources if sources.count(source) > 1}
    assert twice == {("timestamp",)}
    assert sources.count(("timestamp",)) == 2
    assert set(RECORD_SCHEMA["properties"]) >= USAGE_DROPPED


def test_each_usage_column_can_hold_its_fields_values() -> None:
    types = declared_types("usage")
    for name, source in USAGE_COLUMNS:
        node = schema_node(source)
        json_types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        for json_type in set(json_types) - {"null"}:
            assert types[name] in FITS[json_type], (name, json_type)
        if types[name] == "int":
            assert node.get("maximum", INT32_MAX + 1) <= INT32_MAX, f"{name}: use long"
        if source == ("timestamp",):
            assert types[name] == "dateTime", name


# -- the gateway event against the flattening ------------------------------------------------------


def gateway_fields() -> dict[str, str]:
    """Field -> the table type its C# expression in the policy fragment produces."""
    fields = dict(re.findall(r'new JProperty\("(\w+)",\s*(.+?)\),?\n', FRAGMENT))
    assert len(fields) >= 15, "the fragment's JProperty list could not be read"

    def kind(expression: str) -> str:
        if expression.startswith("(long)"):
            return "long"
        if expression.isdigit() or "StatusCode" in expression:
            return "int"
        if expression.startswith("DateTime."):
            return "dateTime"
        return "string"

    return {name: kind(expression.strip()) for name, expression in fields.items()}


def test_every_gateway_event_field_has_a_column_of_its_type_but_the_dropped_ones() -> None:
    fields = gateway_fields()
    sources = [source for _, source in GATEWAY_COLUMNS]
    assert {source[0] for source in sources} == set(fields) - GATEWAY_DROPPED
    assert set(fields) >= GATEWAY_DROPPED
    types = declared_types("gateway")
    for name, (field,) in GATEWAY_COLUMNS:
        assert types[name] == fields[field], (name, field)


# -- real records flattened ------------------------------------------------------------------------


def assert_row_fits(row: dict[str, Any], table: str) -> None:
    types = declared_types(table)
    assert list(row) == list(types)
    for name, value in row.items():
        if value is None:
            continue
        kind = types[name]
        assert isinstance(value, PYTHON_TYPES[kind]), (name, value)
        if kind in ("int", "long", "real"):
            assert not isinstance(value, bool), (name, value)
        if kind == "dateTime":
            assert ISO_8601_UTC.match(value), (name, value)


def test_documented_usage_records_flatten_into_typed_rows() -> None:
    assert len(USAGE_EXAMPLES) >= 3
    for record in USAGE_EXAMPLES:
        row = flatten(USAGE_COLUMNS, record)
        assert_row_fits(row, "usage")
        assert row["RecordId"] == record["record_id"]
        assert row["TimeGenerated"] == row["RecordTime"] == record["timestamp"]
        assert row["InputTokens"] == record["usage"]["prompt_tokens"]
        assert row["CachedInputTokens"] == record["usage"]["cached_tokens"]
        assert row["OutputTokens"] == record["usage"]["completion_tokens"]
        assert row["TtftMs"] == record["timings"]["first_token_ms"]
        assert row["ApimSubscriptionId"] == record["caller"].get("subscription_id")
        assert row["FinishReasons"] == record["response"]["finish_reasons"]


def test_captured_text_never_reaches_a_row() -> None:
    record = copy.deepcopy(USAGE_EXAMPLES[0])
    record["capture"] = {
        part: {"text": text, "bytes": len(text), "truncated": False, "sha256": sha256(text)}
        for part, text in (("prompt", "my secret prompt"), ("completion", "the secret answer"))
    }
    assert list(jsonschema.Draft202012Validator(RECORD_SCHEMA).iter_errors(record)) == []
    wire = json.dumps(flatten(USAGE_COLUMNS, record))
    assert "secret" not in wire
    assert sha256("my secret prompt") not in wire


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_record_without_caller_context_flattens_with_empty_caller_columns() -> None:
    record = copy.deepcopy(USAGE_EXAMPLES[0])
    record["caller"] = {}
    row = flatten(USAGE_COLUMNS, record)
    caller_columns = [name for name, source in USAGE_COLUMNS if source[0] == "caller"]
    assert caller_columns
    assert all(row[name] is None for name in caller_columns)
    assert_row_fits(row, "usage")


def test_a_gateway_event_as_apim_sends_it_flattens_into_a_typed_row() -> None:
    # The shape JObject.ToString(Formatting.None) gives the fragment's event ("o" timestamps have
    # seven fractional digits).
    event = {
        "type": "gateway",
        "schema_version": 1,
        "timestamp": "2026-12-06T09:36:23.1234567Z",
        "request_id": "6f1c2a9e-0d4b-4c8e-9b1a-7c3e5d2f8001",
        "subscription_id": "a1b2c3d4e5f6",
        "subscription_name": "contoso-support",
        "product_id": "openai-standard",
        "user_id": "1",
        "client_ip": "203.0.113.24",
        "api": "azure-openai",
        "operation": "chat-completions",
        "method": "POST",
        "url_path": "/openai/deployments/gpt-4o-mini/chat/completions",
        "status": 200,
        "usage_record_id": "0b6f6f0e-4c1b-4b8e-9c1a-1f3e5d2f8002",
        "error_reason": "",
        "error_source": "",
        "region": "Sweden Central",
        "service": "apim-contoso",
        "gateway_ttfb_ms": 231,
    }
    assert set(event) == set(gateway_fields())
    row = flatten(GATEWAY_COLUMNS, event)
    assert_row_fits(row, "gateway")
    assert row["ApimRequestId"] == event["request_id"]
    assert row["UsageRecordId"] == event["usage_record_id"]
    assert row["TimeGenerated"] == row["EventTime"] == event["timestamp"]
    assert row["GatewayTtfbMs"] == 231
