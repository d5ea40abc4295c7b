"""How APIM authenticates to the Function, read from the templates: key mode never provisions a
placeholder over a working key and keeps the key inside one module; Entra mode is fully wired
(app registration, authsettingsV2, the managed-identity policy, the proxy's settings)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.infra import bicep_text as bt

MAIN = bt.INFRA / "main.bicep"
MODULES = bt.INFRA / "modules"
API = MODULES / "apim-api.bicep"
KEY_MODULE = MODULES / "apim-function-key.bicep"
ENTRA = MODULES / "entra-app.bicep"
FUNCTION_APP = MODULES / "functionapp.bicep"
POLICY = MODULES / "apim-openai-api-policy.xml"
PARAMETERS = bt.INFRA / "main.parameters.json"
HOOKS = bt.INFRA.parent / "scripts" / "hooks"


def module_block(main: str, symbol: str) -> tuple[str, str]:
    """(the declaration line, the body) of `module <symbol> ...`."""
    m = re.search(
        rf"^module\s+{symbol}\s+'[^']+'\s*=\s*(?:if\s*\((?P<cond>[^)]*)\)\s*)?\{{", main, re.M
    )
    assert m, f"module {symbol} not found"
    return m.group("cond") or "", main[m.end() : bt.matching_brace(main, m.end() - 1)]


def resource(path: Path, symbol: str) -> tuple[str, bt.Resource]:
    text = bt.read(path)
    m = re.search(
        rf"^resource\s+{symbol}\s+'[^']+'\s*=\s*(?:if\s*\((?P<cond>.*)\)\s*)?\{{", text, re.M
    )
    assert m, f"resource {symbol} not found in {path.name}"
    (found,) = [r for r in bt.resources(text, path) if r.symbol == symbol]
    return m.group("cond") or "", found


# ---------------------------------------------------------------- key mode


def test_the_parameters_default_to_key_mode_and_to_keeping_the_named_value() -> None:
    main = bt.read(MAIN)
    assert bt.param_default(main, "apimFunctionAuth") == "'key'"
    assert bt.param_default(main, "functionKeySync") == "'keep'"
    params = json.loads(PARAMETERS.read_text(encoding="utf-8"))["parameters"]
    assert params["apimFunctionAuth"]["value"] == "${APIM_FUNCTION_AUTH=key}"
    # Without the hook's verdict Bicep touches nothing.
    assert params["functionKeySync"]["value"] == "${APIM_FUNCTION_KEY_SYNC=keep}"
    assert params["entraAppUniqueSuffix"]["value"] == "${ENTRA_APP_UNIQUE_SUFFIX=}"


def test_no_placeholder_is_provisioned_over_an_existing_key() -> None:
    condition, placeholder = resource(API, "functionKeyPlaceholder")
    assert bt.unquote(bt.get_path(placeholder.body, "properties.value")) == (
        "placeholder-replaced-by-the-postdeploy-hook"
    )
    assert condition.replace(" ", "") == "keyMode&&createFunctionKeyPlaceholder"
    assert bt.param_default(bt.read(API), "createFunctionKeyPlaceholder") == "false"
    _, api = module_block(bt.read(MAIN), "apimApi")
    assert "createFunctionKeyPlaceholder: functionKeySync == 'create'" in api
    # Only the hook sets `create`, and only after the named value was found missing (404).
    hook = (HOOKS / "preprovision.sh").read_text(encoding="utf-8")
    assert 'if [ "$status" = 404 ]; then echo create; else echo keep; fi' in hook
    # No other named value in the API module.
    names = [r.symbol for r in bt.resources(bt.read(API)) if r.type.endswith("/namedValues")]
    assert names == ["functionKeyPlaceholder"]


def test_the_key_is_read_only_once_code_is_deployed_and_never_leaves_its_module() -> None:
    condition, _ = module_block(bt.read(MAIN), "apimFunctionKey")
    assert condition.replace(" ", "") == "!entraMode&&functionKeySync=='read'"
    text = bt.read(KEY_MODULE)
    (named_value,) = [r for r in bt.resources(text) if r.type.endswith("/namedValues")]
    assert bt.get_path(named_value.body, "properties.secret") == "true"
    value = bt.get_path(named_value.body, "properties.value") or ""
    assert re.fullmatch(
        r"listKeys\('\$\{functionApp\.id\}/host/default', '[\d-]+'\)\.functionKeys\.default", value
    )
    assert "masterKey" not in text
    # The module's outputs are names; no other file reads a key, so none can pass one on.
    assert [o.value for o in bt.outputs(text)] == ["functionKey.name"]
    for path in bt.bicep_files():
        if path != KEY_MODULE:
            assert not re.search(r"\blist\w*\(|\.list\w*\(", bt.read(path)), path.name


def test_the_api_waits_for_the_named_value_the_backend_refers_to() -> None:
    _, api = module_block(bt.read(MAIN), "apimApi")
    assert re.search(r"dependsOn:\s*\[\s*rbac\s+apimFunctionKey\s*\]", api)
    assert "functionKeyNamedValueName: functionKeyNamedValueName" in api
    _, key = module_block(bt.read(MAIN), "apimFunctionKey")
    assert "namedValueName: functionKeyNamedValueName" in key


def test_key_mode_sends_the_key_and_no_managed_identity_token() -> None:
    text = bt.read(API)
    assert re.search(r"credentials:\s*keyMode\s*\?\s*hostKeyCredentials\s*:\s*null", text)
    assert re.search(r"var backendAuthentication = keyMode \? '<!--[^']*-->' : ", text)


# ---------------------------------------------------------------- Entra mode


def test_the_app_registration_module_uses_the_pinned_graph_alias() -> None:
    text = ENTRA.read_text(encoding="utf-8")
    assert re.search(r"^extension microsoftGraphV1$", text, re.M)
    config = bt.INFRA / "bicepconfig.json"
    from tests.infra.test_bicepconfig import load_jsonc

    assert load_jsonc(config)["extensions"] == {
        "microsoftGraphV1": "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
    }
    # Graph resources live in this module only.
    for path in bt.bicep_files():
        if path != ENTRA:
            assert "Microsoft.Graph/" not in bt.read(path), path.name


def test_the_app_registration_is_a_secretless_v2_api_with_a_per_environment_unique_name() -> None:
    text = bt.read(ENTRA)
    (app,) = [r for r in bt.resources(text) if r.type == "Microsoft.Graph/applications"]
    assert app.api_version == "v1.0"
    assert bt.get_path(app.body, "api.requestedAccessTokenVersion") == "2"
    assert bt.unquote(bt.get_path(app.body, "signInAudience")) == "AzureADMyOrg"
    assert bt.get_path(app.body, "uniqueName") == "uniqueName"
    for absent in ("passwordCredentials", "keyCredentials", "web", "spa", "publicClient"):
        assert absent not in app.properties, absent
    (sp,) = [r for r in bt.resources(text) if r.type == "Microsoft.Graph/servicePrincipals"]
    assert bt.get_path(sp.body, "appId") == "app.appId"
    condition, entra = module_block(bt.read(MAIN), "entraApp")
    assert condition == "entraMode"
    assert "uniqueName: 'aoai-usage-proxy-${environmentName}-${entraAppUniqueSuffix}'" in entra


def test_easy_auth_requires_a_token_for_the_app_from_apims_identity_only() -> None:
    condition, auth = resource(FUNCTION_APP, "authSettings")
    assert condition == "inboundAuth == 'entra'"
    assert bt.unquote(auth.properties["name"]) == "authsettingsV2"
    body = auth.body
    expected = {
        "properties.platform.enabled": "true",
        "properties.globalValidation.requireAuthentication": "true",
        "properties.globalValidation.unauthenticatedClientAction": "'Return401'",
        "properties.identityProviders.azureActiveDirectory.enabled": "true",
        "properties.identityProviders.azureActiveDirectory.registration.clientId": "entraAppId",
        "properties.identityProviders.azureActiveDirectory.registration.openIdIssuer": (
            "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
        ),
        "properties.login.tokenStore.enabled": "false",
    }
    for path, value in expected.items():
        assert bt.get_path(body, path) == value, path
    assert re.findall(
        r"'([^']*)'", bt.get_path(body, "properties.globalValidation.excludedPaths") or ""
    ) == ["/healthz"]
    validation = "properties.identityProviders.azureActiveDirectory.validation"
    assert re.findall(r"\w+", bt.get_path(body, f"{validation}.allowedAudiences") or "") == [
        "entraAppId"
    ]
    allowed = bt.get_path(body, f"{validation}.defaultAuthorizationPolicy.allowedApplications")
    assert re.findall(r"\w+", allowed or "") == ["allowedCallerClientId"]
    _, function_app = module_block(bt.read(MAIN), "functionApp")
    # The identity's client id, not its principal id.
    assert "allowedCallerClientId: entraMode ? apimIdentity.outputs.clientId : ''" in function_app
    assert "entraAppId: entraMode ? entraApp.outputs.appId : ''" in function_app
    assert "inboundAuth: apimFunctionAuth" in function_app


def test_the_proxy_is_told_the_mode_and_the_one_caller_it_accepts() -> None:
    (settings,) = [r for r in bt.resources(bt.read(FUNCTION_APP)) if r.symbol == "appSettings"]
    assert bt.get_path(settings.body, "properties.PROXY_INBOUND_AUTH") == "inboundAuth"
    assert (
        bt.get_path(settings.body, "properties.PROXY_ALLOWED_CALLER_CLIENT_ID")
        == "allowedCallerClientId"
    )


def rendered_policy(entra: bool) -> ET.Element:
    """The policy as apim-api.bicep renders it (its replace() of the marker), parsed."""
    text = bt.read(API)
    marker = re.search(r"replace\(loadTextContent\('apim-openai-api-policy.xml'\), '([^']+)'", text)
    assert marker
    element = re.search(r"var managedIdentityAuthentication = '([^']+)'", text)
    assert element
    authentication = (
        element.group(1)
        .replace("${entraAppId}", "APP-ID")
        .replace("${identityClientId}", "CLIENT-ID")
    )
    xml = POLICY.read_text(encoding="utf-8")
    assert xml.count(marker.group(1)) == 1
    return ET.fromstring(xml.replace(marker.group(1), authentication if entra else ""))


def test_entra_mode_policy_authenticates_with_the_managed_identity_after_the_header_deletes() -> (
    None
):
    inbound = rendered_policy(entra=True).find("inbound")
    assert inbound is not None
    children = list(inbound)
    (auth,) = [c for c in children if c.tag == "authentication-managed-identity"]
    assert auth.attrib == {"resource": "APP-ID", "client-id": "CLIENT-ID"}
    position = children.index(auth)
    deletes = [
        i
        for i, c in enumerate(children)
        if c.tag == "set-header" and c.get("exists-action") == "delete"
    ]
    names = {children[i].get("name", "").lower() for i in deletes}
    assert {"authorization", "x-functions-key", "x-ms-client-principal"} <= names
    assert max(deletes) < position
    assert rendered_policy(entra=False).find(".//authentication-managed-identity") is None


def test_the_app_registration_ids_are_outputs_for_the_postdown_hook() -> None:
    outputs = {o.name: o.value for o in bt.outputs(bt.read(MAIN))}
    assert outputs["ENTRA_APP_OBJECT_ID"] == "entraMode ? entraApp.outputs.objectId : ''"
    assert outputs["ENTRA_APP_ID"] == "entraMode ? entraApp.outputs.appId : ''"


@pytest.mark.parametrize("hook", ["preprovision", "postdeploy", "postdown"])
def test_every_posix_hook_has_a_pwsh_twin(hook: str) -> None:
    assert (HOOKS / f"{hook}.ps1").is_file()
    text = (HOOKS / f"{hook}.ps1").read_text(encoding="utf-8")
    assert '. "$PSScriptRoot/lib.ps1"' in text
    # The key is never written to the console.
    for message in re.findall(r'(?:Write-(?:Host|Output|Log)|Stop-Hook)\s+"([^"]*)"', text):
        assert not re.search(r"\$(key|body|auth|keys|token)\b", message), message
