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


def test_the_deploy_job_waits_for_the_pipeline_configuration(workflow: dict[str, Any]) -> None:
    # A fresh copy of the template has no repository variables yet: skip, do not fail.
    condition = workflow["jobs"]["deploy"]["if"]
    assert "vars.AZURE_CLIENT_ID != ''" in condition
    assert "vars.AZURE_SUBSCRIPTION_ID != ''" in condition


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


# ---------------------------------------------------------------- the posix hook, run against a fake az

FAKE_AZ = r"""#!/bin/sh
# Stand-in for the Azure CLI: logs its argv, answers from $FAKE_AZ_STATE.
printf '%s\n' "$*" >>"$FAKE_AZ_LOG"
case "$1 $2" in
  "account show") [ "$FAKE_AZ_SIGNED_IN" = 1 ] || { echo "Please run 'az login'" >&2; exit 1; } ;;
  "functionapp keys")
    case "$3" in
      list) [ -f "$FAKE_AZ_STATE/key" ] && cat "$FAKE_AZ_STATE/key" ;;
      set) printf 'generated-host-key-value' >"$FAKE_AZ_STATE/key" ;;
    esac ;;
  "rest --method")
    for arg in "$@"; do
      case "$arg" in @*) cp "${arg#@}" "$FAKE_AZ_STATE/body.json" ;; esac
    done ;;
esac
exit 0
"""

HOOK_ENV = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_FUNCTION_NAME": "func-api-test",
    "APIM_NAME": "apim-test",
    "APIM_FUNCTION_KEY_NAMED_VALUE": "function-host-key",
}


def run_hook(
    tmp_path: Path, *args: str, signed_in: bool = True
) -> tuple[subprocess.CompletedProcess[str], str, Path]:
    if shutil.which("sh") is None:
        pytest.skip("sh not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "az").write_text(FAKE_AZ, encoding="utf-8")
    (bin_dir / "az").chmod(0o755)
    (bin_dir / "sleep").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")  # no real waits
    (bin_dir / "sleep").chmod(0o755)
    log = tmp_path / "az.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_AZ_LOG": str(log),
        "FAKE_AZ_STATE": str(tmp_path),
        "FAKE_AZ_SIGNED_IN": "1" if signed_in else "0",
        **HOOK_ENV,
    }
    done = subprocess.run(
        ["sh", str(HOOK_SH), *args], env=env, capture_output=True, text=True, timeout=60
    )
    return done, log.read_text(encoding="utf-8") if log.exists() else "", tmp_path


def test_the_hook_creates_the_key_once_and_writes_it_only_into_the_request_body(
    tmp_path: Path,
) -> None:
    done, calls, state = run_hook(tmp_path)
    assert done.returncode == 0, done.stderr
    body = (state / "body.json").read_text(encoding="utf-8")
    assert '"value":"generated-host-key-value"' in body
    assert '"secret":true' in body
    # Never on a command line, never printed.
    assert "generated-host-key-value" not in calls
    assert "generated-host-key-value" not in done.stdout + done.stderr
    assert calls.count("functionapp keys set") == 1
    put = next(line for line in calls.splitlines() if line.startswith("rest --method put"))
    assert "/service/apim-test/namedValues/function-host-key?api-version=2024-05-01" in put
    # A second run reuses the key instead of creating another.
    done, calls, _ = run_hook(tmp_path)
    assert done.returncode == 0, done.stderr
    assert calls.count("functionapp keys set") == 1


@pytest.mark.parametrize(("args", "status"), [((), 1), (("--best-effort",), 0)])
def test_the_hook_stops_at_once_when_the_cli_is_not_signed_in(
    tmp_path: Path, args: tuple[str, ...], status: int
) -> None:
    done, calls, _ = run_hook(tmp_path, *args, signed_in=False)
    assert done.returncode == status
    assert "az login" in done.stderr
    assert "functionapp keys" not in calls


def test_a_missing_setting_is_named(tmp_path: Path) -> None:
    if shutil.which("sh") is None:
        pytest.skip("sh not installed")
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in HOOK_ENV.items() if k != "APIM_NAME"}}
    done = subprocess.run(["sh", str(HOOK_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "APIM_NAME is not set" in done.stderr
