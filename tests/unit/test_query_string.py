"""The request path reads the query from the ASGI scope, not from a URL object built for the whole
request: it is what Starlette's `request.url.query` gives, for any query and any Host header."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from aoai_proxy.proxy import _query

QUERY_BYTES = st.binary(max_size=40).map(lambda b: bytes(33 + c % 94 for c in b))  # visible ASCII
ALPHABET = "api-version=2024-10-21&?#%2Fx+é \t"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(QUERY_BYTES, st.text(alphabet=ALPHABET, max_size=40).map(str.encode)),
    st.sampled_from([b"example.com", b"127.0.0.1:7071", b"[::1]:80", b"bad host?x#y", None]),
)
@example(b"api-version=2024-10-21#fragment", b"example.com")
@example(b"a=1?b=2", None)
def test_the_query_is_what_starlette_gives(query_string: bytes, host: bytes | None) -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 7071),
        "path": "/openai/models",
        "query_string": query_string,
        "headers": [(b"host", host)] if host is not None else [],
    }
    assert _query(scope) == Request(scope).url.query
