"""infra/bicepconfig.json: the Graph alias and linter rules that can fail the build.

The Bicep linter runs only where the compiler does (the GitHub `bicep` job); here the levels are
checked, and the two usage rules that must hold at `error` (no-unused-params, no-unused-vars) are
checked on the templates too, so a finding cannot first appear in CI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.infra import bicep_text as bt

CONFIG = bt.INFRA / "bicepconfig.json"

# Named in the issue and in https://learn.microsoft.com/azure/azure-resource-manager/bicep/linter.
MUST_BE_ERRORS = (
    "outputs-should-not-contain-secrets",
    "secure-parameter-default",
    "use-secure-value-for-secure-inputs",
    "adminusername-should-not-be-literal",
    "no-hardcoded-location",
    "no-unused-params",
    "no-unused-vars",
)


def load_jsonc(path: Path) -> dict[str, Any]:
    """bicepconfig.json allows // comments (outside strings) and trailing commas."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'("(?:[^"\\]|\\.)*")|//[^\n]*', lambda m: m.group(1) or "", text)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    analyzers = load_jsonc(CONFIG)["analyzers"]["core"]
    assert analyzers["enabled"] is True
    return dict(analyzers["rules"])


@pytest.mark.parametrize("rule", MUST_BE_ERRORS)
def test_the_rule_fails_the_build(rules: dict[str, Any], rule: str) -> None:
    assert rules[rule]["level"] == "error"


def test_recent_api_versions_cannot_turn_ci_red(rules: dict[str, Any]) -> None:
    # A new upstream API version would fail a build with no change in this repository.
    assert rules.get("use-recent-api-versions", {"level": "off"})["level"] == "off"


def test_every_level_is_one_bicep_knows(rules: dict[str, Any]) -> None:
    assert {r["level"] for r in rules.values()} <= {"error", "warning", "info", "off"}


def test_it_sits_next_to_main_bicep() -> None:
    # Bicep reads the nearest bicepconfig.json upwards from each file: infra/ covers modules/ too.
    assert CONFIG.parent == (bt.INFRA / "main.bicep").parent
    assert not list(bt.INFRA.rglob("modules/**/bicepconfig.json"))


def _declared(text: str, keyword: str) -> list[str]:
    return re.findall(rf"^{keyword}\s+(\w+)\b", text, re.M)


@pytest.mark.parametrize("path", bt.bicep_files(), ids=lambda p: p.name)
def test_no_unused_params_or_vars(path: Path) -> None:
    text = bt.read(path)
    for keyword in ("param", "var"):
        for name in _declared(text, keyword):
            uses = len(re.findall(rf"(?<![\w.']){name}\b", text))
            assert uses > 1, f"{path.name}: {keyword} {name} is never used"


@pytest.mark.parametrize("path", bt.bicep_files(), ids=lambda p: p.name)
def test_no_unused_existing_resources(path: Path) -> None:
    text = bt.read(path)
    for resource in bt.resources(text, path):
        if resource.existing:
            uses = len(re.findall(rf"(?<![\w.']){resource.symbol}\b", text))
            assert uses > 1, f"{path.name}: existing resource {resource.symbol} is never used"


@pytest.mark.parametrize("path", bt.bicep_files(), ids=lambda p: p.name)
def test_location_functions_only_in_parameter_defaults(path: Path) -> None:
    for line in bt.read(path).splitlines():
        if re.search(r"\b(resourceGroup|deployment)\(\)\.location\b", line):
            assert line.lstrip().startswith("param "), f"{path.name}: {line.strip()}"


def test_the_unused_check_can_fail() -> None:
    text = "param used string\nparam unused string\noutput o string = used\n"
    declared = _declared(text, "param")
    unused = [n for n in declared if len(re.findall(rf"(?<![\w.']){n}\b", text)) <= 1]
    assert unused == ["unused"]
