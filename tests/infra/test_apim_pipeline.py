"""The deploy workflow and the host-key hooks: keyless, in the documented order, never leaking a key."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "azure-dev.yml"
HOOK_SH = ROOT / "scripts" / "apim-sync-function-key.sh"
HOOK_PS1 = ROOT / "scripts" / "apim-sync-function-key.ps1"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def run_lines(workflow: dict[str, Any]) -> list[str]:
    steps = workflow["jobs"]["deploy"]["steps"]
    return [" ".join(str(step.get("run", "")).split()) for step in steps]


def test_runs_on_push_to_main_and_on_demand(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"workflow_dispatch", "push"}
    assert triggers["push"]["branches"] == ["main"]


def test_permissions_allow_oidc_and_nothing_else(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}


def test_identity_comes_from_repository_variables_and_no_secret_is_used(
    workflow: dict[str, Any],
) -> None:
    env = workflow["jobs"]["deploy"]["env"]
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
    ):
        assert env[name] == "${{ vars." + name + " }}"
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "secrets." not in text
    assert "client-secret" not in text
    assert "AZURE_CLIENT_SECRET" not in text


def test_azd_signs_in_federated_then_provisions_deploys_and_smoke_tests(
    workflow: dict[str, Any],
) -> None:
    lines = run_lines(workflow)
    order = [
        next(i for i, line in enumerate(lines) if pattern in line)
        for pattern in (
            "azd auth login",
            "azd provision --no-prompt",
            "azd deploy --no-prompt",
            "python scripts/smoke_test.py",
        )
    ]
    assert order == sorted(order)
    login = lines[order[0]]
    assert "--federated-credential-provider github" in login


def test_the_pipeline_principal_type_is_service_principal(workflow: dict[str, Any]) -> None:
    assert workflow["jobs"]["deploy"]["env"]["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"


def test_the_smoke_test_requirements_cover_its_imports() -> None:
    needed = {"openai", "azure-identity", "azure-eventhub", "httpx"}
    text = (ROOT / "scripts" / "requirements-smoke.txt").read_text(encoding="utf-8")
    names = {
        re.split(r"[<>=\s]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert names == needed


# ---------------------------------------------------------------- hooks


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_the_posix_hook_parses(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    subprocess.run([shell, "-n", str(HOOK_SH)], check=True, timeout=30)


@pytest.mark.parametrize("hook", [HOOK_SH, HOOK_PS1], ids=["sh", "ps1"])
def test_the_hook_uses_a_dedicated_host_key_never_the_master_key(hook: Path) -> None:
    text = hook.read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "--key-type functionKeys" in code
    assert "masterKey" not in code
    assert "masterkey" not in code.lower().replace("never the master key", "")
    assert re.search(r"KeyName\s*=\s*'apim'|KEY_NAME=apim", code)
    # The named value is written with PUT from a file, never with the key on a command line.
    assert "--body" in code
    assert '"@$body"' in code or '"@$body"' in code.replace('"@$body"', '"@$body"')
    assert "az apim nv" not in code


def test_the_posix_hook_never_prints_the_key() -> None:
    code = HOOK_SH.read_text(encoding="utf-8")
    uses = [
        line.strip()
        for line in code.splitlines()
        if "$key" in line and not line.lstrip().startswith("#")
    ]
    # Only: read into the variable, test it, and write it into the mode-600 request body file.
    allowed = (r"^key=\$\(read_key", r'^if \[ -n "\$key" \]', r'"\$key" >"\$body"$')
    assert uses
    for line in uses:
        assert any(re.search(pattern, line) for pattern in allowed), line
    assert "set -x" not in code
    assert "umask 077" in code


def test_the_pwsh_hook_never_prints_the_key() -> None:
    code = HOOK_PS1.read_text(encoding="utf-8")
    for line in code.splitlines():
        if re.search(r"Write-(Host|Output|Log)", line):
            assert "$key" not in line, line
