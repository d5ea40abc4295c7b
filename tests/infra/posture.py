"""The security posture and wiring rules the templates must follow, as pure checks.

Each function takes template text (and docs text) and returns a list of problems, empty when
the rule holds. The tests run them on infra/ (expecting no problem) and on altered copies
(expecting the problem), so a check that cannot fail is itself caught.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from tests.infra import bicep_text as bt

# Resource types with a switch that turns key/shared-secret auth on or off, and the value that
# keeps it off. Sources: azure-facts.md "Local auth switches" and each type's template reference.
LOCAL_AUTH_SWITCHES: dict[str, tuple[str, str]] = {
    "Microsoft.CognitiveServices/accounts": ("properties.disableLocalAuth", "true"),
    "Microsoft.EventHub/namespaces": ("properties.disableLocalAuth", "true"),
    "Microsoft.ServiceBus/namespaces": ("properties.disableLocalAuth", "true"),
    "Microsoft.Insights/components": ("properties.DisableLocalAuth", "true"),
    "Microsoft.OperationalInsights/workspaces": ("properties.features.disableLocalAuth", "true"),
    "Microsoft.Storage/storageAccounts": ("properties.allowSharedKeyAccess", "false"),
    "Microsoft.Search/searchServices": ("properties.disableLocalAuth", "true"),
    "Microsoft.DocumentDB/databaseAccounts": ("properties.disableLocalAuth", "true"),
    "Microsoft.AppConfiguration/configurationStores": ("properties.disableLocalAuth", "true"),
    "Microsoft.SignalRService/signalR": ("properties.disableLocalAuth", "true"),
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": ("properties.allow", "false"),
}

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ROLE_NAMES: dict[str, str] = {
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "73c42c96-874c-492b-b04d-ab87d138a893": "Log Analytics Reader",
}
_ROLE_ID = {name: guid for guid, name in ROLE_NAMES.items()}

# (principal param of rbac.bicep, role, type of the scope) the code needs.
REQUIRED_ROLES: list[tuple[str, str, str]] = [
    (
        "functionPrincipalId",
        "Cognitive Services OpenAI User",
        "Microsoft.CognitiveServices/accounts",
    ),
    (
        "functionPrincipalId",
        "Azure Event Hubs Data Sender",
        "Microsoft.EventHub/namespaces/eventhubs",
    ),
    ("functionPrincipalId", "Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    ("functionPrincipalId", "Monitoring Metrics Publisher", "Microsoft.Insights/components"),
    (
        "deployerPrincipalId",
        "Cognitive Services OpenAI User",
        "Microsoft.CognitiveServices/accounts",
    ),
    (
        "deployerPrincipalId",
        "Azure Event Hubs Data Receiver",
        "Microsoft.EventHub/namespaces/eventhubs",
    ),
    # The usage landing function (docs/usage-analytics.md): reads the hub, sends through the DCR.
    (
        "functionPrincipalId",
        "Azure Event Hubs Data Receiver",
        "Microsoft.EventHub/namespaces/eventhubs",
    ),
    (
        "functionPrincipalId",
        "Monitoring Metrics Publisher",
        "Microsoft.Insights/dataCollectionRules",
    ),
    # The smoke test queries the workspace for its records.
    (
        "deployerPrincipalId",
        "Log Analytics Reader",
        "Microsoft.OperationalInsights/workspaces",
    ),
    # APIM's loggers (docs/apim.md): gateway events to the hub, telemetry to App Insights.
    ("apimPrincipalId", "Azure Event Hubs Data Sender", "Microsoft.EventHub/namespaces/eventhubs"),
    ("apimPrincipalId", "Monitoring Metrics Publisher", "Microsoft.Insights/components"),
]

_SECRET_VALUE = re.compile(
    r"listKeys|\blist[A-Z]\w*\(|getSecret|primaryKey|secondaryKey|primaryConnectionString"
    r"|secondaryConnectionString|SharedAccessKey|AccountKey|password|masterKey|\.keys\b",
    re.IGNORECASE,
)
_SECRET_WORDS = {"key", "keys", "secret", "secrets", "password", "pwd", "token", "sas"}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _names_a_secret(name: str) -> bool:
    """True when the last word of a snake_case or camelCase name is a secret's word (API_KEY,
    hostKey), not when it only mentions one (functionKeyNamedValueName is a name)."""
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)
    return bool(words) and words[-1].lower() in _SECRET_WORDS


def _norm(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


# ---------------------------------------------------------------- local auth


def local_auth_problems(files: Mapping[Path, str]) -> list[str]:
    """Every resource with a key-auth switch states it, turned off; sites turn off basic auth."""
    problems: list[str] = []
    for path, raw in files.items():
        text = bt.strip_comments(raw)
        found = bt.resources(text, path)
        for res in found:
            if res.existing or res.type not in LOCAL_AUTH_SWITCHES:
                continue
            key, wanted = LOCAL_AUTH_SWITCHES[res.type]
            value = bt.get_path(res.body, key)
            if value != wanted:
                problems.append(
                    f"{path.name}: {res.type} '{res.symbol}' must set {key}: {wanted} (found {value})"
                )
        # A switch anywhere (module param defaults, nested objects) must be in its safe position.
        for m in re.finditer(r"\b(disableLocalAuth)\s*:\s*(\S+)", text, re.IGNORECASE):
            if m.group(2) != "true":
                problems.append(f"{path.name}: {m.group(1)}: {m.group(2)} (must be true)")
        for m in re.finditer(r"\ballowSharedKeyAccess\s*:\s*(\S+)", text):
            if m.group(1) != "false":
                problems.append(f"{path.name}: allowSharedKeyAccess: {m.group(1)} (must be false)")
        # Web apps: FTP and SCM basic (publishing password) auth both explicitly off.
        for site in (r for r in found if r.type == "Microsoft.Web/sites" and not r.existing):
            names = {
                bt.unquote(r.properties.get("name"))
                for r in found
                if r.type == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
                and r.properties.get("parent") == site.symbol
            }
            for policy in ("ftp", "scm"):
                if policy not in names:
                    problems.append(
                        f"{path.name}: site '{site.symbol}' has no basicPublishingCredentialsPolicies "
                        f"'{policy}' with allow: false"
                    )
    return problems


# ---------------------------------------------------------------- app settings


def configuration_rows(doc: str) -> dict[str, dict[str, str]]:
    """Rows of the docs/configuration.md table: name -> {default, azure, read_by}."""
    rows: dict[str, dict[str, str]] = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"`[^`]+`", cells[0]):
            continue
        rows[cells[0].strip("`")] = {
            "default": cells[1],
            "azure": cells[2].lower(),
            "read_by": cells[3],
        }
    return rows


def app_settings(files: Mapping[Path, str]) -> dict[str, str]:
    """Literal app settings of every ``Microsoft.Web/sites/config`` 'appsettings' resource."""
    settings: dict[str, str] = {}
    for path, raw in files.items():
        for res in bt.resources(bt.strip_comments(raw), path):
            if res.type != "Microsoft.Web/sites/config" or res.existing:
                continue
            if bt.unquote(res.properties.get("name")) != "appsettings":
                continue
            body = bt.object_body(res.properties.get("properties", ""))
            if body is not None:
                settings.update(bt.top_level_entries(body))
    return settings


_FORBIDDEN_SETTINGS = {
    # Flex Consumption rejects these (functionAppConfig.runtime replaces them).
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    # A connection string (with an account key) instead of the identity-based settings.
    "AzureWebJobsStorage",
    "WEBSITE_RUN_FROM_PACKAGE",
}


def app_setting_problems(doc: str, files: Mapping[Path, str]) -> list[str]:
    rows = configuration_rows(doc)
    settings = app_settings(files)
    problems: list[str] = []
    if not rows:
        problems.append("docs/configuration.md: no table rows found")
    if not settings:
        problems.append("no Microsoft.Web/sites/config 'appsettings' resource found in infra/")
    for name, row in rows.items():
        if row["azure"] == "bicep" and name not in settings:
            problems.append(f"{name}: documented as set by Bicep but not an app setting")
    for name in settings:
        if name not in rows:
            problems.append(f"{name}: app setting not documented in docs/configuration.md")
        if name in _FORBIDDEN_SETTINGS:
            problems.append(f"{name}: must not be set (keys or not supported on Flex Consumption)")
        if _names_a_secret(name) or (
            "CONNECTION_STRING" in name and name != "APPLICATIONINSIGHTS_CONNECTION_STRING"
        ):
            problems.append(f"{name}: app setting name suggests a secret; use an identity")
    expected = {
        "AzureWebJobsStorage__credential": "'managedidentity'",
        "PYTHON_ENABLE_INIT_INDEXING": "'1'",
    }
    for name, value in expected.items():
        if name in settings and settings[name] != value:
            problems.append(f"{name}: is {settings[name]}, must be {value}")
    auth = settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
    if auth and not re.fullmatch(r"'ClientId=\$\{\w+\};Authorization=AAD'", auth):
        problems.append(
            f"APPLICATIONINSIGHTS_AUTHENTICATION_STRING: {auth} is not ClientId=...;AAD"
        )
    # One identity for everything: DefaultAzureCredential, host storage and telemetry.
    client = settings.get("AZURE_CLIENT_ID")
    if client is not None:
        if settings.get("AzureWebJobsStorage__clientId") != client:
            problems.append("AZURE_CLIENT_ID and AzureWebJobsStorage__clientId differ")
        if auth and f"ClientId=${{{client}}}" not in auth:
            problems.append("APPLICATIONINSIGHTS_AUTHENTICATION_STRING uses another identity")
    return problems


# ---------------------------------------------------------------- roles


def role_problems(rbac_raw: str) -> list[str]:
    text = bt.strip_comments(rbac_raw)
    found = bt.resources(text)
    by_symbol = {r.symbol: r for r in found}
    roles_var = {k: bt.unquote(v) for k, v in bt.var_object(text, "roles").items()}
    problems: list[str] = []

    # Each role GUID is named by a comment on its line or the line before.
    raw_lines = rbac_raw.splitlines()
    for index, line in enumerate(raw_lines):
        for guid in _GUID.findall(line):
            context = " ".join(raw_lines[max(0, index - 1) : index + 1])
            name = ROLE_NAMES.get(guid)
            if name is None:
                problems.append(f"role {guid}: not a role this template is known to need")
            elif name.lower() not in context.lower():
                problems.append(f"role {guid}: no comment naming it '{name}'")

    granted: set[tuple[str, str, str]] = set()
    for res in found:
        if res.type != "Microsoft.Authorization/roleAssignments":
            continue
        props = res.properties
        inner = bt.top_level_entries(bt.object_body(props.get("properties", "{}")) or "")
        role_expr = inner.get("roleDefinitionId", "")
        m = re.search(r"roles\.(\w+)", role_expr)
        guid = roles_var.get(m.group(1)) if m else None
        if guid is None:
            g = _GUID.search(role_expr)
            guid = g.group(0) if g else None
        principal = inner.get("principalId", "")
        scope = props.get("scope", "")
        if guid is None:
            problems.append(f"{res.symbol}: role definition not resolved from {role_expr!r}")
            continue
        if "principalType" not in inner:
            problems.append(f"{res.symbol}: principalType is not set")
        role_ref = m.group(0) if m else f"'{guid}'"
        expected_name = _norm(f"guid({scope}.id,{principal},{role_ref})")
        if _norm(props.get("name", "")) != expected_name:
            problems.append(
                f"{res.symbol}: name must be guid(scope, principal, role): {expected_name}"
            )
        target = by_symbol.get(scope)
        if target is None:
            problems.append(f"{res.symbol}: scope '{scope}' is not a resource of rbac.bicep")
            continue
        granted.add((principal, ROLE_NAMES.get(guid, guid), target.type))
        if (
            principal in ("functionPrincipalId", "apimPrincipalId")
            and inner.get("principalType") != "'ServicePrincipal'"
        ):
            problems.append(f"{res.symbol}: a managed identity's principalType is ServicePrincipal")
        if (
            principal == "deployerPrincipalId"
            and inner.get("principalType") != "deployerPrincipalType"
        ):
            problems.append(
                f"{res.symbol}: the deployer's principalType must come from the parameter"
            )

    for need in REQUIRED_ROLES:
        if need not in granted:
            principal, role, scope_type = need
            problems.append(f"missing role assignment: {principal} -> {role} on {scope_type}")
    return problems


def role_assignments_outside_rbac(files: Mapping[Path, str]) -> list[str]:
    return [
        f"{path.name}: role assignment '{r.symbol}' belongs in modules/rbac.bicep"
        for path, raw in files.items()
        if path.name != "rbac.bicep"
        for r in bt.resources(bt.strip_comments(raw), path)
        if r.type == "Microsoft.Authorization/roleAssignments"
    ]


# ---------------------------------------------------------------- outputs


def secret_output_problems(files: Mapping[Path, str]) -> list[str]:
    problems: list[str] = []
    for path, raw in files.items():
        text = bt.strip_comments(raw)
        secure_params = set(
            re.findall(r"@secure\(\)\s*(?:@.*\s*)*param\s+(\w+)", text, re.MULTILINE)
        )
        for out in bt.outputs(text, path):
            where = f"{path.name}: output {out.name}"
            if out.name == "AZURE_CLIENT_ID":
                problems.append(
                    f"{where}: that name belongs to the pipeline/DefaultAzureCredential"
                )
            if _names_a_secret(out.name):
                problems.append(f"{where}: name suggests a secret")
            if _SECRET_VALUE.search(out.value):
                problems.append(f"{where}: value reads a key or secret ({out.value})")
            for param in secure_params:
                if re.search(rf"\b{param}\b", out.value):
                    problems.append(f"{where}: exposes @secure() param {param}")
    return problems
