"""Which request headers go upstream, as which bytes, and what the record keeps of them: taken from
the ASGI server's (name, value) bytes as they are, or from text names and values (latin-1), alike."""

from __future__ import annotations

from collections.abc import Mapping

from aoai_proxy.inbound import Call, RawHeaders, describe_call
from aoai_proxy.routes import PROXY_ROUTES

CHAT = next(spec for spec in PROXY_ROUTES if spec.name == "chat_completions")

HEADERS = [
    (b"host", b"proxy.example"),
    (b"connection", b"keep-alive, X-Drop-Me ,\tUPGRADE"),
    (b"x-drop-me", b"listed in Connection"),
    (b"upgrade", b"h2c"),
    (b"x-keep", b"caf\xe9"),  # latin-1, not UTF-8: forwarded as these bytes
    (b"x-custom", b"\xe2\x9c\x93"),  # UTF-8
    (b"x-apim-subscription-id", b"sub-\xc3\xa9"),
    (b"x-apim-user-id", b""),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4701-00f067aa0ba902b7-01"),
    (b"authorization", b"Bearer caller-token"),
    (b"x-forwarded-for", b"203.0.113.24"),
    (b"x-ms-client-principal-id", b"abc"),
    (b"content-type", b"application/json"),
]


def _describe(headers: RawHeaders | Mapping[str, str]) -> Call:
    return describe_call(
        spec=CHAT,
        method="POST",
        path_params={"deployment": "gpt-4o-mini"},
        query="api-version=2024-10-21",
        headers=headers,
        request_path="/openai/deployments/gpt-4o-mini/chat/completions",
    )


def test_only_end_to_end_headers_go_upstream_as_their_exact_bytes_in_order() -> None:
    call = _describe(HEADERS)
    assert call.forward_headers == [
        (b"x-keep", b"caf\xe9"),
        (b"x-custom", b"\xe2\x9c\x93"),
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4701-00f067aa0ba902b7-01"),
        (b"content-type", b"application/json"),
    ]


def test_the_record_keeps_the_caller_headers_as_text_and_empty_ones_as_null() -> None:
    caller = _describe(HEADERS).caller
    assert caller.fields["subscription_id"] == "sub-\xc3\xa9"  # latin-1 decoded, as Starlette does
    assert caller.fields["user_id"] is None
    assert caller.fields["request_id"] is None
    assert caller.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4701-00f067aa0ba902b7-01"


def test_text_headers_stand_for_the_same_bytes() -> None:
    text = {name.decode("latin-1"): value.decode("latin-1") for name, value in HEADERS}
    from_text, from_bytes = _describe(text), _describe(HEADERS)
    assert from_text.forward_headers == from_bytes.forward_headers
    assert from_text.caller == from_bytes.caller


def test_header_names_are_matched_whatever_their_case() -> None:
    mixed = [(b"Connection", b"x-Drop-Me"), (b"X-DROP-ME", b"1"), (b"Authorization", b"x")]
    mixed += [(b"X-APIM-Subscription-Id", b"sub-1"), (b"X-Keep", b"1")]
    call = _describe(mixed)
    assert call.forward_headers == [(b"X-Keep", b"1")]
    assert call.caller.fields["subscription_id"] == "sub-1"
