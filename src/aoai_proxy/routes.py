"""The URL space both adapters serve: it mirrors Azure OpenAI's, so clients only change the host.

Templates use the Azure Functions route syntax (`{name}`, `{*rest}` for a catch-all); the ASGI adapter
translates them. Specific routes accept every method: a non-POST call on them (e.g. GET of stored
chat completions) is relayed as a plain pass-through, like the catch-all. One route lies outside
that space: the origin's `POST /api/aoaifn` (see AOAIFN_ROUTE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Operation = Literal["chat", "completions", "embeddings", "responses", "other"]

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str  # the Function's name; unique within the app
    template: str  # Azure Functions route template, relative to the site root (routePrefix "")
    operation: Operation
    deployment_in_path: bool = False
    # Where the call goes upstream when that is not where it came in (the origin's route).
    upstream: str | None = None
    methods: tuple[str, ...] = ALL_METHODS

    def upstream_path(self, path_params: dict[str, str]) -> str:
        """The template filled with the (lower-cased) route values; a missing one counts as empty."""
        path = (self.upstream or self.template).replace("{*path}", "{path}")
        return "/" + path.format_map(_Blank(path_params))


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


# The single-file Function this project grew from (hieumoscow/Function-SSE-Proxy, its README's
# "POST /api/aoaifn") took a chat-completions body there, the deployment and api-version coming
# from its settings. Served for its clients: forwarded as a chat completion to the deployment
# AZURE_OPENAI_DEPLOYMENT names, with AOAIFN_API_VERSION (aoai_proxy.origin fills both in).
AOAIFN_ROUTE = RouteSpec(
    "aoaifn",
    "api/aoaifn",
    "chat",
    deployment_in_path=True,
    upstream="openai/deployments/{deployment}/chat/completions",
    methods=("POST",),
)

PROXY_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("chat_completions", "openai/deployments/{deployment}/chat/completions", "chat", True),
    RouteSpec("completions", "openai/deployments/{deployment}/completions", "completions", True),
    RouteSpec("embeddings", "openai/deployments/{deployment}/embeddings", "embeddings", True),
    RouteSpec("v1_chat_completions", "openai/v1/chat/completions", "chat"),
    RouteSpec("v1_completions", "openai/v1/completions", "completions"),
    RouteSpec("v1_embeddings", "openai/v1/embeddings", "embeddings"),
    RouteSpec("v1_responses", "openai/v1/responses", "responses"),
    RouteSpec("responses", "openai/responses", "responses"),
    # Everything else under /openai/ (models, files, batches, stored responses...), all methods.
    RouteSpec("openai_passthrough", "openai/{*path}", "other"),
    AOAIFN_ROUTE,
)

HEALTH_ROUTE = "healthz"

# Not served: describes a call to a path outside the URL space, so its 404 is recorded too.
UNROUTED = RouteSpec("unrouted", "{*path}", "other")
