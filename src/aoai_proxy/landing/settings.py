"""The landing's settings: where the Logs Ingestion API is and which DCR streams take the rows.

Read and validated once per process, apart from the proxy's settings: a broken upstream setting
(AZURE_OPENAI_ENDPOINT, PROXY_*) must not stop records from landing. The names are the app settings
infra/modules/functionapp.bicep writes from the data collection rule's outputs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import ConfigError, _check_url, _Env, _is_loopback

# A DCR's immutable id (properties.immutableId): "dcr-" and 32 hex digits
# (learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview#uri).
_DCR_IMMUTABLE_ID = re.compile(r"^dcr-[0-9a-f]{32}$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class LandingSettings:
    endpoint: str  # the DCR's logsIngestion endpoint (a Direct DCR has its own), or a DCE
    rule_id: str
    usage_stream: str
    gateway_stream: str
    instance_id: str = "local"
    managed_identity_client_id: str | None = None

    @property
    def loopback(self) -> bool:
        """A local fake of the service (tests): plain http is allowed there and only there."""
        return _is_loopback(self.endpoint)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LandingSettings:
        env = _Env(os.environ if environ is None else environ)
        endpoint = env.required("LOGS_INGESTION_ENDPOINT").rstrip("/")
        _check_url("LOGS_INGESTION_ENDPOINT", endpoint)
        if urlsplit(endpoint).scheme != "https" and not _is_loopback(endpoint):
            raise ConfigError(
                "LOGS_INGESTION_ENDPOINT must be https (the bearer token must not travel in the "
                f"clear); got {endpoint!r}"
            )
        rule_id = env.required("LOGS_DCR_IMMUTABLE_ID")
        if not _DCR_IMMUTABLE_ID.match(rule_id):
            raise ConfigError(
                "LOGS_DCR_IMMUTABLE_ID must be a data collection rule's immutable id, "
                f"'dcr-' and 32 hex digits; got {rule_id!r}"
            )
        return cls(
            endpoint=endpoint,
            rule_id=rule_id,
            usage_stream=_stream("LOGS_USAGE_STREAM", env.required("LOGS_USAGE_STREAM")),
            gateway_stream=_stream("LOGS_GATEWAY_STREAM", env.required("LOGS_GATEWAY_STREAM")),
            instance_id=env.optional("WEBSITE_INSTANCE_ID") or "local",
            managed_identity_client_id=env.client_id("AZURE_CLIENT_ID"),
        )


def _stream(name: str, stream: str) -> str:
    # A custom stream is declared as Custom-<name> in the DCR's streamDeclarations.
    if not stream.startswith("Custom-"):
        raise ConfigError(
            f"{name} must name a DCR stream declaration, 'Custom-...'; got {stream!r}"
        )
    return stream
