"""Every allowed location offers every resource and the default model, per the dated snapshot of the
three availability tables in infra/availability.json; the default model is the one that retires last
among those offered everywhere."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.infra import bicep_text as bt

MAIN = bt.INFRA / "main.bicep"
SNAPSHOT = bt.INFRA / "availability.json"


@pytest.fixture(scope="module")
def snapshot() -> dict[str, Any]:
    data = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def allowed_locations(main: str) -> list[str]:
    """The values of the last @allowed list before `param location`."""
    head = main[: main.index("\nparam location string")]
    lists = re.findall(r"@allowed\(\[([^\]]*)\]\)", head)
    assert lists, "param location has no @allowed list"
    return re.findall(r"'(\w+)'", lists[-1])


def default_model(main: str) -> str:
    name = bt.unquote(bt.param_default(main, "openAiModelName"))
    version = bt.unquote(bt.param_default(main, "openAiModelVersion"))
    return f"{name} {version}"


def missing(locations: list[str], snapshot: dict[str, Any]) -> dict[str, list[str]]:
    model = default_model(bt.read(MAIN))
    tables = {
        "flexConsumption": set(snapshot["flexConsumption"]["regions"]),
        "apimV2": set(snapshot["apimV2"]["regions"]),
        f"openAiGlobalStandard {model}": set(snapshot["openAiGlobalStandard"]["models"][model]),
    }
    return {
        name: [loc for loc in locations if loc not in regions] for name, regions in tables.items()
    }


def test_the_snapshot_names_its_sources_and_date(snapshot: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", snapshot["retrieved"])
    for table in ("flexConsumption", "apimV2", "openAiGlobalStandard", "openAiRetirements"):
        assert snapshot[table]["source"].startswith("https://learn.microsoft.com/"), table


def test_every_allowed_location_is_in_all_three_tables(snapshot: dict[str, Any]) -> None:
    locations = allowed_locations(bt.read(MAIN))
    assert locations
    assert missing(locations, snapshot) == {name: [] for name in missing([], snapshot)}


def test_a_location_without_azure_openai_is_caught(snapshot: dict[str, Any]) -> None:
    # northeurope has Flex Consumption and APIM v2 but no Azure OpenAI (the issue that removed it).
    found = missing(["northeurope", "westus3"], snapshot)
    assert found["flexConsumption"] == []
    assert found["apimV2"] == ["westus3"]
    assert next(v for k, v in found.items() if k.startswith("openAi")) == ["northeurope"]


def test_the_default_model_retires_last_among_those_offered_everywhere(
    snapshot: dict[str, Any],
) -> None:
    locations = set(allowed_locations(bt.read(MAIN)))
    offered = snapshot["openAiGlobalStandard"]["models"]
    retirement = snapshot["openAiRetirements"]["retirement"]
    everywhere = [model for model, regions in offered.items() if locations <= set(regions)]
    latest = max(retirement[model] for model in everywhere)
    model = default_model(bt.read(MAIN))
    assert model in everywhere
    assert retirement[model] == latest
    # Models that retire later are missing from some allowed location.
    for later in (m for m in offered if retirement[m] > latest):
        assert not locations <= set(offered[later]), later


def test_the_template_comment_states_the_retirement_date(snapshot: dict[str, Any]) -> None:
    main = MAIN.read_text(encoding="utf-8")
    model = default_model(bt.read(MAIN))
    date = snapshot["openAiRetirements"]["retirement"][model]
    assert f"retirement {date}" in main
    assert snapshot["retrieved"] in main
