"""Entra mode, fail-closed: the proxy under uvicorn accepts a call only when the principal App Service
authentication passes on (X-MS-CLIENT-PRINCIPAL) names APIM's identity as the calling application,
answers 401 in Azure OpenAI's shape otherwise, records every call, and never forwards the identity
headers upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import AuthenticationError, OpenAI
from tests.conftest import ProxyServer, TappedSimulator

from aoai_proxy.caller import verify_caller
from aoai_proxy.errors import Unauthorized

APIM_CLIENT_ID = "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab"
OTHER_CLIENT_ID = "0e9d8c7b-1111-2222-3333-ba9876543210"
CHAT = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hi"}]}


def principal(claims: list[dict[str, Any]], auth_typ: str = "aad") -> str:
    """The header as App Service builds it: base64 of {auth_typ, claims: [{typ, val}], ...}."""
    document = {"auth_typ": auth_typ, "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


V2 = principal([{"typ": "aud", "val": "api-app-id"}, {"typ": "azp", "val": APIM_CLIENT_ID}])
V1 = principal([{"typ": "appid", "val": APIM_CLIENT_ID.upper()}, {"typ": "ver", "val": "1.0"}])
FORGED = principal([{"typ": "azp", "val": OTHER_CLIENT_ID}])
CONFLICTING = principal(
    [{"typ": "azp", "val": APIM_CLIENT_ID}, {"typ": "appid", "val": OTHER_CLIENT_ID}]
)
NO_CLIENT = principal([{"typ": "oid", "val": APIM_CLIENT_ID}])
IDENTITY_HEADERS = {
    "X-MS-CLIENT-PRINCIPAL-ID": "principal-object-id",
    "X-MS-CLIENT-PRINCIPAL-NAME": "apim-identity",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    "X-MS-TOKEN-AAD-ACCESS-TOKEN": "a-token",
}


@pytest.fixture
def entra_proxy(proxy_factory: Callable[..., ProxyServer]) -> ProxyServer:
    return proxy_factory(inbound_auth="entra", allowed_caller_client_id=APIM_CLIENT_ID)


def call(proxy: ProxyServer, headers: dict[str, str], *, stream: bool = False) -> httpx.Response:
    body = {**BODY, "stream": True} if stream else BODY
    return httpx.post(proxy.base_url + CHAT, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("header", [V2, V1], ids=["v2-azp", "v1-appid"])
def test_apims_identity_is_accepted_and_no_identity_header_goes_upstream(
    entra_proxy: ProxyServer, upstream: TappedSimulator, header: str
) -> None:
    response = call(entra_proxy, {"X-MS-CLIENT-PRINCIPAL": header, **IDENTITY_HEADERS})

    assert response.status_code == 200, response.text
    (received,) = upstream.recorder.requests
    assert not [name for name, _ in received.headers if name.lower().startswith("x-ms-")]
    (record,) = entra_proxy.records(1)
    assert record["response"]["status"] == 200


def test_a_stream_passes_through_for_apim(
    entra_proxy: ProxyServer, upstream: TappedSimulator
) -> None:
    response = call(entra_proxy, {"X-MS-CLIENT-PRINCIPAL": V2}, stream=True)
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    (received,) = upstream.recorder.requests
    assert received.header("x-ms-client-principal") is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"X-MS-CLIENT-PRINCIPAL": FORGED}, "wrong-id"),
        ({"X-MS-CLIENT-PRINCIPAL": CONFLICTING}, "azp-and-appid-disagree"),
        ({"X-MS-CLIENT-PRINCIPAL": NO_CLIENT}, "no-client-claim"),
        ({"X-MS-CLIENT-PRINCIPAL": "not base64 !"}, "malformed"),
        ({"X-MS-CLIENT-PRINCIPAL": base64.b64encode(b"[1, 2]").decode()}, "not-an-object"),
        ({"X-MS-CLIENT-PRINCIPAL": V2, "X-MS-CLIENT-PRINCIPAL-IDP": "github"}, "other-idp"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_anything_else_is_401_in_azure_shape_recorded_and_never_forwarded(
    entra_proxy: ProxyServer, upstream: TappedSimulator, headers: dict[str, str], reason: str
) -> None:
    response = call(entra_proxy, headers)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "401"
    assert "API Management gateway" in error["message"]
    assert not upstream.recorder.requests
    (record,) = entra_proxy.records(1)
    assert record["record_id"] == response.headers["x-usage-record-id"]
    assert record["response"]["status"] == 401
    assert record["response"]["outcome"] == "proxy_error"
    assert record["response"]["error_code"] == "401"


def test_the_openai_sdk_sees_an_authentication_error(entra_proxy: ProxyServer) -> None:
    client = OpenAI(base_url=entra_proxy.base_url + "/openai/v1", api_key="unused", max_retries=0)
    with pytest.raises(AuthenticationError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-MS-CLIENT-PRINCIPAL": FORGED},
        )
    assert raised.value.status_code == 401
    assert raised.value.code == "401"


def test_key_mode_forwards_no_identity_header_either(
    proxy: ProxyServer, upstream: TappedSimulator
) -> None:
    response = call(proxy, {"X-MS-CLIENT-PRINCIPAL": FORGED, **IDENTITY_HEADERS})
    assert response.status_code == 200
    (received,) = upstream.recorder.requests
    assert not [name for name, _ in received.headers if name.lower().startswith("x-ms-")]


# Deterministic in CI like the fuzz suite: no example database, the same examples every run.
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    header=st.one_of(
        st.text(max_size=300), st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
    )
)
def test_no_arbitrary_header_value_gets_through_or_raises_anything_but_401(header: str) -> None:
    try:
        verify_caller({"x-ms-client-principal": header}, APIM_CLIENT_ID)
    except Unauthorized:
        return
    pytest.fail(f"accepted {header!r}")
