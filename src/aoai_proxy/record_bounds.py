"""Caps on every string and list a usage record copies from the call, so a record always fits one
Event Hubs event (1 MB on Standard and up) whatever the caller or the upstream sent.

Caller headers, traceparent, path, deployment, api-version, error messages, ids: nothing bounds them
on the way in (APIM or a direct caller may send a 10,000-character header), and a record over the
hub's event size can never be delivered. Each cut field is named in the record's `truncated_fields`.
The captured texts have their own limit (USAGE_CAPTURE_MAX_BYTES) and flags, and the Event Hubs
encoder shrinks them further if needed (sinks/events.fit), so they are left alone here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_STRING_CHARS = 512
# Strings inside arrays (finish reasons, one per choice) are words; their number follows `n`,
# which Azure caps at 128.
MAX_ITEM_CHARS = 64
MAX_LIST_ITEMS = 128
_OWN_LIMITS = frozenset({"capture"})
# What a record holds besides strings, dicts and lists: never cut.
_SCALARS = frozenset({int, float, bool, type(None)})

# Worst case, as ASCII JSON (an astral character is 12 bytes, \\uXXXX\\uXXXX): about 40 strings of
# 512 characters and 128 items of 64, under 350 KB. tests/integration/test_record_bounds.py proves a
# record with every field at its worst still fits one event, capture on.


def bounded(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` with every string and list within the caps, and `truncated_fields` naming (as
    dotted paths, e.g. `caller.subscription_id`) each one that was cut; [] when none was."""
    if all(key in _OWN_LIMITS or _within(value, MAX_STRING_CHARS) for key, value in record.items()):
        # Nearly every record: nothing to cut, so no copy of every field and no path names.
        return {**record, "truncated_fields": []}
    cut: list[str] = []
    result = {
        key: value if key in _OWN_LIMITS else _bound(value, key, MAX_STRING_CHARS, cut)
        for key, value in record.items()
    }
    result["truncated_fields"] = list(dict.fromkeys(cut))  # an array's items are named once
    return result


def _within(value: Any, max_chars: int) -> bool:
    """Whether `_bound` would leave `value` as it is; False for a type it might cut or that is not
    checked here (e.g. a Mapping other than a dict), so the full walk decides."""
    kind = type(value)
    if kind is str:
        return len(value) <= max_chars
    if kind is dict:
        return all(_within(item, MAX_STRING_CHARS) for item in value.values())
    if kind is list:
        if len(value) > MAX_LIST_ITEMS:
            return False
        return all(_within(item, MAX_ITEM_CHARS) for item in value)
    return kind in _SCALARS


def _bound(value: Any, path: str, max_chars: int, cut: list[str]) -> Any:
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        cut.append(path)
        return value[:max_chars]
    if isinstance(value, Mapping):
        return {
            key: _bound(item, f"{path}.{key}", MAX_STRING_CHARS, cut) for key, item in value.items()
        }
    if isinstance(value, list):
        items = [_bound(item, f"{path}[]", MAX_ITEM_CHARS, cut) for item in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            cut.append(path)
        return items
    return value
