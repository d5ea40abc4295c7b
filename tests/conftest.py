"""Shared fixtures: loopback servers, the simulator, the proxy under uvicorn."""

# --- recorded Azure OpenAI responses (lead) -------------------------------------------------------
import os as _os
from pathlib import Path as _Path

import pytest as _pytest

RECORDED_DIR = _Path(
    _os.environ.get(
        "AOAI_FIXTURES_DIR",
        str(_Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "azure-openai"),
    )
)


@_pytest.fixture(scope="session")
def recorded() -> _Path:
    """../shared/fixtures/azure-openai: real recorded Azure OpenAI responses (never copied here)."""
    if not (RECORDED_DIR / "SOURCES.md").exists():
        _pytest.skip(f"recorded Azure OpenAI fixtures not found at {RECORDED_DIR}")
    return RECORDED_DIR
