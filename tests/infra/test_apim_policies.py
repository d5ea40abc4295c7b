"""The APIM policy XML is SSE-safe, spoof-proof, null-safe and consistent with the Bicep (docs/apim.md).

Each rule runs on the real files and on an altered copy that breaks it, so no check passes vacuously.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.infra import apim_rules as rules

from aoai_proxy.inbound import CALLER_HEADERS

MODULES = Path(__file__).resolve().parents[2] / "infra" / "modules"
POLICY = MODULES / "apim-openai-api-policy.xml"
FRAGMENT = MODULES / "apim-gateway-event-fragment.xml"
API_BICEP = MODULES / "apim-api.bicep"


@pytest.fixture(scope="module")
def policy() -> str:
    return POLICY.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def fragment() -> str:
    return FRAGMENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def api_bicep() -> str:
    return API_BICEP.read_text(encoding="utf-8")


def test_every_policy_file_is_well_formed_xml() -> None:
    files = sorted(MODULES.glob("apim-*.xml"))
    assert {f.name for f in files} >= {POLICY.name, FRAGMENT.name}
    for file in files:
        assert rules.check_well_formed(file.read_text(encoding="utf-8")) == [], file.name


def test_a_double_quote_inside_a_double_quoted_attribute_is_not_well_formed(policy: str) -> None:
    # APIM's editor accepts it, XML does not: expressions in attributes use single quotes.
    broken = policy.replace(
        '<set-backend-service backend-id="function-app" />',
        '<set-backend-service backend-id="@(context.Variables.GetValueOrDefault("b", ""))" />',
    )
    assert rules.check_well_formed(broken)


def test_forward_request_streams_and_passes_errors_through(policy: str) -> None:
    assert rules.check_forward_request(policy) == []


FORWARD = (
    '<forward-request timeout="240" buffer-response="false" fail-on-error-status-code="false" />'
)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('buffer-response="false"', 'buffer-response="true"', "buffer-response"),
        ('buffer-response="false" ', "", "buffer-response"),
        ('fail-on-error-status-code="false"', 'fail-on-error-status-code="true"', "fail-on-error"),
        ('timeout="240"', 'timeout="300"', "timeout"),
        ("<forward-request", "<base /><forward-request", "<base />"),
    ],
)
def test_an_unsafe_forward_is_reported(policy: str, old: str, new: str, problem: str) -> None:
    assert FORWARD in policy
    problems = rules.check_forward_request(policy.replace(FORWARD, FORWARD.replace(old, new, 1)))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("name", ["policy", "fragment"])
def test_no_policy_reads_a_body(name: str, request: pytest.FixtureRequest) -> None:
    assert rules.check_no_body_access(request.getfixturevalue(name)) == []


@pytest.mark.parametrize(
    "insert",
    [
        '<set-variable name="b" value="@(context.Request.Body.As&lt;string&gt;(preserveContent: true))" />',
        '<set-header name="x" exists-action="override"><value>@(context.Response.Body.As<JObject>()'
        '["id"].ToString())</value></set-header>',
        '<validate-content unspecified-content-type-action="prevent" max-size="102400" action="prevent" />',
        '<set-body>@{ return "x"; }</set-body>',
    ],
)
def test_reading_or_buffering_a_body_is_reported(policy: str, insert: str) -> None:
    altered = policy.replace(
        "<set-backend-service",
        insert.replace("<JObject>", "&lt;JObject&gt;") + "<set-backend-service",
        1,
    )
    assert rules.check_no_body_access(altered)


@pytest.mark.parametrize("name", ["policy", "fragment"])
def test_every_user_product_subscription_access_is_null_safe(
    name: str, request: pytest.FixtureRequest
) -> None:
    text = request.getfixturevalue(name)
    assert "context.Subscription?.Id" in text
    assert rules.check_null_safe(text) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('context.User?.Id ?? ""', "context.User.Id"),
        ('context.Product?.Id ?? ""', "context.Product?.Id"),
        ('context.Subscription?.Name ?? ""', 'context.Subscription.Name ?? ""'),
    ],
)
def test_an_unsafe_access_is_reported(policy: str, old: str, new: str) -> None:
    assert old in policy
    assert rules.check_null_safe(policy.replace(old, new, 1))


def test_caller_headers_are_removed_then_set_from_apim_context(policy: str) -> None:
    assert rules.check_caller_headers(policy) == []


def test_the_policy_sets_exactly_the_headers_the_function_reads() -> None:
    assert set(rules.CALLER_HEADER_EXPRESSIONS) == set(CALLER_HEADERS)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('<set-header name="x-apim-user-id" exists-action="delete" />', "", "not removed"),
        (
            '<set-header name="x-apim-product-id" exists-action="override">',
            '<set-header name="x-apim-product" exists-action="override">',
            "expected one set-header",
        ),
        (
            '@(context.Subscription?.Id ?? "")',
            '@(context.Request.Headers.GetValueOrDefault("x-apim-subscription-id", ""))',
            "value is not",
        ),
    ],
)
def test_a_spoofable_caller_header_is_reported(
    policy: str, old: str, new: str, problem: str
) -> None:
    assert old in policy
    problems = rules.check_caller_headers(policy.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


def test_a_header_set_before_it_is_removed_is_reported(policy: str) -> None:
    delete = '<set-header name="x-apim-client-ip" exists-action="delete" />'
    moved = policy.replace(delete, "", 1).replace(
        "<set-backend-service", delete + "<set-backend-service", 1
    )
    assert any("removed after" in p for p in rules.check_caller_headers(moved))


def test_the_consumer_key_never_reaches_the_function(policy: str) -> None:
    assert rules.check_strips_consumer_key(policy) == []
    altered = policy.replace('<set-header name="api-key" exists-action="delete" />', "", 1)
    assert rules.check_strips_consumer_key(altered) == [
        "the consumer's api-key header reaches the Function"
    ]


def test_the_gateway_event_is_joinable_and_partitioned_like_usage_records(fragment: str) -> None:
    assert rules.check_gateway_event(fragment) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "partition-key='@(context.Subscription?.Id",
            "partition-key='@(context.RequestId.ToString()",
            "partition-key",
        ),
        ('new JProperty("request_id", ', 'new JProperty("requestId", ', "request_id"),
        ('new JProperty("type", "gateway")', 'new JProperty("type", "apim")', "gateway"),
    ],
)
def test_a_broken_gateway_event_is_reported(
    fragment: str, old: str, new: str, problem: str
) -> None:
    assert old in fragment
    problems = rules.check_gateway_event(fragment.replace(old, new, 1))
    assert any(problem in p for p in problems), problems


def test_outbound_and_on_error_both_send_the_gateway_event(policy: str) -> None:
    root = rules.parse(policy)
    for section in ("outbound", "on-error"):
        included = {e.get("fragment-id") for e in root.find(section).iter("include-fragment")}
        assert included == {"gateway-event"}, section


def test_every_name_a_policy_uses_is_declared_in_the_bicep(
    policy: str, fragment: str, api_bicep: str
) -> None:
    refs = rules.references(policy)
    frag_refs = rules.references(fragment)
    assert refs["backend"] == {rules.bicep_var(api_bicep, "backendName")}
    assert refs["fragment"] == {rules.bicep_var(api_bicep, "gatewayEventFragmentName")}
    assert frag_refs["logger"] == {rules.bicep_var(api_bicep, "eventHubLoggerName")}
    # Both XML files are loaded by the Bicep that declares those names.
    assert f"loadTextContent('{POLICY.name}')" in api_bicep
    assert f"loadTextContent('{FRAGMENT.name}')" in api_bicep
