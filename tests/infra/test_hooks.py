"""The azd hooks (scripts/hooks/*.sh) run for real: sh, curl and a fake `azd` on PATH, against a fake
ARM / Microsoft Graph endpoint under uvicorn on 127.0.0.1. No `az` exists on their PATH (a stand-in
records any attempt), so these prove the deploy path needs azd alone, never prints a secret, retries
what time fixes and fails loudly on what it does not."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "scripts" / "hooks"
SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-dev"
APP = "func-api-abc"
APIM = "apim-abc"
NAMED_VALUE = "function-host-key"
HOST_KEY = "hostKeyValue0123456789abcdef_-=="
MASTER_KEY = "masterKeyValueNeverCopied0123=="
ARM_TOKEN = "arm-token-SECRET"
GRAPH_TOKEN = "graph-token-SECRET"
SECRETS = (HOST_KEY, MASTER_KEY, ARM_TOKEN, GRAPH_TOKEN)

pytestmark = pytest.mark.skipif(
    shutil.which("sh") is None or shutil.which("curl") is None, reason="needs sh and curl"
)

FAKE_AZD = r"""#!/bin/sh
# Stand-in for azd: `auth token` answers like azd 1.17+ with -o json, `env set` records the value.
printf '%s\n' "$*" >>"$FAKE_DIR/azd.log"
case "$1 $2" in
  "auth token")
    [ "$FAKE_AZD_SIGNED_IN" = 1 ] || { echo 'ERROR: not logged in, run `azd auth login` to login' >&2; exit 1; }
    case "$*" in
      *"-o json"*"--no-prompt"*) ;;
      *) echo "fake azd: expected -o json --no-prompt" >&2; exit 2 ;;
    esac
    case "$*" in
      *"--scope https://management.azure.com/.default"*) token=$FAKE_ARM_TOKEN ;;
      *"--scope https://graph.microsoft.com/.default"*) token=$FAKE_GRAPH_TOKEN ;;
      *) echo "fake azd: unexpected scope" >&2; exit 2 ;;
    esac
    printf '{\n  "token": "%s",\n  "expiresOn": "2030-01-01T00:00:00Z"\n}\n' "$token" ;;
  "env set") printf '%s=%s\n' "$3" "$4" >>"$FAKE_DIR/env" ;;
  *) echo "fake azd: unexpected $*" >&2; exit 2 ;;
esac
"""

FAKE_AZ = """#!/bin/sh
echo "$*" >>"$FAKE_DIR/az-was-called"
exit 1
"""


@dataclass
class FakeAzure:
    """ARM and Graph as the hooks see them; `answers` maps (METHOD, path regex) to a list of
    responses consumed in order (the last one repeats)."""

    answers: dict[tuple[str, str, str], list[tuple[int, Any]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def on(self, method: str, path: str, *responses: tuple[int, Any], query: str = "") -> None:
        """`query`: a text the decoded query string must contain (e.g. part of a $filter)."""
        self.answers[(method, path, query)] = list(responses)

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "authorization": request.headers.get("authorization"),
                "body": body,
            }
        )
        query = unquote(request.url.query)
        for (method, pattern, wanted), responses in self.answers.items():
            if (
                method == request.method
                and re.fullmatch(pattern, request.url.path)
                and wanted in query
            ):
                status, payload = responses.pop(0) if len(responses) > 1 else responses[0]
                if payload is None:
                    return Response(status_code=status)
                return JSONResponse(payload, status_code=status)
        return JSONResponse({"error": {"code": "NotFound", "message": "no such fake"}}, 404)

    def app(self) -> Starlette:
        methods = ["GET", "PUT", "POST", "DELETE", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    def calls(self, method: str, fragment: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and fragment in r["path"]]


@dataclass
class HookRun:
    done: subprocess.CompletedProcess[str]
    env_set: dict[str, str]
    azd_calls: list[str]
    az_called: bool


@pytest.fixture
def azure(serve_asgi: Callable[..., str]) -> tuple[FakeAzure, str]:
    fake = FakeAzure()
    return fake, serve_asgi(fake.app())


@pytest.fixture
def run_hook(tmp_path: Path, azure: tuple[FakeAzure, str]) -> Callable[..., HookRun]:
    _, base = azure
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {
        "azd": FAKE_AZD,
        "az": FAKE_AZ,
        "sleep": "#!/bin/sh\nexit 0\n",  # the hooks count the seconds they slept
    }.items():
        (bin_dir / name).write_text(text, encoding="utf-8")
        (bin_dir / name).chmod(0o755)

    def run(hook: str, signed_in: bool = True, **env: str) -> HookRun:
        for name in ("env", "azd.log"):
            (tmp_path / name).unlink(missing_ok=True)
        environ = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_DIR": str(tmp_path),
            "FAKE_AZD_SIGNED_IN": "1" if signed_in else "0",
            "FAKE_ARM_TOKEN": ARM_TOKEN,
            "FAKE_GRAPH_TOKEN": GRAPH_TOKEN,
            "AZD_HOOKS_ARM_ENDPOINT": base,
            "AZD_HOOKS_GRAPH_ENDPOINT": base,
            "AZURE_SUBSCRIPTION_ID": SUB,
            "AZURE_ENV_NAME": "dev",
            **env,
        }
        done = subprocess.run(
            ["sh", str(HOOKS / f"{hook}.sh")],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        env_file = tmp_path / "env"
        lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
        log = tmp_path / "azd.log"
        return HookRun(
            done=done,
            env_set=dict(line.split("=", 1) for line in lines),
            azd_calls=log.read_text(encoding="utf-8").splitlines() if log.exists() else [],
            az_called=(tmp_path / "az-was-called").exists(),
        )

    return run


def assert_no_secret_printed(run: HookRun) -> None:
    printed = run.done.stdout + run.done.stderr + "\n".join(run.azd_calls)
    for secret in SECRETS:
        assert secret not in printed
    assert not run.az_called


OUTPUTS = {
    "AZURE_RESOURCE_GROUP": RG,
    "AZURE_FUNCTION_NAME": APP,
    "APIM_NAME": APIM,
    "APIM_FUNCTION_KEY_NAMED_VALUE": NAMED_VALUE,
}
LISTKEYS = rf"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{APP}/host/default/listkeys"
NAMED_VALUE_PATH = (
    rf"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{APIM}"
    rf"/namedValues/{NAMED_VALUE}"
)
KEYS = {
    "masterKey": MASTER_KEY,
    "functionKeys": {"default": HOST_KEY},
    "systemKeys": {"durabletask_extension": "x"},
}


# ---------------------------------------------------------------- postdeploy (key mode)


def test_postdeploy_waits_for_the_host_then_writes_only_the_default_key(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    # Role propagation, then a host still starting, then a host without its key yet, then the keys.
    fake.on(
        "POST",
        LISTKEYS,
        (403, {"error": {"code": "AuthorizationFailed", "message": "no access yet"}}),
        (503, {"error": {"code": "ServiceUnavailable", "message": "host starting"}}),
        (200, {"masterKey": MASTER_KEY, "functionKeys": {}}),
        (200, KEYS),
    )
    fake.on("PUT", NAMED_VALUE_PATH, (201, {"name": NAMED_VALUE}))

    run = run_hook("postdeploy", **OUTPUTS)

    assert run.done.returncode == 0, run.done.stderr
    assert len(fake.calls("POST", "/listkeys")) == 4
    (put,) = fake.calls("PUT", "/namedValues/")
    assert put["query"] == "api-version=2024-05-01"
    assert put["authorization"] == f"Bearer {ARM_TOKEN}"
    assert json.loads(put["body"]) == {
        "properties": {
            "displayName": NAMED_VALUE,
            "secret": True,
            "value": HOST_KEY,
            "tags": ["function-app"],
        }
    }
    assert MASTER_KEY not in put["body"]
    assert run.env_set == {"APIM_FUNCTION_KEY_SYNC": "read"}
    assert (
        "auth token -o json --no-prompt --scope https://management.azure.com/.default"
        in (run.azd_calls[0])
    )
    assert_no_secret_printed(run)


def test_postdeploy_fails_loudly_when_the_key_never_comes(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("POST", LISTKEYS, (500, {"error": {"code": "InternalServerError", "message": "boom"}}))

    run = run_hook("postdeploy", AZD_HOOKS_RETRY_SECONDS="60", **OUTPUTS)

    assert run.done.returncode == 1
    assert f"could not read the host keys of {APP}" in run.done.stderr
    assert "InternalServerError" in run.done.stderr
    # 5 + 10 + 20 + 40 seconds of backoff (the fake sleep returns at once): five attempts in all.
    assert len(fake.calls("POST", "/listkeys")) == 5
    assert not fake.calls("PUT", "/namedValues/")
    assert run.env_set == {}
    assert_no_secret_printed(run)


def test_postdeploy_retries_the_default_ten_minutes(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("POST", LISTKEYS, (403, {"error": {"code": "AuthorizationFailed", "message": "x"}}))

    run = run_hook("postdeploy", **OUTPUTS)

    assert run.done.returncode == 1
    slept = re.findall(r"\((\d+)s of 600s spent\)", run.done.stderr)
    assert slept
    assert int(slept[-1]) >= 540


def test_postdeploy_gives_up_when_the_host_never_hands_out_a_default_key(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("POST", LISTKEYS, (200, {"masterKey": MASTER_KEY, "functionKeys": {}}))

    run = run_hook("postdeploy", AZD_HOOKS_RETRY_SECONDS="60", **OUTPUTS)

    assert run.done.returncode == 1
    assert f"{APP} has no default host key after 60s" in run.done.stderr
    # Every 15 s until the window is spent: 0, 15, 30, 45, 60.
    assert len(fake.calls("POST", "/listkeys")) == 5
    assert not fake.calls("PUT", "/namedValues/")
    assert_no_secret_printed(run)


def test_postdeploy_stops_at_once_on_an_error_time_cannot_fix(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("POST", LISTKEYS, (200, KEYS))
    fake.on(
        "PUT", NAMED_VALUE_PATH, (400, {"error": {"code": "ValidationError", "message": "bad"}})
    )

    run = run_hook("postdeploy", **OUTPUTS)

    assert run.done.returncode == 1
    assert len(fake.calls("PUT", "/namedValues/")) == 1
    assert "ValidationError" in run.done.stderr
    assert run.env_set == {}
    assert_no_secret_printed(run)


def test_postdeploy_needs_an_azd_sign_in(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    run = run_hook("postdeploy", signed_in=False, **OUTPUTS)
    assert run.done.returncode == 1
    assert "azd auth login" in run.done.stderr
    assert not fake.requests


def test_postdeploy_names_a_missing_output(run_hook: Callable[..., HookRun]) -> None:
    outputs = {k: v for k, v in OUTPUTS.items() if k != "APIM_NAME"}
    run = run_hook("postdeploy", **outputs)
    assert run.done.returncode == 1
    assert "APIM_NAME is not set" in run.done.stderr


def test_postdeploy_has_nothing_to_do_in_entra_mode(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    run = run_hook("postdeploy", APIM_FUNCTION_AUTH="entra", **OUTPUTS)
    assert run.done.returncode == 0, run.done.stderr
    assert not fake.requests
    assert run.env_set == {}


def test_a_bearer_token_is_never_sent_over_plain_http(run_hook: Callable[..., HookRun]) -> None:
    run = run_hook("postdeploy", AZD_HOOKS_ARM_ENDPOINT="http://management.example.com", **OUTPUTS)
    assert run.done.returncode == 1
    assert "https only" in run.done.stderr
    assert not run.azd_calls


# ---------------------------------------------------------------- preprovision (key mode)

RESOURCES = rf"/subscriptions/{SUB}/resourceGroups/{RG}/resources"
FUNCTIONS = (
    rf"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/sites/{APP}/functions"
)
SITE = {"value": [{"name": APP, "type": "Microsoft.Web/sites", "kind": "functionapp,linux"}]}
SERVICE = {"value": [{"name": APIM, "type": "Microsoft.ApiManagement/service"}]}
A_FUNCTION = {
    "value": [{"name": f"{APP}/healthz", "type": "Microsoft.Web/sites/functions", "properties": {}}]
}


@pytest.mark.parametrize(
    ("site", "functions", "service", "named_value", "expected"),
    [
        (SITE, A_FUNCTION, SERVICE, 200, "read"),
        (SITE, A_FUNCTION, {"value": []}, 404, "read"),
        (SITE, {"value": []}, SERVICE, 200, "keep"),
        (SITE, {"value": []}, SERVICE, 404, "create"),
        ({"value": []}, None, {"value": []}, 404, "create"),
    ],
    ids=["code-deployed", "code-deployed-no-apim", "no-code-key-exists", "no-named-value", "empty"],
)
def test_preprovision_tells_bicep_what_it_may_do_with_the_named_value(
    azure: tuple[FakeAzure, str],
    run_hook: Callable[..., HookRun],
    site: Any,
    functions: Any,
    service: Any,
    named_value: int,
    expected: str,
) -> None:
    fake, _ = azure
    fake.on("GET", RESOURCES, (200, site), query="tagName eq 'azd-service-name'")
    fake.on(
        "GET", RESOURCES, (200, service), query="resourceType eq 'Microsoft.ApiManagement/service'"
    )
    fake.on("GET", FUNCTIONS, (200, functions))
    fake.on("GET", NAMED_VALUE_PATH, (named_value, {"name": NAMED_VALUE}))

    run = run_hook("preprovision")

    assert run.done.returncode == 0, run.done.stderr
    assert run.env_set == {"APIM_FUNCTION_KEY_SYNC": expected}
    # Never the secret value: only the named value's metadata is read.
    assert not [r for r in fake.requests if "listValue" in r["path"] or r["method"] != "GET"]
    assert_no_secret_printed(run)


def test_preprovision_on_a_new_environment_finds_no_resource_group(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("GET", RESOURCES, (404, {"error": {"code": "ResourceGroupNotFound", "message": "x"}}))
    run = run_hook("preprovision")
    assert run.done.returncode == 0, run.done.stderr
    assert run.env_set == {"APIM_FUNCTION_KEY_SYNC": "create"}
    assert len(fake.calls("GET", "/resources")) == 2


def test_preprovision_never_guesses_when_it_cannot_look(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on(
        "GET", RESOURCES, (403, {"error": {"code": "AuthorizationFailed", "message": "denied"}})
    )
    run = run_hook("preprovision", AZD_HOOKS_RETRY_SECONDS="10")
    assert run.done.returncode == 1
    assert "AuthorizationFailed" in run.done.stderr
    assert run.env_set == {}  # Bicep keeps its default, `keep`: nothing is overwritten


def test_preprovision_rejects_an_unknown_mode(run_hook: Callable[..., HookRun]) -> None:
    run = run_hook("preprovision", APIM_FUNCTION_AUTH="Entra ID")
    assert run.done.returncode == 1
    assert "APIM_FUNCTION_AUTH must be 'key' or 'entra'" in run.done.stderr


# ---------------------------------------------------------------- Entra mode suffix and teardown


def test_preprovision_draws_the_app_registration_suffix_once(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    run = run_hook("preprovision", APIM_FUNCTION_AUTH="entra")
    assert run.done.returncode == 0, run.done.stderr
    assert re.fullmatch(r"[0-9a-f]{8}", run.env_set["ENTRA_APP_UNIQUE_SUFFIX"])
    again = run_hook("preprovision", APIM_FUNCTION_AUTH="entra", ENTRA_APP_UNIQUE_SUFFIX="0badcafe")
    assert again.done.returncode == 0
    assert again.env_set == {}
    assert not fake.requests


def test_a_pipeline_must_carry_the_suffix(run_hook: Callable[..., HookRun]) -> None:
    run = run_hook("preprovision", APIM_FUNCTION_AUTH="entra", GITHUB_ACTIONS="true")
    assert run.done.returncode == 1
    assert "ENTRA_APP_UNIQUE_SUFFIX" in run.done.stderr
    assert run.env_set == {}


APP_OBJECT_ID = "11111111-2222-3333-4444-555555555555"


def test_postdown_deletes_and_purges_the_app_registration(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on("DELETE", rf"/v1.0/applications/{APP_OBJECT_ID}", (204, None))
    fake.on(
        "DELETE",
        rf"/v1.0/directory/deletedItems/{APP_OBJECT_ID}",
        (429, {"error": {"code": "TooManyRequests", "message": "later"}}),
        (204, None),
    )

    run = run_hook(
        "postdown",
        APIM_FUNCTION_AUTH="entra",
        ENTRA_APP_OBJECT_ID=APP_OBJECT_ID,
        ENTRA_APP_UNIQUE_SUFFIX="0badcafe",
    )

    assert run.done.returncode == 0, run.done.stderr
    assert [(r["method"], r["path"]) for r in fake.requests] == [
        ("DELETE", f"/v1.0/applications/{APP_OBJECT_ID}"),
        ("DELETE", f"/v1.0/directory/deletedItems/{APP_OBJECT_ID}"),
        ("DELETE", f"/v1.0/directory/deletedItems/{APP_OBJECT_ID}"),
    ]
    assert {r["authorization"] for r in fake.requests} == {f"Bearer {GRAPH_TOKEN}"}
    assert run.env_set["APIM_FUNCTION_KEY_SYNC"] == "create"
    assert re.fullmatch(r"[0-9a-f]{8}", run.env_set["ENTRA_APP_UNIQUE_SUFFIX"])
    assert run.env_set["ENTRA_APP_UNIQUE_SUFFIX"] != "0badcafe"
    assert_no_secret_printed(run)


def test_postdown_says_what_remains_when_graph_refuses(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    fake.on(
        "DELETE",
        rf"/v1.0/applications/{APP_OBJECT_ID}",
        (
            403,
            {
                "error": {
                    "code": "Authorization_RequestDenied",
                    "message": "Insufficient privileges",
                }
            },
        ),
    )
    run = run_hook(
        "postdown",
        APIM_FUNCTION_AUTH="entra",
        ENTRA_APP_OBJECT_ID=APP_OBJECT_ID,
        AZD_HOOKS_RETRY_SECONDS="10",
    )
    assert run.done.returncode == 1
    assert "Authorization_RequestDenied" in run.done.stderr
    assert "Entra admin center" in run.done.stderr


def test_postdown_in_key_mode_touches_no_directory(
    azure: tuple[FakeAzure, str], run_hook: Callable[..., HookRun]
) -> None:
    fake, _ = azure
    run = run_hook("postdown")
    assert run.done.returncode == 0, run.done.stderr
    assert not fake.requests
    assert run.env_set == {"APIM_FUNCTION_KEY_SYNC": "create"}


# ---------------------------------------------------------------- the deploy path never calls az

DEPLOY_PATH = [
    ROOT / "azure.yaml",
    ROOT / ".github" / "workflows" / "azure-dev.yml",
    *sorted(HOOKS.glob("*")),
]


@pytest.mark.parametrize("path", DEPLOY_PATH, ids=lambda p: p.name)
def test_no_file_in_the_deploy_path_invokes_the_azure_cli(path: Path) -> None:
    code = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    calls = [line for line in code if re.search(r"(^|[\s;|&($`'\"])az(\s|$)", line)]
    assert calls == []
    assert not [line for line in code if "azure/login" in line]


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
@pytest.mark.parametrize("hook", sorted(HOOKS.glob("*.sh")), ids=lambda p: p.name)
def test_every_posix_hook_parses(shell: str, hook: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    subprocess.run([shell, "-n", str(hook)], check=True, timeout=30)


def test_no_hook_traces_its_commands() -> None:
    for hook in HOOKS.glob("*"):
        text = hook.read_text(encoding="utf-8")
        assert "set -x" not in text, hook
        assert "Set-PSDebug" not in text, hook
