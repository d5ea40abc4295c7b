"""Project checkov policies: every resource that can accept keys is told not to.

Loaded with ``checkov --external-checks-dir infra/checkov`` (see scripts/check-infra). checkov's
built-ins miss some of these for Bicep (App Insights, Event Hubs, Log Analytics) or only cover
them under another framework, so the keyless posture of the template is checked here explicitly.
A missing property fails: the secure value must be stated, never left to a provider default.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_value_check import BaseResourceValueCheck
from checkov.common.models.enums import CheckCategories


class _MustBe(BaseResourceValueCheck):
    def __init__(self, check_id: str, name: str, resource_type: str, key: str, value: Any) -> None:
        self._key = key
        self._value = value
        super().__init__(
            name=name,
            id=check_id,
            categories=(CheckCategories.IAM,),
            supported_resources=(resource_type,),
        )

    def get_inspected_key(self) -> str:
        return self._key

    def get_expected_value(self) -> Any:
        return self._value


# https://learn.microsoft.com/azure/ai-services/disable-local-auth
openai_local_auth = _MustBe(
    "CKV_PROXY_1",
    "Azure OpenAI / Cognitive Services account disables local (API key) auth",
    "Microsoft.CognitiveServices/accounts",
    "properties/disableLocalAuth",
    True,
)

# https://learn.microsoft.com/azure/event-hubs/authenticate-shared-access-signature
eventhub_local_auth = _MustBe(
    "CKV_PROXY_2",
    "Event Hubs namespace disables local (SAS key) auth",
    "Microsoft.EventHub/namespaces",
    "properties/disableLocalAuth",
    True,
)

# https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
appinsights_local_auth = _MustBe(
    "CKV_PROXY_3",
    "Application Insights disables local (instrumentation key only) auth",
    "Microsoft.Insights/components",
    "properties/DisableLocalAuth",
    True,
)

# https://learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent
storage_shared_key = _MustBe(
    "CKV_PROXY_4",
    "Storage account disallows shared key (account key and key-signed SAS) access",
    "Microsoft.Storage/storageAccounts",
    "properties/allowSharedKeyAccess",
    False,
)

# https://learn.microsoft.com/azure/azure-monitor/logs/azure-ad-authentication-logs
loganalytics_local_auth = _MustBe(
    "CKV_PROXY_5",
    "Log Analytics workspace disables local (shared key) auth",
    "Microsoft.OperationalInsights/workspaces",
    "properties/features/disableLocalAuth",
    True,
)
