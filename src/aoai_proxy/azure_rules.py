"""Names and values Azure OpenAI would reject, answered the way Azure answers them.

The one place these rules live: the request path (inbound.describe_call) applies them and
docs/http-protocol.md lists them.
"""

from __future__ import annotations

import re

from .errors import ApiVersionNotSupported, DeploymentNotFound, ProxyError

# A deployment name: letters, digits, "-", "_" and ".", at most 64 characters. Sources (found with
# the search tool): Azure OpenAI's create-resource how-to gives deployment names as 2-64 characters
# of letters, digits, "-" and "_" (quoted in SWE-agent/SWE-agent#127), the ARM reference for
# accounts/deployments (learn.microsoft.com/rest/api/aiservices/accountmanagement/deployments/
# create-or-update) has no pattern for the deployment name and ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ for the
# account it sits in, and the Foundry portal names deployments after models, dots included
# (gpt-4.1-mini). The rule is their union, kept wide on purpose (a name Azure could hold must never
# be refused here; "." and ".." are refused as dot segments already). No deployment can have any
# other name, so Azure's answer to one is 404 DeploymentNotFound.
DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# api-version: a date, optionally with a stage suffix (2024-10-21, 2025-04-01-preview), or the v1
# API's aliases (learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle: "preview",
# "latest"). Azure answers anything else with 400 {"code": "BadRequest", "message": "API version
# not supported"} (as reported from live calls, e.g. hotovo/aider-desk#460).
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(?:-[a-z]{1,16})?|preview|latest", re.IGNORECASE)

DEPLOYMENT_NOT_FOUND_MESSAGE = (
    "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again."
)


def deployment_problem(name: str) -> ProxyError | None:
    if DEPLOYMENT_NAME.fullmatch(name):
        return None
    return DeploymentNotFound(
        f"{DEPLOYMENT_NOT_FOUND_MESSAGE} (A deployment name is 1 to 64 letters, digits, "
        "'-', '_' or '.'.)"
    )


def api_version_problem(values: list[str]) -> ProxyError | None:
    """Every api-version the query carries must be plausible: a duplicate is not a way around."""
    for value in values:
        if not API_VERSION.fullmatch(value):
            return ApiVersionNotSupported(
                "API version not supported: an api-version is a date such as 2024-10-21 "
                "or 2025-04-01-preview."
            )
    return None
