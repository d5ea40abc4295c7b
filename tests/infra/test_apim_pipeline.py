"""The deploy workflow: after CI, keyless, in the documented order, carrying every template setting.
(The hooks it runs through azd are exercised in test_hooks.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "azure-dev.yml"
AZURE_YAML = ROOT / "azure.yaml"
PARAMETERS = ROOT / "infra" / "main.parameters.json"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def run_lines(workflow: dict[str, Any]) -> list[str]:
    steps = workflow["jobs"]["deploy"]["steps"]
    return [" ".join(str(step.get("run", "")).split()) for step in steps]


def test_runs_after_ci_completed_on_main_and_on_demand(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"workflow_dispatch", "workflow_run"}
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    assert triggers["workflow_run"] == {
        "workflows": [ci["name"]],
        "types": ["completed"],
        "branches": ["main"],
    }


def test_deploys_only_a_successful_ci_run_of_a_push_and_exactly_its_commit(
    workflow: dict[str, Any],
) -> None:
    condition = " ".join(workflow["jobs"]["deploy"]["if"].split())
    assert "github.event.workflow_run.conclusion == 'success'" in condition
    assert "github.event.workflow_run.event == 'push'" in condition
    assert "github.event_name == 'workflow_dispatch'" in condition
    checkout = workflow["jobs"]["deploy"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha || github.sha }}"


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


def test_only_azd_signs_in(workflow: dict[str, Any]) -> None:
    uses = [str(step.get("uses", "")) for step in workflow["jobs"]["deploy"]["steps"]]
    assert not [u for u in uses if u.startswith("azure/login")]


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
    needed = {"openai", "azure-identity", "azure-eventhub", "httpx", "azure-monitor-query"}
    text = (ROOT / "scripts" / "requirements-smoke.txt").read_text(encoding="utf-8")
    names = {
        re.split(r"[<>=\s]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert names == needed


# ---------------------------------------------------------------- settings reach the pipeline

# Variables main.parameters.json reads that the pipeline must not take from azure.yaml's list:
# azd pipeline config sets azd's own; azd fills AZURE_PRINCIPAL_ID in from the signed-in principal;
# the workflow fixes AZURE_PRINCIPAL_TYPE; the preprovision hook reads APIM_FUNCTION_KEY_SYNC from Azure.
AZD_OWN = {"AZURE_ENV_NAME", "AZURE_LOCATION"}
NOT_CARRIED = {"AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE", "APIM_FUNCTION_KEY_SYNC"}


def parameter_variables() -> set[str]:
    text = PARAMETERS.read_text(encoding="utf-8")
    return set(re.findall(r"\$\{([A-Z0-9_]+)(?:=[^}]*)?\}", text))


def test_every_setting_of_the_parameters_file_is_a_pipeline_variable() -> None:
    variables = yaml.safe_load(AZURE_YAML.read_text(encoding="utf-8"))["pipeline"]["variables"]
    assert len(variables) == len(set(variables))
    assert parameter_variables() - AZD_OWN - NOT_CARRIED == set(variables)


def test_every_pipeline_variable_is_mapped_into_the_deploy_job(workflow: dict[str, Any]) -> None:
    variables = yaml.safe_load(AZURE_YAML.read_text(encoding="utf-8"))["pipeline"]["variables"]
    env = workflow["jobs"]["deploy"]["env"]
    for name in [*variables, *AZD_OWN]:
        assert env.get(name) == "${{ vars." + name + " }}", name
    assert env["AZURE_PRINCIPAL_TYPE"] == "ServicePrincipal"
    assert "APIM_FUNCTION_KEY_SYNC" not in env


def test_azure_yaml_requires_an_azd_that_bundles_a_bicep_with_the_graph_extension() -> None:
    config = yaml.safe_load(AZURE_YAML.read_text(encoding="utf-8"))
    assert config["requiredVersions"]["azd"] == ">= 1.17.0"
