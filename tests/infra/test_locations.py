"""Every allowed location offers every resource and the default model, per the dated snapshot of the
three availability tables in infra/availability.json; the default model is the one that retires last
among those offered everywhere that a new subscription can still deploy today (read when the tests
run, so the template cannot silently age past its default model's new-customer date)."""

from __future__ import annotations

import datetime
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


def open_everywhere(
    locations: set[str], snapshot: dict[str, Any], today: datetime.date
) -> dict[str, str]:
    """Retirement date of each model offered in every location that new customers can deploy today."""
    offered = snapshot["openAiGlobalStandard"]["models"]
    dates = snapshot["openAiRetirements"]
    return {
        model: dates["retirement"][model]
        for model, regions in offered.items()
        if locations <= set(regions)
        and datetime.date.fromisoformat(dates["newCustomersUntil"][model]) > today
    }


REFRESH = (
    "Refresh infra/availability.json from its sources (Global Standard region tables, model "
    "retirement schedule, lifecycle policy), choose the default again by the rule in "
    "docs/deploy.md#quota-and-regions, and update infra/main.bicep, infra/main.parameters.json, "
    "docs/deploy.md and infra/analytics/model-prices.txt."
)


def test_every_snapshot_model_has_its_dates(snapshot: dict[str, Any]) -> None:
    offered = set(snapshot["openAiGlobalStandard"]["models"])
    dates = snapshot["openAiRetirements"]
    assert set(dates["retirement"]) == offered
    assert set(dates["newCustomersUntil"]) == offered
    for model in offered:
        # Deprecated (new customers shut out) comes before retired, never after.
        assert dates["newCustomersUntil"][model] < dates["retirement"][model], model


def test_new_customers_can_still_deploy_the_default_model(snapshot: dict[str, Any]) -> None:
    model = default_model(bt.read(MAIN))
    until = datetime.date.fromisoformat(snapshot["openAiRetirements"]["newCustomersUntil"][model])
    today = datetime.date.today()
    assert until > today, (
        f"The default model {model} is closed to new customers since {until} (today is {today}): "
        f"`azd up` in a new subscription fails to deploy it. {REFRESH}"
    )


def test_the_default_model_retires_last_among_those_open_everywhere(
    snapshot: dict[str, Any],
) -> None:
    locations = set(allowed_locations(bt.read(MAIN)))
    model = default_model(bt.read(MAIN))
    candidates = open_everywhere(locations, snapshot, datetime.date.today())
    assert model in candidates, f"{model} is not offered to new customers everywhere. {REFRESH}"
    latest = max(candidates.values())
    assert candidates[model] == latest, (
        f"{[m for m, d in candidates.items() if d == latest]} retire later ({latest}). {REFRESH}"
    )
    # Models that retire later are missing from some allowed location or closed to new customers.
    retirement = snapshot["openAiRetirements"]["retirement"]
    assert [m for m in retirement if retirement[m] > latest] == ["gpt-5.5 2026-04-24"]


def test_a_model_closed_to_new_customers_is_not_a_candidate(snapshot: dict[str, Any]) -> None:
    locations = set(allowed_locations(bt.read(MAIN)))
    # The previous default: offered in every allowed location, but closed to new subscriptions.
    assert "gpt-5-mini 2025-08-07" not in open_everywhere(
        locations, snapshot, datetime.date(2026, 12, 6)
    )
    assert "gpt-5-mini 2025-08-07" in open_everywhere(
        locations, snapshot, datetime.date(2026, 8, 6)
    )
    # The day the current default closes, it stops being a candidate too.
    assert default_model(bt.read(MAIN)) not in open_everywhere(
        locations, snapshot, datetime.date(2027, 3, 17)
    )


def test_the_template_comment_states_the_retirement_date(snapshot: dict[str, Any]) -> None:
    main = MAIN.read_text(encoding="utf-8")
    model = default_model(bt.read(MAIN))
    date = snapshot["openAiRetirements"]["retirement"][model]
    assert f"retirement {date}" in main
    assert snapshot["retrieved"] in main
