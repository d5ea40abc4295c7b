"""Build a Call the way the request path does (route, then body), for tests of the pure parts."""

from __future__ import annotations

from collections.abc import Mapping

from aoai_proxy.inbound import Call, add_body, describe_call
from aoai_proxy.routes import RouteSpec


def parse_call(
    *,
    spec: RouteSpec,
    method: str,
    path_params: Mapping[str, str],
    query: str,
    headers: Mapping[str, str] | list[tuple[str, str]],
    body: bytes,
) -> Call:
    described = describe_call(
        spec=spec, method=method, path_params=path_params, query=query, headers=headers
    )
    add_body(described, body)
    return described
