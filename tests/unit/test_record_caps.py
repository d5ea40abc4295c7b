"""Every field of a usage record is cut at its cap and named in `truncated_fields`, and a record
with nothing over a cap comes back unchanged: checked one field at a time, on each side of the cap,
for every string and list of the documented example record."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aoai_proxy.record_bounds import MAX_ITEM_CHARS, MAX_LIST_ITEMS, MAX_STRING_CHARS, bounded

DOC = Path(__file__).resolve().parents[2] / "docs" / "usage-record.md"


def _example() -> dict[str, Any]:
    record: dict[str, Any] = json.loads(DOC.read_text().split("```json\n")[1].split("\n```")[0])
    record.pop("truncated_fields")
    record.pop("capture", None)
    return record


def _string_fields(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every string or null (which could be a string) outside arrays."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _string_fields(item, (*path, key))
    elif value is None or isinstance(value, str):
        yield path


def _with(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return changed


def _at(record: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        record = record[key]
    return record


EXAMPLE = _example()
FIELDS = list(_string_fields(EXAMPLE))


def test_the_example_has_fields_at_every_level() -> None:
    assert ("record_id",) in FIELDS
    assert ("caller", "subscription_id") in FIELDS
    assert ("response", "error_message") in FIELDS
    assert isinstance(EXAMPLE["response"]["finish_reasons"], list)


def test_a_record_within_every_cap_is_returned_as_it_is() -> None:
    assert bounded(EXAMPLE) == {**EXAMPLE, "truncated_fields": []}


@pytest.mark.parametrize("path", FIELDS, ids=".".join)
def test_a_string_at_its_cap_is_kept_and_one_character_more_is_cut(path: tuple[str, ...]) -> None:
    at_cap = _with(EXAMPLE, path, "é" * MAX_STRING_CHARS)
    assert bounded(at_cap) == {**at_cap, "truncated_fields": []}

    over = bounded(_with(EXAMPLE, path, "é" * (MAX_STRING_CHARS + 1)))
    assert over["truncated_fields"] == [".".join(path)]
    assert _at(over, path) == "é" * MAX_STRING_CHARS
    assert over == {
        **_with(EXAMPLE, path, "é" * MAX_STRING_CHARS),
        "truncated_fields": [".".join(path)],
    }


def test_array_items_and_arrays_are_cut_at_their_caps() -> None:
    path = ("response", "finish_reasons")
    at_cap = _with(EXAMPLE, path, ["s" * MAX_ITEM_CHARS] * MAX_LIST_ITEMS)
    assert bounded(at_cap) == {**at_cap, "truncated_fields": []}

    long_item = bounded(_with(EXAMPLE, path, ["stop", "s" * (MAX_ITEM_CHARS + 1)]))
    assert _at(long_item, path) == ["stop", "s" * MAX_ITEM_CHARS]
    assert long_item["truncated_fields"] == ["response.finish_reasons[]"]

    many = bounded(_with(EXAMPLE, path, ["stop"] * (MAX_LIST_ITEMS + 1)))
    assert _at(many, path) == ["stop"] * MAX_LIST_ITEMS
    assert many["truncated_fields"] == ["response.finish_reasons"]


def test_the_input_record_is_not_changed() -> None:
    record = _with(EXAMPLE, ("caller", "user_id"), "u" * (MAX_STRING_CHARS + 1))
    before = copy.deepcopy(record)
    bounded(record)
    bounded(EXAMPLE)
    assert record == before
    assert "truncated_fields" not in EXAMPLE


def test_captured_texts_have_their_own_limit_and_are_not_cut_here() -> None:
    capture = {"prompt": {"text": "p" * 10_000, "bytes": 10_000, "truncated": False}}
    assert bounded({**EXAMPLE, "capture": capture})["capture"] == capture
