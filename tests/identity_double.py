"""A managed-identity token endpoint on 127.0.0.1 for the real azure-identity flow.

DefaultAzureCredential -> ManagedIdentityCredential speaks the App Service protocol
(IDENTITY_ENDPOINT + IDENTITY_HEADER) to it. Each resource gets its own token, so a service double
can check the audience it was given. The fixture is re-exported by tests/conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "entra-token-for-cognitive-services"
IDENTITY_HEADER = "identity-header-secret"
CLIENT_ID = "00000000-0000-0000-0000-00000000abcd"
COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"


def token_for(resource: str) -> str:
    return TOKEN if resource == COGNITIVE_SERVICES else f"entra-token-for {resource}"


@dataclass
class TokenEndpoint:
    base_url: str
    hits: list[dict[str, str]] = field(default_factory=list)


def token_app(endpoint_hits: list[dict[str, str]], *, fail: bool) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        endpoint_hits.append(
            dict(request.query_params) | {"header": request.headers.get("x-identity-header", "")}
        )
        if fail or request.headers.get("x-identity-header") != IDENTITY_HEADER:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        resource = request.query_params.get("resource", "")
        # https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
        return JSONResponse(
            {
                "access_token": token_for(resource),
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": CLIENT_ID,
            }
        )

    return Starlette(routes=[Route("/msi/token", token)])


# Every source DefaultAzureCredential reads from the environment but the App Service managed
# identity (IDENTITY_ENDPOINT + IDENTITY_HEADER), which the tests set themselves.
OTHER_CREDENTIAL_VARIABLES = (
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "IDENTITY_SERVER_THUMBPRINT",
)


def clear_other_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTHER_CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def identity_endpoint(
    serve_asgi: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., TokenEndpoint]:
    def start(*, fail: bool = False) -> TokenEndpoint:
        endpoint = TokenEndpoint(base_url="")
        endpoint.base_url = serve_asgi(token_app(endpoint.hits, fail=fail))
        # Only the managed identity may answer: clear every other source DefaultAzureCredential tries.
        clear_other_credentials(monkeypatch)
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{endpoint.base_url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
        return endpoint

    return start
