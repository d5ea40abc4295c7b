"""The settings contract, the README table and the code name the same variables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUR_COMPONENTS = {"proxy", "usage", "delivery", "landing"}


def table_rows(markdown: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in markdown.splitlines():
        match = re.match(r"^\| `([A-Za-z_]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def names_read_by_code() -> set[str]:
    pattern = re.compile(
        r"env\.(?:optional|required|choice|integer|seconds|boolean|client_id)\(\s*\"([A-Za-z_]+)\""
    )
    return {
        name for path in (ROOT / "src").rglob("*.py") for name in pattern.findall(path.read_text())
    }


def test_every_variable_the_code_reads_is_in_the_contract() -> None:
    documented = table_rows((ROOT / "docs" / "configuration.md").read_text())
    assert names_read_by_code() - set(documented) == set()


def test_every_variable_our_code_is_said_to_read_is_read() -> None:
    documented = table_rows((ROOT / "docs" / "configuration.md").read_text())
    ours = {
        name
        for name, cells in documented.items()
        if OUR_COMPONENTS & set(re.split(r"[ ,]+", cells[2]))
    }
    assert ours - names_read_by_code() == set()


def test_readme_names_every_variable_of_the_contract() -> None:
    documented = table_rows((ROOT / "docs" / "configuration.md").read_text())
    readme = (ROOT / "README.md").read_text()
    readme_table = table_rows(readme)
    assert set(readme_table) <= set(documented)
    for name in set(documented) - set(readme_table):
        prefix = name.split("__")[0] + "__*"
        assert f"`{name}" in readme or prefix in readme, f"{name} is not mentioned in README.md"
