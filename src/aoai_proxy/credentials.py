"""The process's one Entra ID credential, shared by upstream calls, Event Hubs and Blob storage."""

from __future__ import annotations

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential

# Entra ID scope for Azure OpenAI data-plane calls:
# learn.microsoft.com/azure/ai-foundry/openai/how-to/managed-identity
COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"


def token_failure_hint(managed_identity_client_id: str | None) -> str:
    """What to check when no token came: the managed identity in Azure, the developer's login
    locally. The credential chain's own message goes to the log, not to the caller."""
    if managed_identity_client_id:
        return (
            "Could not get an Entra ID token for Azure OpenAI; check the Function's managed "
            "identity (AZURE_CLIENT_ID) and its Cognitive Services OpenAI User role."
        )
    return (
        "Could not get an Entra ID token for Azure OpenAI. No managed identity is configured "
        "(AZURE_CLIENT_ID is unset), so the proxy uses your developer login: run `az login` or "
        "`azd auth login`, then retry. The proxy's log has the credential chain's message."
    )


def build_credential(managed_identity_client_id: str | None) -> AsyncTokenCredential:
    # DefaultAzureCredential tries the managed identity first in Azure (AZURE_CLIENT_ID picks the
    # user-assigned one) and the developer's azd/az login locally. Interactive browser login is
    # excluded by default, so nothing can block waiting for a person.
    return DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
