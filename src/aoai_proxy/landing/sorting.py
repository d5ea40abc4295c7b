"""Events from the usage hub sorted by their `type` into rows for the two tables.

The hub carries the proxy's usage records (`"type": "usage"`, schema_version "1.x") and APIM's
gateway events (`"type": "gateway"`, schema_version 1). Anything else (another type, another major
version, a body that is not a JSON object) is not landed, since its columns are unknown; it is
counted and logged, with its id when it has one, never dropped silently (it stays in the hub for its
retention). docs/usage-record.md: a consumer that reads only major 1 skips other majors.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .columns import GATEWAY_COLUMNS, USAGE_COLUMNS, flatten

log = logging.getLogger(__name__)

Row = MutableMapping[str, Any]  # what LogsIngestionClient.upload takes
LOGGED_BODY_BYTES = 2048  # of an unreadable event, enough to recognise it


@dataclass(slots=True)
class Sorted:
    usage: list[Row] = field(default_factory=list)
    gateway: list[Row] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)  # "type/version" -> events
    unreadable: int = 0  # not a JSON object


def sort_events(bodies: Iterable[bytes]) -> Sorted:
    result = Sorted()
    for body in bodies:
        event = _parse(body)
        if event is None:
            result.unreadable += 1
            log.error(
                "usage landing: an event is not a JSON object; not landed (%d bytes): %r",
                len(body),
                body[:LOGGED_BODY_BYTES],
            )
            continue
        kind, version = event.get("type"), event.get("schema_version")
        if kind == "usage" and isinstance(version, str) and version.split(".")[0] == "1":
            result.usage.append(flatten(USAGE_COLUMNS, event))
        elif kind == "gateway" and type(version) is int and version == 1:
            result.gateway.append(flatten(GATEWAY_COLUMNS, event))
        else:
            label = f"{kind}/{version}"
            result.unknown[label] += 1
            log.warning(
                "usage landing: unknown event type %r (schema_version %r, record_id %r, "
                "request_id %r); not landed",
                kind,
                version,
                event.get("record_id"),
                event.get("request_id"),
            )
    return result


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        return None
    return event if isinstance(event, dict) else None
