"""A smoke test whose usage records have not landed: a warning on an environment's first deployment
(the landing's roles were younger than 30 minutes when the wait began, read from ARM), a failure
afterwards; and the deploy workflow's step, run by bash with a stand-in `python`, turns that warning
into a `::warning::` annotation and every other non-zero status into a failed job."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import httpx
import pytest
import yaml
from azure.core.credentials import AccessToken
from azure.identity import AzureCliCredential
from scripts import smoke_test as st
from tests.infra.test_apim_smoke_test import ENV as SMOKE_ENV

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "azure-dev.yml"
ENV = {
    **SMOKE_ENV,
    "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": "fn-principal",
    "AZURE_PRINCIPAL_ID": "deployer-principal",
}
SETTINGS = st.Settings.from_env(ENV)
WAIT_BEGAN = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)
ROLES_URL = (
    "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000001"
    "/resourceGroups/rg-dev/providers/Microsoft.Authorization/roleAssignments"
)


def assignments(*created_on: str, next_link: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {
        "value": [{"properties": {"createdOn": when, "principalId": "x"}} for when in created_on]
    }
    if next_link:
        body["nextLink"] = next_link
    return httpx.Response(200, json=body, request=httpx.Request("GET", ROLES_URL))


def arm(*responses: httpx.Response) -> tuple[Any, Any]:
    http = create_autospec(httpx.Client, instance=True)
    http.get.side_effect = list(responses)
    credential = create_autospec(AzureCliCredential, instance=True)
    credential.get_token.return_value = AccessToken("arm-token", 0)
    return http, credential


# ---------------------------------------------------------------- the age of the landing's roles


def test_the_newest_role_of_the_function_and_the_deployer_is_read_from_arm() -> None:
    next_page = f"{ROLES_URL}?$skipToken=abc&api-version=2022-04-01"
    http, credential = arm(
        assignments("2026-11-01T08:00:00.1234567Z", next_link=next_page),
        assignments("2026-12-06T10:40:00.5Z"),  # the Function's DCR role, just created
        assignments("2026-12-06T10:41:30Z"),  # the deployer's Log Analytics Reader
    )
    newest = st.newest_landing_role(http, credential, SETTINGS)

    assert newest == datetime(2026, 12, 6, 10, 41, 30, tzinfo=UTC)
    credential.get_token.assert_called_once_with("https://management.azure.com/.default")
    calls = http.get.call_args_list
    assert [c.args[0] for c in calls] == [ROLES_URL, next_page, ROLES_URL]
    assert calls[0].kwargs["params"] == {
        "$filter": "principalId eq 'fn-principal'",
        "api-version": "2022-04-01",
    }
    assert calls[1].kwargs["params"] is None  # the next link already carries the query
    assert calls[2].kwargs["params"]["$filter"] == "principalId eq 'deployer-principal'"
    assert {c.kwargs["headers"]["Authorization"] for c in calls} == {"Bearer arm-token"}


def test_without_the_deployer_only_the_function_identity_is_read() -> None:
    settings = st.Settings.from_env({**ENV, "AZURE_PRINCIPAL_ID": ""})
    http, credential = arm(assignments("2026-12-06T10:40:00"))  # no offset: ARM's times are UTC
    assert st.newest_landing_role(http, credential, settings) == datetime(
        2026, 12, 6, 10, 40, tzinfo=UTC
    )
    assert http.get.call_count == 1


@pytest.mark.parametrize(
    ("env", "responses", "reason"),
    [
        ({"AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID": ""}, [], "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID"),
        ({"AZURE_PRINCIPAL_ID": ""}, [assignments()], "no role assignment"),
    ],
)
def test_an_age_that_cannot_be_read_is_an_error_not_a_first_deployment(
    env: dict[str, str], responses: list[httpx.Response], reason: str
) -> None:
    http, credential = arm(*responses)
    with pytest.raises(st.SmokeTestError, match=reason):
        st.newest_landing_role(http, credential, st.Settings.from_env({**ENV, **env}))


# ---------------------------------------------------------------- the verdict


def test_records_missing_while_the_roles_were_new_are_a_first_deployment_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    newest = WAIT_BEGAN - timedelta(minutes=12)
    assert st.judge_not_landed(newest, WAIT_BEGAN) == st.EXIT_NOT_LANDED_NEW_ROLES == 3
    out = capsys.readouterr().out
    assert "12 minutes old" in out
    assert "first deployment" in out
    assert "FAIL" not in out


def test_records_missing_with_roles_older_than_the_propagation_time_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    newest = WAIT_BEGAN - st.ROLE_PROPAGATION
    assert timedelta(minutes=30) == st.ROLE_PROPAGATION  # docs/usage-analytics.md
    assert st.judge_not_landed(newest, WAIT_BEGAN) == st.EXIT_NOT_LANDED == 2
    assert "smoke test: FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(403, request=httpx.Request("GET", ROLES_URL)),
        httpx.ConnectError("ARM unreachable"),
        httpx.Response(
            200, json={"value": [{"properties": {}}]}, request=httpx.Request("GET", ROLES_URL)
        ),
        assignments("not a date"),
    ],
)
def test_when_arm_cannot_say_the_timeout_fails(
    failure: httpx.Response | Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    http, credential = arm(failure)  # type: ignore[arg-type]
    status = st.landing_timeout_status(http, credential, SETTINGS, WAIT_BEGAN)
    assert status == st.EXIT_NOT_LANDED
    assert "cannot read the age" in capsys.readouterr().out


def test_a_young_role_read_from_arm_gives_the_warning_status() -> None:
    http, credential = arm(assignments("2026-12-06T10:55:00Z"), assignments("2026-10-01T00:00:00Z"))
    status = st.landing_timeout_status(http, credential, SETTINGS, WAIT_BEGAN)
    assert status == st.EXIT_NOT_LANDED_NEW_ROLES


# ---------------------------------------------------------------- the deploy workflow's step


def smoke_step_script() -> str:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    steps = workflow["jobs"]["deploy"]["steps"]
    (step,) = [s for s in steps if "python scripts/smoke_test.py" in str(s.get("run", ""))]
    assert "shell" not in step  # GitHub's default bash: bash --noprofile --norc -eo pipefail
    return str(step["run"])


@pytest.mark.parametrize(
    ("smoke_status", "job_status", "warned"),
    [(0, 0, False), (st.EXIT_NOT_LANDED_NEW_ROLES, 0, True), (2, 2, False), (1, 1, False)],
)
def test_the_workflow_warns_only_for_a_first_deployment_and_fails_otherwise(
    tmp_path: Path, smoke_status: int, job_status: int, warned: bool
) -> None:
    calls = tmp_path / "calls"
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    # Stands in for python: pip succeeds, the smoke test exits with the status under test.
    python.write_text(
        '#!/bin/sh\necho "$*" >> "$CALLS"\n[ "$1" = "-m" ] && exit 0\nexit "$SMOKE_STATUS"\n'
    )
    python.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(smoke_step_script())
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env={
            "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
            "CALLS": str(calls),
            "SMOKE_STATUS": str(smoke_status),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == job_status, done.stderr
    assert calls.read_text().splitlines()[-1] == "scripts/smoke_test.py"
    annotations = [line for line in done.stdout.splitlines() if line.startswith("::warning")]
    assert bool(annotations) == warned
    if warned:
        assert "first deployment" in annotations[0].lower()
