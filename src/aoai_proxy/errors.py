"""Errors the proxy itself answers with, in the Azure OpenAI error shape.

    ProxyError                       -> {"error": {"code", "message"}} with `status`
    ├── BadRequest          400      the call is malformed (bad path or JSON, non-object body)
    │   └── ApiVersionNotSupported   an api-version Azure would refuse (Azure's own code)
    ├── Unauthorized        401      Entra mode: the caller is not APIM's identity (caller.py)
    ├── NotFound            404      no such route
    ├── DeploymentNotFound  404      a deployment name no Azure deployment can have
    ├── MethodNotAllowed    405      a method the route does not serve (local adapter)
    ├── PayloadTooLarge     413      body over PROXY_MAX_REQUEST_BYTES
    ├── UpstreamUnreachable 502      Azure OpenAI could not be reached (or no token for it)
    ├── UpstreamTimeout     504      no response headers (or body, when not streamed) in time
    ├── ServiceMisconfigured 500     a setting is invalid; the message names the variable
    └── InternalError       500      a bug in the proxy (the traceback is logged, never sent)

Upstream errors are never wrapped: they pass through with their own status, headers and body.
Tracebacks go to the log only.
"""

from __future__ import annotations

import json
from typing import ClassVar


class ProxyError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> bytes:
        return error_body(self.code, self.message)


class BadRequest(ProxyError):
    status = 400
    code = "invalid_request"


class ApiVersionNotSupported(BadRequest):
    code = "BadRequest"


class Unauthorized(ProxyError):
    status = 401
    code = "401"


class NotFound(ProxyError):
    status = 404
    code = "404"


class DeploymentNotFound(ProxyError):
    status = 404
    code = "DeploymentNotFound"


class MethodNotAllowed(ProxyError):
    status = 405
    code = "405"


class PayloadTooLarge(ProxyError):
    status = 413
    code = "payload_too_large"


class UpstreamUnreachable(ProxyError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(ProxyError):
    status = 504
    code = "upstream_timeout"


class ServiceMisconfigured(ProxyError):
    status = 500
    code = "service_misconfigured"


class InternalError(ProxyError):
    status = 500
    code = "internal_error"


def one_line(exc: BaseException) -> str:
    """An exception as one log line: its type and its message with the line breaks folded (the
    credential chain's message spans a dozen lines), cut to 1,000 characters."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:1000]


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def stream_error_event(code: str, message: str) -> bytes:
    """An in-band SSE error after the first byte: the openai SDK raises APIError on it."""
    return b"data: " + error_body(code, message) + b"\n\n"
