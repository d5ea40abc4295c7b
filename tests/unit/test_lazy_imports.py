"""A proxy that needs no credential and no Event Hub sink runs without the Azure SDKs: they are
about 40 MiB of RSS in every process (docs/benchmarks.md), so they are imported when first built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
AZURE_SDKS = ("azure.core", "azure.identity", "azure.eventhub", "azure.storage.blob")

PROGRAM = """
import asyncio, json, sys
from aoai_proxy.asgi import create_app
from aoai_proxy.config import Settings
from aoai_proxy.runtime import RuntimeHolder

async def main(settings):
    holder = RuntimeHolder(lambda: settings)
    await holder.get()
    await holder.aclose()

create_app()
asyncio.run(main(Settings(openai_endpoint="http://127.0.0.1:9", upstream_auth=sys.argv[1],
                          sink="jsonl", usage_log_path=sys.argv[2])))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("azure"))))
"""


def _azure_modules(upstream_auth: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, upstream_auth, str(tmp_path / "usage.jsonl")],
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def test_the_jsonl_sink_without_entra_imports_no_azure_sdk(tmp_path: Path) -> None:
    assert _azure_modules("none", tmp_path) == []


def test_entra_upstream_auth_loads_azure_identity_when_the_runtime_is_built(
    tmp_path: Path,
) -> None:
    modules = _azure_modules("entra", tmp_path)
    assert "azure.identity.aio" in modules
    assert not any(m.startswith(("azure.eventhub", "azure.storage")) for m in modules)
