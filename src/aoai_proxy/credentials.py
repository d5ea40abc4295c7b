"""The process's one Entra ID credential, shared by upstream calls, Event Hubs and Blob storage.

azure-identity (and the azure-core it loads, about 30 MiB of RSS together) is imported when a
credential is first built, not with this module: a process that needs none (`UPSTREAM_AUTH=none`
with the JSONL or log sink) never loads it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

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
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)


def bearer_token_provider(credential: AsyncTokenCredential) -> Callable[[], Awaitable[str]]:
    """Azure OpenAI's bearer tokens from `credential`, cached and refreshed by azure-identity."""
    from azure.identity.aio import get_bearer_token_provider

    return get_bearer_token_provider(credential, COGNITIVE_SERVICES_SCOPE)
