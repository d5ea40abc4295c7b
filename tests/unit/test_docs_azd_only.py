"""A user has azd and nothing else: the commands the docs give to run (their bash blocks) never
call the Azure CLI. (Prose may still mention `az` as an alternative for troubleshooting.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_BASH_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_AZ_COMMAND = re.compile(r"(?:^|[;&|(`]|\$\()\s*az\s", re.MULTILINE)


@pytest.mark.parametrize(
    "doc", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))]
)
def test_no_bash_block_in_the_docs_calls_the_azure_cli(doc: str) -> None:
    path = ROOT / doc if doc == "README.md" else ROOT / "docs" / doc
    for block in _BASH_BLOCK.findall(path.read_text()):
        assert not _AZ_COMMAND.search(block), f"{doc} runs the Azure CLI:\n{block}"
