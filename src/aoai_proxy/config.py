"""Settings from the environment, read and validated once.

Every variable is documented in docs/configuration.md. azd writes unset values as empty strings,
so an empty value counts as unset.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from .azure_rules import DEPLOYMENT_NAME

UpstreamAuth = Literal["entra", "none"]
InboundAuth = Literal["key", "entra"]
SinkKind = Literal["eventhub", "jsonl", "log"]
_T = TypeVar("_T", bound=str)

_AUTH_CHOICES: tuple[UpstreamAuth, ...] = ("entra", "none")
_LOG_LEVELS = ("debug", "info", "warning", "error")
_INBOUND_CHOICES: tuple[InboundAuth, ...] = ("key", "entra")
_SINK_CHOICES: tuple[SinkKind, ...] = ("eventhub", "jsonl", "log")

# The injection policy (docs/usage-record.md, "Injection"): the v1 API always, and every dated
# api-version (`YYYY-MM-DD` or `YYYY-MM-DD-preview`) whose date is on or after this one, compared as
# dates so that a version released next month needs no new release of the proxy. Evidence, found
# with the public references: 2024-09-01-preview is the first preview whose reference documents
# `stream_options` (learn.microsoft.com, "Azure OpenAI API preview lifecycle"; Azure.AI.OpenAI
# 2.1.0-beta.2 changelog: "2024-09-01-preview brings AOAI support for streaming token usage"); GA
# 2024-10-21 has it (its inference.yaml lists it; Azure.AI.OpenAI 2.1.0 changelog: "the 2024-10-21
# API version brings GA AOAI support for streaming token usage"); 2024-08-01-preview is a guess
# (clients such as spring-ai#1724 report usage there); 2024-06-01 and older answer 400
# "Unrecognized request argument supplied: stream_options" (openai-python#1469, gpt-pilot#1022).
# A wrong guess costs one resend: the 400 naming stream_options is retried without it and remembered.
DEFAULT_INJECT_MIN_API_VERSION = "2024-08-01-preview"
_DATED_API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


def api_version_date(api_version: str) -> date | None:
    """The date of a dated api-version (`2024-10-21`, `2025-04-01-preview`), else None."""
    match = _DATED_API_VERSION.match(api_version)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # 2024-13-45 has the shape of a date but is none
        return None


@dataclass(frozen=True, slots=True)
class InjectionPolicy:
    """Which api-versions of the dated routes get include_usage injected (v1: always).

    `only` is the legacy USAGE_INJECT_API_VERSIONS: when set, exactly those versions are injected
    and the date rule is off. Otherwise: `excluded` never, `extra` always, any other dated version
    from `min_api_version` on.
    """

    min_api_version: str = DEFAULT_INJECT_MIN_API_VERSION
    extra: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()
    only: frozenset[str] | None = None

    @property
    def min_date(self) -> date:
        found = api_version_date(self.min_api_version)
        assert found is not None, "validated by InjectionPolicy.read"
        return found

    @classmethod
    def read(cls, env: _Env) -> InjectionPolicy:
        minimum = env.optional("USAGE_INJECT_MIN_API_VERSION")
        extra = env.optional("USAGE_INJECT_EXTRA_API_VERSIONS")
        excluded = env.optional("USAGE_INJECT_EXCLUDED_API_VERSIONS")
        only = env.optional("USAGE_INJECT_API_VERSIONS")
        if only is not None and (minimum or extra or excluded):
            raise ConfigError(
                "USAGE_INJECT_API_VERSIONS (an exact list) cannot be combined with "
                "USAGE_INJECT_MIN_API_VERSION, USAGE_INJECT_EXTRA_API_VERSIONS or "
                "USAGE_INJECT_EXCLUDED_API_VERSIONS; use either the list or the three others"
            )
        if minimum is not None and api_version_date(minimum) is None:
            raise ConfigError(
                "USAGE_INJECT_MIN_API_VERSION must be a dated api-version such as "
                f"'2024-08-01-preview' or '2024-10-21'; got {minimum!r}"
            )
        return cls(
            min_api_version=minimum or DEFAULT_INJECT_MIN_API_VERSION,
            extra=_versions(extra),
            excluded=_versions(excluded),
            only=_versions(only) if only is not None else None,
        )


def library_log_level(environ: Mapping[str, str] | None = None) -> str:
    """LIBRARY_LOG_LEVEL: the level of httpx's and the Azure SDKs' loggers (aoai_proxy.logs)."""
    env = _Env(os.environ if environ is None else environ)
    return env.choice("LIBRARY_LOG_LEVEL", _LOG_LEVELS, "warning")


# POST /api/aoaifn (aoai_proxy.origin) forwards with this api-version unless AOAIFN_API_VERSION says
# otherwise: the GA version, on which streams get exact usage injected. The origin used
# 2024-08-01-preview; its clients send stream_options themselves, which both versions accept.
DEFAULT_AOAIFN_API_VERSION = "2024-10-21"


def _aoaifn_api_version(env: _Env) -> str:
    value = env.optional("AOAIFN_API_VERSION")
    if value is None:
        return DEFAULT_AOAIFN_API_VERSION
    if api_version_date(value) is None:
        raise ConfigError(
            "AOAIFN_API_VERSION must be a dated api-version such as '2024-10-21' or "
            f"'2025-04-01-preview'; got {value!r}"
        )
    return value


def _aoaifn_deployment(env: _Env) -> str | None:
    name = env.optional("AZURE_OPENAI_DEPLOYMENT")
    if name is not None and not DEPLOYMENT_NAME.fullmatch(name):
        # Checked here, not per call: a call would be answered 404 DeploymentNotFound, blaming it.
        raise ConfigError(
            "AZURE_OPENAI_DEPLOYMENT must be a deployment name, 1 to 64 letters, digits, '-', '_' "
            f"or '.'; got {name!r}"
        )
    return name


def _versions(value: str | None) -> frozenset[str]:
    return frozenset(v.strip() for v in (value or "").split(",") if v.strip())


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


# The service's own naming rules, checked at start-up so a bad value stops the app instead of
# failing every send or dead-letter write later:
# - Event Hubs namespace: 6-50 letters, digits and hyphens, starting with a letter and ending with a
#   letter or digit (learn.microsoft.com/azure/templates/microsoft.eventhub/namespaces, "name"); the
#   host is <namespace>.servicebus.<cloud suffix>, e.g. servicebus.windows.net.
# - Event hub: 1-256 letters, digits, '.', '-' and '_', starting and ending with a letter or digit
#   (learn.microsoft.com/azure/templates/microsoft.eventhub/namespaces/eventhubs, "name").
# - Blob container: 3-63 lowercase letters, digits and hyphens, starting and ending with a letter or
#   digit, every hyphen between two letters or digits (learn.microsoft.com/rest/api/storageservices/
#   naming-and-referencing-containers--blobs--and-metadata, "Container names").
_NAMESPACE_HOST = re.compile(
    r"([A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9])\.servicebus(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"
)
_EVENTHUB_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,254}[A-Za-z0-9])?")
_CONTAINER_NAME = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(-[a-z0-9]+)*")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
DEFAULT_CONTAINER = "usage-deadletter"


@dataclass(frozen=True, slots=True)
class Settings:
    openai_endpoint: str
    upstream_auth: UpstreamAuth = "entra"
    managed_identity_client_id: str | None = None
    max_request_bytes: int = 16 * 1024 * 1024
    connect_timeout: float = 10.0
    response_timeout: float = 220.0
    stream_idle_timeout: float = 240.0
    sink: SinkKind = "jsonl"
    usage_log_path: str = "usage.jsonl"
    injection: InjectionPolicy = InjectionPolicy()
    aoaifn_deployment: str | None = None
    aoaifn_api_version: str = DEFAULT_AOAIFN_API_VERSION
    library_log_level: str = "warning"
    capture_content: bool = False
    capture_max_bytes: int = 2048
    eventhub_namespace: str | None = None
    eventhub_name: str | None = None
    deadletter_blob_service_uri: str | None = None
    deadletter_container: str = DEFAULT_CONTAINER
    instance_id: str = "local"
    delivery_queue_max_records: int = 10_000
    delivery_max_seconds: float = 10.0
    delivery_log_seconds: float = 60.0
    inbound_auth: InboundAuth = "key"
    allowed_caller_client_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        endpoint = env.required("AZURE_OPENAI_ENDPOINT").rstrip("/")
        _check_url("AZURE_OPENAI_ENDPOINT", endpoint)
        auth = env.choice("PROXY_UPSTREAM_AUTH", _AUTH_CHOICES, "entra")
        if auth == "none" and not _is_loopback(endpoint):
            raise ConfigError(
                "PROXY_UPSTREAM_AUTH=none is only allowed when AZURE_OPENAI_ENDPOINT is a loopback "
                f"address (a local simulator); got {endpoint!r}"
            )
        target = DeliveryTarget.read(env)
        default_sink: SinkKind = "eventhub" if target else "jsonl"
        sink = env.choice("USAGE_SINK", _SINK_CHOICES, default_sink)
        if sink == "eventhub" and target is None:
            raise ConfigError("USAGE_SINK=eventhub needs EVENTHUB_FULLY_QUALIFIED_NAMESPACE")
        if sink == "eventhub" and target is not None and target.deadletter_blob_service_uri is None:
            # Records that cannot reach the hub in time are parked in Blob storage (docs/delivery.md).
            raise ConfigError(
                "USAGE_SINK=eventhub needs DEADLETTER_BLOB_SERVICE_URI "
                "(or AzureWebJobsStorage__blobServiceUri) for the dead-letter store; "
                "for a local run, set USAGE_SINK=jsonl"
            )
        inbound_auth, allowed_caller = _inbound_auth(env)
        return cls(
            openai_endpoint=endpoint,
            upstream_auth=auth,
            managed_identity_client_id=env.client_id("AZURE_CLIENT_ID"),
            max_request_bytes=env.integer("PROXY_MAX_REQUEST_BYTES", 16 * 1024 * 1024, minimum=1),
            connect_timeout=env.seconds("PROXY_CONNECT_TIMEOUT_SECONDS", 10.0),
            response_timeout=env.seconds("PROXY_RESPONSE_TIMEOUT_SECONDS", 220.0),
            stream_idle_timeout=env.seconds("PROXY_STREAM_IDLE_TIMEOUT_SECONDS", 240.0),
            sink=sink,
            usage_log_path=env.optional("USAGE_LOG_PATH") or "usage.jsonl",
            injection=InjectionPolicy.read(env),
            aoaifn_deployment=_aoaifn_deployment(env),
            aoaifn_api_version=_aoaifn_api_version(env),
            library_log_level=library_log_level(environ),
            capture_content=env.boolean("USAGE_CAPTURE_CONTENT", False),
            capture_max_bytes=env.integer("USAGE_CAPTURE_MAX_BYTES", 2048, minimum=0),
            eventhub_namespace=target.namespace if target else None,
            eventhub_name=target.eventhub_name if target else None,
            deadletter_blob_service_uri=_deadletter_uri(env),
            deadletter_container=target.deadletter_container if target else DEFAULT_CONTAINER,
            instance_id=env.optional("WEBSITE_INSTANCE_ID") or "local",
            delivery_queue_max_records=env.integer("USAGE_QUEUE_MAX_RECORDS", 10_000, minimum=1),
            delivery_max_seconds=env.seconds("USAGE_DELIVERY_MAX_SECONDS", 10.0),
            delivery_log_seconds=env.seconds("USAGE_COUNTERS_LOG_SECONDS", 60.0),
            inbound_auth=inbound_auth,
            allowed_caller_client_id=allowed_caller,
        )


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """The usage hub and its dead-letter store: read by the proxy's settings and by the replay
    timer, which must not depend on any upstream setting."""

    namespace: str
    eventhub_name: str
    deadletter_blob_service_uri: str | None
    deadletter_container: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeliveryTarget | None:
        return cls.read(_Env(os.environ if environ is None else environ))

    @classmethod
    def read(cls, env: _Env) -> DeliveryTarget | None:
        """None when no Event Hub is configured; a bad value fails naming its variable."""
        namespace = env.optional("EVENTHUB_FULLY_QUALIFIED_NAMESPACE")
        if namespace is None:
            return None
        _check_namespace(namespace)
        hub = env.optional("EVENTHUB_NAME")
        if hub is None:
            raise ConfigError(
                "EVENTHUB_NAME is required when EVENTHUB_FULLY_QUALIFIED_NAMESPACE is set"
            )
        if not _EVENTHUB_NAME.fullmatch(hub):
            raise ConfigError(
                "EVENTHUB_NAME must be 1-256 letters, digits, '.', '-' or '_', starting and ending "
                f"with a letter or digit; got {hub!r}"
            )
        container = env.optional("DEADLETTER_CONTAINER") or DEFAULT_CONTAINER
        if not _CONTAINER_NAME.fullmatch(container):
            # Azure answers 400 InvalidResourceName on every write: every dead letter would fail.
            raise ConfigError(
                "DEADLETTER_CONTAINER must be 3-63 lowercase letters, digits and single hyphens, "
                f"starting and ending with a letter or digit; got {container!r}"
            )
        return cls(
            namespace=namespace,
            eventhub_name=hub,
            deadletter_blob_service_uri=_deadletter_uri(env),
            deadletter_container=container,
        )


def _check_namespace(namespace: str) -> None:
    if not _NAMESPACE_HOST.fullmatch(namespace.lower()):
        raise ConfigError(
            "EVENTHUB_FULLY_QUALIFIED_NAMESPACE must be the namespace's host name, "
            "'<namespace>.servicebus.windows.net' (the namespace: 6-50 letters, digits and hyphens, "
            f"starting with a letter; no scheme, path or port); got {namespace!r}"
        )


def inbound_auth_is_entra(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the HTTP routes are anonymous at the Functions level (read once, at indexing).

    Read as Settings.from_env reads it (case-insensitively), so the two never disagree: `Entra`
    opens the routes and Settings then demands the fail-closed check's settings. Anything else
    keeps the Functions key check, and Settings.from_env rejects a value not `key` or `entra`.
    """
    value = (os.environ if environ is None else environ).get("PROXY_INBOUND_AUTH", "")
    return value.strip().lower() == "entra"


def _inbound_auth(env: _Env) -> tuple[InboundAuth, str | None]:
    mode = env.choice("PROXY_INBOUND_AUTH", _INBOUND_CHOICES, "key")
    if mode == "key":
        return mode, None
    client_id = env.client_id("PROXY_ALLOWED_CALLER_CLIENT_ID")
    if client_id is None:
        raise ConfigError(
            "PROXY_INBOUND_AUTH=entra needs PROXY_ALLOWED_CALLER_CLIENT_ID "
            "(the client id of APIM's managed identity)"
        )
    # In App Service the platform sets WEBSITE_AUTH_ENABLED=True when built-in authentication is on
    # (WEBSITE_SITE_NAME marks App Service): without it the routes would be open to anyone who can
    # forge X-MS-CLIENT-PRINCIPAL, so refuse to serve. Names as read by Microsoft.Identity.Web's
    # AppServicesAuthenticationInformation.
    if env.optional("WEBSITE_SITE_NAME") is not None and (
        (env.optional("WEBSITE_AUTH_ENABLED") or "").lower() != "true"
    ):
        raise ConfigError(
            "PROXY_INBOUND_AUTH=entra but App Service authentication is off (WEBSITE_AUTH_ENABLED "
            "is not True): deploy infra/modules/functionapp.bicep's authsettingsV2"
        )
    return mode, client_id


def _deadletter_uri(env: _Env) -> str | None:
    uri = env.optional("DEADLETTER_BLOB_SERVICE_URI") or env.optional(
        "AzureWebJobsStorage__blobServiceUri"
    )
    if uri is not None:
        _check_url("DEADLETTER_BLOB_SERVICE_URI", uri)
    return uri


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def client_id(self, name: str) -> str | None:
        """An Entra application (client) id: a GUID. A typo here would otherwise show only as a
        502 (no token for that identity) or a 401 on every call, long after start-up."""
        value = self.optional(name)
        if value is not None and not _GUID.fullmatch(value):
            raise ConfigError(
                f"{name} must be a client id (a GUID such as "
                f"00000000-0000-0000-0000-000000000000); got {value!r}"
            )
        return value

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(f"{name} is required (see docs/configuration.md)")
        return value

    def choice(self, name: str, allowed: tuple[_T, ...], default: _T) -> _T:
        value = self.optional(name)
        if value is None:
            return default
        for option in allowed:
            if value.lower() == option:
                return option
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer; got {value!r}") from None
        if number < minimum:
            raise ConfigError(f"{name} must be at least {minimum}; got {number}")
        return number

    def seconds(self, name: str, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds; got {value!r}") from None
        if not number > 0:
            raise ConfigError(f"{name} must be greater than 0; got {value!r}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false; got {value!r}")


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL; got {url!r}")


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
