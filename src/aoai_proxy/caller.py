"""Entra mode: the proxy's own, fail-closed check of who called (PROXY_INBOUND_AUTH=entra).

In Entra mode the HTTP routes are anonymous at the Functions level and App Service built-in
authentication validates APIM's token (infra/modules/functionapp.bicep, authsettingsV2). It passes
the validated identity on as `X-MS-CLIENT-PRINCIPAL`: base64 of a JSON object whose `claims` list
holds `{"typ", "val"}` pairs from the token
(learn.microsoft.com/azure/app-service/configure-authentication-user-identities#decoding-the-client-principal-header).
A call is accepted only if the calling application's client id, `azp` in a v2 token or `appid` in
a v1 token (learn.microsoft.com/entra/identity-platform/access-token-claims-reference), is APIM's
identity's client id. Anything else, a missing, malformed or foreign principal, is 401 in Azure
OpenAI's error shape and is recorded like every other call. The proxy never forwards these headers
upstream (inbound.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from .errors import Unauthorized

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_IDP_HEADER = "x-ms-client-principal-idp"
_CLIENT_ID_CLAIMS = ("azp", "appid")
_REJECTED = "Access denied: the caller is not the API Management gateway of this deployment."


def verify_caller(headers: Mapping[str, str], allowed_client_id: str) -> None:
    """Raises Unauthorized unless the principal's client id is `allowed_client_id`."""
    encoded = headers.get(PRINCIPAL_HEADER)
    if not encoded:
        raise Unauthorized(_REJECTED + " No authenticated principal.")
    idp = headers.get(PRINCIPAL_IDP_HEADER)
    if idp is not None and idp.lower() != "aad":
        raise Unauthorized(_REJECTED + " The principal is not from Microsoft Entra ID.")
    client_ids = _client_ids(encoded)
    if not client_ids:
        raise Unauthorized(_REJECTED + " The principal names no client application.")
    if client_ids != {allowed_client_id.lower()}:
        raise Unauthorized(_REJECTED)


def _client_ids(encoded: str) -> set[str]:
    """The azp/appid claim values (lower-cased); empty when the header cannot be read."""
    try:
        principal = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError):
        return set()
    claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(claims, list):
        return set()
    return {
        claim["val"].lower()
        for claim in claims
        if isinstance(claim, dict)
        and claim.get("typ") in _CLIENT_ID_CLAIMS
        and isinstance(claim.get("val"), str)
    }
