"""Library loggers stay at WARNING unless LIBRARY_LOG_LEVEL raises them.

httpx logs one INFO line per upstream request, and the Azure SDKs' HTTP logging policy
(azure.core.pipeline.policies.http_logging_policy) one per SDK call (Event Hubs, Blob storage,
token requests). In Azure every such line is an Application Insights trace that host.json exempts
from sampling, so each one is paid for; the proxy's own loggers (aoai_proxy.*) are not affected.

`uvicorn.access` is the Functions worker's server: the HTTP streaming extension runs uvicorn with its
defaults, which log one INFO line per request (the Functions host already records each invocation),
and building it cost about 2% of the proxy's CPU per non-streamed call (docs/benchmarks.md). uvicorn
sets that logger to INFO when its server starts, after function_app.py is imported; the runtime,
built at the first request, sets it again (runtime.Runtime.create).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .config import ConfigError, library_log_level

LIBRARY_LOGGERS = ("httpx", "httpcore", "azure", "aiohttp", "urllib3", "uvicorn.access")


def quiet_libraries(level: str) -> None:
    """Sets every library logger to `level` (`debug`, `info`, `warning` or `error`)."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


def quiet_libraries_from_env(environ: Mapping[str, str] | None = None) -> None:
    """At import time, before settings are validated: an invalid value keeps WARNING here and
    stops the app with a message naming the variable when the settings are read."""
    try:
        level = library_log_level(os.environ if environ is None else environ)
    except ConfigError:
        level = "warning"
    quiet_libraries(level)
