"""Usage records and APIM gateway events flattened into the columns of their Log Analytics tables.

The tables' columns (names, types, descriptions) are declared once, in infra/analytics/tables.json,
which the Bicep loads for the tables and the DCR streams. azd deploys only src/, so the Function
cannot read that file: the flattening below names each column's source field, and
tests/unit/test_landing_columns.py proves it names exactly the columns of tables.json, in the same
order, and covers every field of docs/usage-record.schema.json and of the gateway event
(infra/modules/apim-gateway-event-fragment.xml) but the ones dropped on purpose.

The DCR's transform is `source`, so what is built here is what lands: values keep their JSON types
and timestamps stay the ISO 8601 strings the producers wrote (Log Analytics parses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Source = tuple[str, ...]  # a path of keys into the event
Columns = tuple[tuple[str, Source], ...]

# TimeGenerated is the time the record was made; Azure Monitor replaces a TimeGenerated older than
# two days with the ingestion time (learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns),
# which a replayed record can be, so the original time also has a column of its own.
USAGE_COLUMNS: Columns = (
    ("TimeGenerated", ("timestamp",)),
    ("RecordTime", ("timestamp",)),
    ("RecordId", ("record_id",)),
    ("SchemaVersion", ("schema_version",)),
    ("InstanceId", ("instance_id",)),
    ("ApimRequestId", ("caller", "request_id")),
    ("ApimSubscriptionId", ("caller", "subscription_id")),
    ("ApimSubscriptionName", ("caller", "subscription_name")),
    ("ApimProductId", ("caller", "product_id")),
    ("ApimUserId", ("caller", "user_id")),
    ("ClientIp", ("caller", "client_ip")),
    ("Method", ("request", "method")),
    ("Route", ("request", "route")),
    ("RequestPath", ("request", "path")),
    ("Operation", ("request", "operation")),
    ("Deployment", ("request", "deployment")),
    ("ApiVersion", ("request", "api_version")),
    ("Stream", ("request", "stream")),
    ("RequestBytes", ("request", "bytes")),
    ("Traceparent", ("request", "traceparent")),
    ("Status", ("response", "status")),
    ("Outcome", ("response", "outcome")),
    ("ErrorCode", ("response", "error_code")),
    ("ErrorMessage", ("response", "error_message")),
    ("ResponseId", ("response", "id")),
    ("Model", ("response", "model")),
    ("Region", ("response", "region")),
    ("UpstreamApimRequestId", ("response", "upstream_apim_request_id")),
    ("UpstreamRequestId", ("response", "upstream_request_id")),
    ("FinishReasons", ("response", "finish_reasons")),
    ("Choices", ("response", "choices")),
    ("ToolCalls", ("response", "tool_calls")),
    ("OutputEvents", ("response", "output_events")),
    ("PromptFiltered", ("response", "prompt_filtered")),
    ("CompletionFiltered", ("response", "completion_filtered")),
    ("ClientDisconnected", ("response", "client_disconnected")),
    ("ResponseBytes", ("response", "bytes")),
    ("InputTokens", ("usage", "prompt_tokens")),
    ("CachedInputTokens", ("usage", "cached_tokens")),
    ("OutputTokens", ("usage", "completion_tokens")),
    ("ReasoningTokens", ("usage", "reasoning_tokens")),
    ("TotalTokens", ("usage", "total_tokens")),
    ("UsageSource", ("usage", "source")),
    ("UsageSourceReason", ("usage", "source_reason")),
    ("UpstreamHeadersMs", ("timings", "upstream_headers_ms")),
    ("FirstByteMs", ("timings", "first_byte_ms")),
    ("TtftMs", ("timings", "first_token_ms")),
    ("DurationMs", ("timings", "duration_ms")),
    ("OutputTokensPerSecond", ("timings", "output_tokens_per_second")),
    ("TruncatedFields", ("truncated_fields",)),
)
# `type` is the table itself. `capture` (prompt and completion text, when USAGE_CAPTURE_CONTENT is
# on) never goes to the workspace: it stays in the hub for its retention and nowhere else.
USAGE_DROPPED: frozenset[str] = frozenset({"type", "capture"})

GATEWAY_COLUMNS: Columns = (
    ("TimeGenerated", ("timestamp",)),
    ("EventTime", ("timestamp",)),
    ("SchemaVersion", ("schema_version",)),
    ("ApimRequestId", ("request_id",)),
    ("ApimSubscriptionId", ("subscription_id",)),
    ("ApimSubscriptionName", ("subscription_name",)),
    ("ApimProductId", ("product_id",)),
    ("ApimUserId", ("user_id",)),
    ("ClientIp", ("client_ip",)),
    ("ApiName", ("api",)),
    ("ApiOperation", ("operation",)),
    ("Method", ("method",)),
    ("UrlPath", ("url_path",)),
    ("Status", ("status",)),
    ("UsageRecordId", ("usage_record_id",)),
    ("ErrorReason", ("error_reason",)),
    ("ErrorSource", ("error_source",)),
    ("Region", ("region",)),
    ("ServiceName", ("service",)),
    ("GatewayTtfbMs", ("gateway_ttfb_ms",)),
)
GATEWAY_DROPPED: frozenset[str] = frozenset({"type"})


def flatten(columns: Columns, event: Mapping[str, Any]) -> dict[str, Any]:
    """One row: every column present, None where the event lacks the field (e.g. `caller` is {}
    for a request that could not be parsed)."""
    return {name: _at(event, source) for name, source in columns}


def _at(event: Mapping[str, Any], source: Source) -> Any:
    value: Any = event
    for key in source:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value
