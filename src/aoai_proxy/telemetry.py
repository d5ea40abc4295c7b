"""The worker exports the proxy's own log lines to Application Insights itself.

The Functions host forwards a Python log record to Application Insights only while the invocation it
belongs to is running (azure-functions-python-worker #1158, #1358). The Event Hub sink's background
tasks (sender, dead-letter writer, counters reporter) outlive the request that started them, so their
lines, the ones the pipeline alerts read (`usage_delivery_counters`, `usage_delivery_at_risk`,
`usage record undeliverable`; infra/analytics/alerts/delivery-*.kql), would never reach AppTraces.

So the `aoai_proxy` loggers also go through an OpenTelemetry logger provider with the Azure Monitor
exporter, in or out of an invocation
(learn.microsoft.com/azure/azure-monitor/app/opentelemetry-configuration?tabs=python). Keyless: the
exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING (`ClientId=<identity>;Authorization=AAD`,
written by functionapp.bicep) and gets a managed-identity token for it; the identity has Monitoring
Metrics Publisher on the component (rbac.bicep). Only logs, unsampled: no tracing or metrics, and on
the request path nothing but a handler that queues the record for a background thread.

A line logged inside an invocation reaches AppTraces twice (host and exporter); the alert queries
count each distinct line once per AppRoleName. The role name is the one the host uses: the app's
name, or WEBSITE_CLOUD_ROLENAME when set (Azure-Functions #2497, azure-functions-dotnet-worker #1708).
Were they ever to differ, such a line would count twice: a count changes, never whether an alert
with threshold 0 fires.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider

log = logging.getLogger(__name__)

LOGGER = "aoai_proxy"  # every module's logger is below it
# How long a record waits in the exporter's queue: short, since a worker may stop without warning.
EXPORT_DELAY_MS = 1000


def export_logs(
    connection_string: str, *, role_name: str, role_instance: str, **exporter_options: Any
) -> LoggerProvider:
    """Exports the LOGGER tree's records at INFO and above; `exporter_options` go to the exporter."""
    # Imported here: function_app imports this module everywhere, and only Azure exports (the
    # OpenTelemetry SDK and exporter cost start-up time and memory in local runs and tests).
    from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource

    exporter = AzureMonitorLogExporter(connection_string=connection_string, **exporter_options)
    # service.name and service.instance.id become AppRoleName and AppRoleInstance.
    resource = Resource.create({SERVICE_NAME: role_name, SERVICE_INSTANCE_ID: role_instance})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS)
    )
    logger = logging.getLogger(LOGGER)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
    # The counters lines are INFO: exported whatever level the worker gives the root logger.
    logger.setLevel(logging.INFO)
    return provider


def export_logs_from_env(environ: Mapping[str, str] | None = None) -> LoggerProvider | None:
    """In Azure (APPLICATIONINSIGHTS_CONNECTION_STRING set); None elsewhere (local runs, tests).

    A telemetry problem must not stop the gateway: it is logged, and the host still forwards the
    lines written inside invocations."""
    env = os.environ if environ is None else environ
    connection_string = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
    if not connection_string:
        return None
    try:
        return export_logs(
            connection_string,
            role_name=(
                env.get("WEBSITE_CLOUD_ROLENAME", "").strip()
                or env.get("WEBSITE_SITE_NAME", "").strip()
                or "aoai-proxy"
            ),
            role_instance=env.get("WEBSITE_INSTANCE_ID", "").strip() or "local",
        )
    except Exception:
        log.exception("log export to Application Insights is off: APPLICATIONINSIGHTS_* settings")
        return None
