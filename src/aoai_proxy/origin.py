"""The origin's contract: `POST /api/aoaifn` of the single-file Function this project grew from.

Its clients send a chat-completions body (`messages`, optional `stream`, `stream_options`) with no
deployment and no api-version: the origin took both from its settings (AZURE_OPENAI_MODEL,
AZURE_OPENAI_API_VERSION; hieumoscow/Function-SSE-Proxy, README "POST /api/aoaifn"). Here they come
from AZURE_OPENAI_DEPLOYMENT and AOAIFN_API_VERSION, and the call then takes the request path of
every other chat completion (routes.AOAIFN_ROUTE names where it goes upstream).
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from .config import Settings
from .errors import ServiceMisconfigured


def origin_target(settings: Settings, query: str) -> tuple[dict[str, str], str]:
    """The route values and the query of the upstream chat completion.

    A caller's own api-version wins (the origin ignored the query; nobody relied on sending one).
    """
    if settings.aoaifn_deployment is None:
        raise ServiceMisconfigured(
            "POST /api/aoaifn needs AZURE_OPENAI_DEPLOYMENT, the deployment its calls go to."
        )
    if "api-version" not in parse_qs(query, keep_blank_values=True):
        version = "api-version=" + quote(settings.aoaifn_api_version, safe="")
        query = f"{query}&{version}" if query else version
    return {"deployment": settings.aoaifn_deployment}, query
