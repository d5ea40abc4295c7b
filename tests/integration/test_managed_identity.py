"""The real azure-identity flow: DefaultAzureCredential -> ManagedIdentityCredential speaking the
App Service managed-identity protocol (IDENTITY_ENDPOINT + IDENTITY_HEADER) to a token endpoint on
127.0.0.1, and the upstream checking the bearer token it receives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from tests.identity_double import CLIENT_ID, IDENTITY_HEADER, TOKEN, TokenEndpoint

CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"


def test_upstream_gets_the_managed_identity_token_and_it_is_cached(
    identity_endpoint: Callable[..., TokenEndpoint],
    simulator_factory: Callable[..., Any],
    proxy_factory: Callable[..., Any],
) -> None:
    endpoint = identity_endpoint()
    secured = simulator_factory(required_bearer_token=TOKEN)
    proxy = proxy_factory(
        openai_endpoint=secured.base_url,
        upstream_auth="entra",
        managed_identity_client_id=CLIENT_ID,
    )
    with httpx.Client(base_url=proxy.base_url, timeout=15) as client:
        for _ in range(3):
            response = client.post(
                CHAT,
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers={"api-key": "callers-key", "Authorization": "Bearer callers-token"},
            )
            assert response.status_code == 200, response.text
    assert [r.header("authorization") for r in secured.recorder.requests] == [f"Bearer {TOKEN}"] * 3
    assert all(r.header("api-key") is None for r in secured.recorder.requests)
    assert len(endpoint.hits) == 1  # fetched once, then served from the cache
    hit = endpoint.hits[0]
    assert hit["resource"] == "https://cognitiveservices.azure.com"
    assert hit["client_id"] == CLIENT_ID  # the user-assigned identity named by AZURE_CLIENT_ID
    assert hit["header"] == IDENTITY_HEADER


def test_no_token_means_502_in_the_azure_error_shape_and_no_upstream_call(
    identity_endpoint: Callable[..., TokenEndpoint],
    proxy_factory: Callable[..., Any],
    upstream: Any,
) -> None:
    identity_endpoint(fail=True)
    proxy = proxy_factory(upstream_auth="entra")
    with httpx.Client(base_url=proxy.base_url, timeout=30) as client:
        response = client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert "managed identity" in response.json()["error"]["message"]
    assert len(upstream.recorder) == 0
    assert proxy.records(1)[0]["response"]["status"] == 502
