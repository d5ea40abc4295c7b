"""Azure OpenAI's error answers, with the wording and byte layout of real ones.

Two shapes exist on the wire, and both are reproduced:
- the gateway shape `{"error":{"code":"<status>","message": "..."}}` (note the space after
  `"message":`, as Azure sends it) for 404 / 429, and `{"error":{"code":..,"message":..}}` for 401;
- the OpenAI shape `{"error":{"message","type","param","code"}}` for request validation errors.
See ../shared/fixtures/azure-openai/SOURCES.md for where each wording comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import wire
from .settings import SimulatorSettings

_HSTS = "max-age=31536000; includeSubDomains; preload"


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    body: bytes
    headers: dict[str, str]


def _answer(status: int, body: str, settings: SimulatorSettings, **extra: str) -> ErrorAnswer:
    apim_id, _ = wire.request_ids()
    if status == 401:
        # The gateway refuses before any backend is chosen: the recording has just these two.
        return ErrorAnswer(
            status, body.encode(), {"Content-Type": wire.JSON, "apim-request-id": apim_id}
        )
    headers = {
        "Content-Type": wire.JSON,
        "Strict-Transport-Security": _HSTS,
        "apim-request-id": apim_id,
        "x-content-type-options": "nosniff",
        "x-ms-region": settings.region,
    }
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return ErrorAnswer(status, body.encode(), headers)


def _openai_error(message: str, param: str | None, code: str | None) -> str:
    return wire.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    )


def resource_not_found(settings: SimulatorSettings) -> ErrorAnswer:
    # What Azure answers when api-version is missing or the route does not exist.
    return _answer(404, '{"error":{"code":"404","message": "Resource not found"}}', settings)


def deployment_not_found(settings: SimulatorSettings) -> ErrorAnswer:
    message = (
        "The API deployment for this resource does not exist. If you created the deployment "
        "within the last 5 minutes, please wait a moment and try again."
    )
    body = wire.dumps({"error": {"code": "DeploymentNotFound", "message": message}})
    return _answer(404, body, settings)


def unauthorized(settings: SimulatorSettings) -> ErrorAnswer:
    message = (
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource."
    )
    return _answer(401, wire.dumps({"error": {"code": "401", "message": message}}), settings)


def rate_limited(
    settings: SimulatorSettings, operation: str, api_version: str, retry_after_s: int
) -> ErrorAnswer:
    message = (
        f"Requests to the {operation} Operation under Azure OpenAI API version {api_version} "
        "have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
        f"after {retry_after_s} seconds. Please go here: https://aka.ms/oai/quotaincrease if you "
        "would like to further increase the default rate limit."
    )
    body = '{"error":{"code":"429","message": ' + wire.dumps(message) + "}}"
    return _answer(
        429,
        body,
        settings,
        **{
            "retry-after": str(retry_after_s),
            "retry-after-ms": str(retry_after_s * 1000),
            "x-rate-limit-reset-tokens": str(retry_after_s),
            "policy-id": "DeploymentRatelimit-Token",
            "x-ratelimit-remaining-requests": str(settings.rate_limit_requests - 19),
            "x-ratelimit-remaining-tokens": "0",
        },
    )


def content_filtered(settings: SimulatorSettings, deployment: str = "") -> ErrorAnswer:
    # Azure bills this call: the prompt was evaluated, then refused (error_400_content_filter).
    message = (
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry. To learn more about our "
        "content filtering policies please read our documentation: "
        "https://go.microsoft.com/fwlink/?linkid=2198766"
    )
    result = {
        "hate": wire.SAFE,
        "jailbreak": wire.NOT_DETECTED,
        "self_harm": wire.FILTERED_MEDIUM,
        "sexual": wire.SAFE,
        "violence": wire.SAFE,
    }
    error = {
        "message": message,
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
    }
    # The model deployment saw the prompt, so the deployment and rate-limit headers are there.
    limits = {
        "x-ms-deployment-name": deployment,
        "x-ms-rai-invoked": "true",
        "x-ratelimit-limit-requests": str(settings.rate_limit_requests),
        "x-ratelimit-limit-tokens": str(settings.rate_limit_tokens),
        "x-ratelimit-remaining-requests": str(settings.rate_limit_requests - 1),
        "x-ratelimit-remaining-tokens": str(settings.rate_limit_tokens - 1),
    }
    return _answer(400, wire.dumps({"error": error}), settings, **limits)


def server_error(settings: SimulatorSettings, status: int = 500) -> ErrorAnswer:
    message = "The server had an error while processing your request. Sorry about that!"
    body = wire.dumps(
        {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    )
    return _answer(status, body, settings)


def generic(settings: SimulatorSettings, status: int) -> ErrorAnswer:
    body = wire.dumps({"error": {"code": str(status), "message": f"Simulated error {status}."}})
    return _answer(status, body, settings)


def unrecognized_argument(settings: SimulatorSettings, name: str) -> ErrorAnswer:
    # Dated api-versions that predate a parameter reject it with this (live) wording.
    message = (
        f"Unrecognized request argument supplied: {name}. Please contact us through an Azure "
        "support request at: https://go.microsoft.com/fwlink/?linkid=2213926 for further "
        "questions."
    )
    return _answer(400, _openai_error(message, None, None), settings)


def unknown_parameter(settings: SimulatorSettings, name: str) -> ErrorAnswer:
    # The v1 / Responses surface answers unknown parameters in OpenAI's wording.
    body = _openai_error(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    return _answer(400, body, settings)


def invalid_request(
    settings: SimulatorSettings, message: str, param: str | None = None, code: str | None = None
) -> ErrorAnswer:
    return _answer(400, _openai_error(message, param, code), settings)


def missing_parameter(settings: SimulatorSettings, name: str) -> ErrorAnswer:
    message = f"Missing required parameter: '{name}'."
    return invalid_request(settings, message, name, "missing_required_parameter")


def invalid_json(settings: SimulatorSettings) -> ErrorAnswer:
    message = (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
        "contact us through our help center at help.openai.com.)"
    )
    return invalid_request(settings, message)


def for_status(
    settings: SimulatorSettings,
    status: int,
    operation: str,
    api_version: str,
    retry_after_s: int,
    deployment: str = "",
) -> ErrorAnswer:
    """The answer for `x-sim-status: <status>`."""
    if status == 429:
        return rate_limited(settings, operation, api_version, retry_after_s)
    if status == 400:
        return content_filtered(settings, deployment)
    if status == 401:
        return unauthorized(settings)
    if status == 404:
        return deployment_not_found(settings)
    if status >= 500:
        return server_error(settings, status)
    return generic(settings, status)
