"""The templates are keyless, wired to the settings contract, and grant every role the code needs.

Each rule runs on infra/ as committed (no problem allowed) and on a copy altered to break it
(the problem must be reported), so none of these tests passes by construction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.infra import bicep_text as bt
from tests.infra import posture

ROOT = bt.INFRA.parent
RBAC = bt.INFRA / "modules" / "rbac.bicep"
FUNCTION_APP = bt.INFRA / "modules" / "functionapp.bicep"


@pytest.fixture(scope="module")
def templates() -> dict[Path, str]:
    files = {p: p.read_text(encoding="utf-8") for p in bt.bicep_files()}
    assert files, "no Bicep files under infra/"
    return files


@pytest.fixture(scope="module")
def configuration_doc() -> str:
    return (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")


def _replace(files: dict[Path, str], path: Path, old: str, new: str) -> dict[Path, str]:
    assert old in files[path], f"{old!r} not in {path.name}: update this test with the template"
    return {**files, path: files[path].replace(old, new, 1)}


def _module(name: str) -> Path:
    return bt.INFRA / "modules" / name


# ---------------------------------------------------------------- local auth


def test_every_resource_with_a_local_auth_switch_has_it_off(templates: dict[Path, str]) -> None:
    assert posture.local_auth_problems(templates) == []


@pytest.mark.parametrize(
    ("resource_type", "module"),
    [
        ("Microsoft.CognitiveServices/accounts", "openai.bicep"),
        ("Microsoft.EventHub/namespaces", "eventhubs.bicep"),
        ("Microsoft.Insights/components", "monitoring.bicep"),
        ("Microsoft.OperationalInsights/workspaces", "monitoring.bicep"),
        ("Microsoft.Storage/storageAccounts", "storage.bicep"),
    ],
)
def test_each_keyed_service_is_in_the_template_with_its_switch_stated(
    templates: dict[Path, str], resource_type: str, module: str
) -> None:
    path = _module(module)
    key, wanted = posture.LOCAL_AUTH_SWITCHES[resource_type]
    declared = [r for r in bt.resources(bt.read(path)) if r.type == resource_type]
    assert declared, f"{resource_type} is not declared in {module}"
    assert all(bt.get_path(r.body, key) == wanted for r in declared)


@pytest.mark.parametrize(
    ("module", "old", "new"),
    [
        ("openai.bicep", "disableLocalAuth: true", "disableLocalAuth: false"),
        ("eventhubs.bicep", "disableLocalAuth: true", "disableLocalAuth: false"),
        ("monitoring.bicep", "DisableLocalAuth: true", "DisableLocalAuth: false"),
        ("monitoring.bicep", "      disableLocalAuth: true", "      disableLocalAuth: false"),
        ("storage.bicep", "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
        # Commented out = left to the provider default, which is "keys on".
        ("openai.bicep", "disableLocalAuth: true", "// disableLocalAuth: true"),
        ("storage.bicep", "allowSharedKeyAccess: false", "// allowSharedKeyAccess: false"),
        ("functionapp.bicep", "name: 'scm'", "name: 'scm-not'"),
    ],
)
def test_turning_a_key_path_on_is_reported(
    templates: dict[Path, str], module: str, old: str, new: str
) -> None:
    altered = _replace(templates, _module(module), old, new)
    assert posture.local_auth_problems(altered) != []


# ---------------------------------------------------------------- settings contract


def test_every_bicep_row_of_the_settings_contract_is_an_app_setting(
    templates: dict[Path, str], configuration_doc: str
) -> None:
    rows = posture.configuration_rows(configuration_doc)
    assert any(r["azure"] == "bicep" for r in rows.values())
    assert posture.app_setting_problems(configuration_doc, templates) == []


def test_the_contract_names_the_settings_the_code_needs_in_azure(configuration_doc: str) -> None:
    bicep_rows = {
        name
        for name, row in posture.configuration_rows(configuration_doc).items()
        if row["azure"] == "bicep"
    }
    assert {
        "AZURE_CLIENT_ID",
        "AZURE_OPENAI_ENDPOINT",
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
        "EVENTHUB_NAME",
        "DEADLETTER_CONTAINER",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "PYTHON_ENABLE_INIT_INDEXING",
    } <= bicep_rows


def test_a_documented_setting_missing_from_bicep_is_reported(
    templates: dict[Path, str], configuration_doc: str
) -> None:
    altered = _replace(templates, FUNCTION_APP, "    EVENTHUB_NAME: eventHubName\n", "")
    problems = posture.app_setting_problems(configuration_doc, altered)
    assert any(p.startswith("EVENTHUB_NAME:") for p in problems)


def test_a_new_bicep_row_in_the_contract_is_reported_until_bicep_sets_it(
    templates: dict[Path, str], configuration_doc: str
) -> None:
    doc = configuration_doc + "| `NEW_SETTING` | unset | bicep | proxy | test row |\n"
    problems = posture.app_setting_problems(doc, templates)
    assert any(p.startswith("NEW_SETTING:") for p in problems)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    DEADLETTER_CONTAINER:", "    UNDOCUMENTED_SETTING: 'x'\n    DEADLETTER_CONTAINER:"),
        (
            "    DEADLETTER_CONTAINER:",
            "    FUNCTIONS_WORKER_RUNTIME: 'python'\n    DEADLETTER_CONTAINER:",
        ),
        ("'managedidentity'", "'connectionstring'"),
        ("Authorization=AAD", "Authorization=Key"),
        ("    AZURE_CLIENT_ID: identityClientId", "    AZURE_CLIENT_ID: otherClientId"),
    ],
)
def test_a_wrong_app_setting_is_reported(
    templates: dict[Path, str], configuration_doc: str, old: str, new: str
) -> None:
    altered = _replace(templates, FUNCTION_APP, old, new)
    assert posture.app_setting_problems(configuration_doc, altered) != []


def test_dead_letter_container_default_matches_the_contract(configuration_doc: str) -> None:
    row = posture.configuration_rows(configuration_doc)["DEADLETTER_CONTAINER"]
    main = bt.read(bt.INFRA / "main.bicep")
    assert (
        bt.param_default(main, "deadLetterContainerName") == "'" + row["default"].strip("`") + "'"
    )
    # The storage module creates the container the setting names.
    storage = bt.resources(bt.read(_module("storage.bicep")))
    containers = {
        r.properties.get("name")
        for r in storage
        if r.type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    }
    assert {"deploymentContainerName", "deadLetterContainerName"} <= containers


# ---------------------------------------------------------------- roles


def test_every_role_the_code_needs_is_assigned() -> None:
    assert posture.role_problems(RBAC.read_text(encoding="utf-8")) == []


def test_role_assignments_live_only_in_rbac(templates: dict[Path, str]) -> None:
    assert posture.role_assignments_outside_rbac(templates) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Data Sender on the namespace instead of the hub: not what the code is granted.
        (
            "scope: eventHub\n  name: guid(eventHub.id, functionPrincipalId, roles.eventHubsDataSender)",
            "scope: eventHubNamespace\n  name: guid(eventHubNamespace.id, functionPrincipalId, "
            "roles.eventHubsDataSender)",
            "missing role assignment: functionPrincipalId -> Azure Event Hubs Data Sender",
        ),
        (
            "roles.monitoringMetricsPublisher)\n    principalId: functionPrincipalId",
            "roles.openAiUser)\n    principalId: functionPrincipalId",
            "missing role assignment: functionPrincipalId -> Monitoring Metrics Publisher",
        ),
        (
            "name: guid(storage.id, functionPrincipalId, roles.storageBlobDataOwner)",
            "name: guid(functionPrincipalId, roles.storageBlobDataOwner)",
            "name must be guid(scope, principal, role)",
        ),
        (
            "    principalType: deployerPrincipalType\n",
            "",
            "principalType is not set",
        ),
        (
            "// Storage Blob Data Owner:",
            "// Storage Blob Data Contributor:",
            "no comment naming it 'Storage Blob Data Owner'",
        ),
    ],
)
def test_a_missing_or_malformed_role_assignment_is_reported(
    old: str, new: str, expected: str
) -> None:
    rbac = RBAC.read_text(encoding="utf-8")
    assert old in rbac
    problems = posture.role_problems(rbac.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_main_grants_the_roles_to_the_identity_the_app_runs_as() -> None:
    main = bt.read(bt.INFRA / "main.bicep")
    assert "functionPrincipalId: identity.outputs.principalId" in main
    assert "identityId: identity.outputs.id" in main
    assert "identityClientId: identity.outputs.clientId" in main
    assert "deployerPrincipalType: principalType" in main


# ---------------------------------------------------------------- outputs


def test_no_output_carries_a_secret(templates: dict[Path, str]) -> None:
    assert posture.secret_output_problems(templates) == []


@pytest.mark.parametrize(
    "line",
    [
        "output AZURE_CLIENT_ID string = identity.outputs.clientId",
        "output STORAGE_KEY string = 'x'",
        "output X string = storage.listKeys().keys[0].value",
        "output Y string = 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b'",
    ],
)
def test_a_secret_output_is_reported(templates: dict[Path, str], line: str) -> None:
    main = bt.INFRA / "main.bicep"
    altered = {**templates, main: templates[main] + "\n" + line + "\n"}
    assert posture.secret_output_problems(altered) != []


def test_a_secure_param_in_an_output_is_reported(templates: dict[Path, str]) -> None:
    main = bt.INFRA / "main.bicep"
    extra = "\n@secure()\nparam hostKey string\noutput HOST string = hostKey\n"
    assert posture.secret_output_problems({main: templates[main] + extra}) != []


def test_main_outputs_what_azd_and_local_runs_read() -> None:
    names = {o.name for o in bt.outputs(bt.read(bt.INFRA / "main.bicep"))}
    assert {
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
        "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
        "EVENTHUB_NAME",
        "AZURE_FUNCTION_NAME",
        "SERVICE_API_URI",
        "AZURE_FUNCTION_IDENTITY_CLIENT_ID",
    } <= names
