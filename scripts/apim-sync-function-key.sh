#!/bin/sh
# azd hook (postprovision with --best-effort, postdeploy strict): make sure the Function App has a
# dedicated host key named `apim` and write it into APIM's secret named value, which the APIM backend
# sends as x-functions-key (infra/modules/apim-api.bicep, docs/apim.md).
#
# Why a hook and not Bicep: listKeys on a Flex Consumption app that has no code yet fails intermittently
# (bicep-types-az#1356, azure-functions-host#11379), and azd provisions before it deploys. Bicep therefore
# creates the named value with a placeholder, and this hook replaces it. It is idempotent: it reuses the
# existing `apim` key (creating it only once) and rewrites the named value on every run, so a re-provision
# that reset the placeholder is repaired right after provisioning.
#
# Never the master key. The key is never printed, never passed on a command line (it goes to az through a
# mode-600 temp file) and never stored in the azd environment.
#
# Reads (azd exports the environment to hooks): AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP,
# AZURE_FUNCTION_NAME, APIM_NAME, APIM_FUNCTION_KEY_NAMED_VALUE. Needs the Azure CLI, signed in.
# az functionapp keys: https://learn.microsoft.com/cli/azure/functionapp/keys
# Named value REST (PUT, 2024-05-01): https://learn.microsoft.com/rest/api/apimanagement/current-ga/named-value/create-or-update
set -eu

KEY_NAME=apim
API_VERSION=2024-05-01
best_effort=0
if [ "${1:-}" = "--best-effort" ]; then best_effort=1; fi

log() { printf 'apim-sync-function-key: %s\n' "$*" >&2; }
fail() {
  log "$*"
  if [ "$best_effort" = 1 ]; then
    log "best effort (postprovision): not fatal, the postdeploy hook sets the key after the code is deployed"
    exit 0
  fi
  exit 1
}

for var in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_NAME APIM_NAME APIM_FUNCTION_KEY_NAMED_VALUE; do
  eval "value=\${$var:-}"
  if [ -z "$value" ]; then fail "$var is not set (run through azd, or export it)"; fi
done
command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is required: https://learn.microsoft.com/cli/azure/install-azure-cli"
# azd's own login does not sign in the Azure CLI: say so at once instead of retrying for minutes.
az account show --subscription "$AZURE_SUBSCRIPTION_ID" --output none 2>/dev/null ||
  fail "the Azure CLI is not signed in to subscription $AZURE_SUBSCRIPTION_ID: run 'az login', then 'azd hooks run postdeploy'"

read_key() {
  az functionapp keys list --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" \
    -n "$AZURE_FUNCTION_NAME" --query "functionKeys.\"$KEY_NAME\"" -o tsv 2>/dev/null
}

# The host may still be starting after a deployment: retry with backoff (about 4 minutes in all).
# Best effort (postprovision) tries twice: on a first provision there is no code yet, and postdeploy
# follows within minutes anyway.
max_attempts=8
if [ "$best_effort" = 1 ]; then max_attempts=2; fi
attempt=1
delay=5
key=""
while :; do
  key=$(read_key || true)
  if [ -n "$key" ]; then break; fi
  # No --key-value: the Functions host generates the key. `keys set` redacts it in its output.
  az functionapp keys set --subscription "$AZURE_SUBSCRIPTION_ID" -g "$AZURE_RESOURCE_GROUP" \
    -n "$AZURE_FUNCTION_NAME" --key-type functionKeys --key-name "$KEY_NAME" --output none 2>/dev/null || true
  key=$(read_key || true)
  if [ -n "$key" ]; then break; fi
  if [ "$attempt" -ge "$max_attempts" ]; then fail "could not read or create host key '$KEY_NAME' on $AZURE_FUNCTION_NAME"; fi
  log "host key not available yet (attempt $attempt), retrying in ${delay}s"
  sleep "$delay"
  attempt=$((attempt + 1))
  delay=$((delay * 2))
  if [ "$delay" -gt 60 ]; then delay=60; fi
done

umask 077
body=$(mktemp)
trap 'rm -f "$body"' EXIT INT TERM
# Function keys are base64url-style strings: nothing in them needs JSON escaping.
printf '{"properties":{"displayName":"%s","secret":true,"value":"%s","tags":["function-app","set-by-hook"]}}' \
  "$APIM_FUNCTION_KEY_NAMED_VALUE" "$key" >"$body"

url="/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.ApiManagement/service/$APIM_NAME/namedValues/$APIM_FUNCTION_KEY_NAMED_VALUE?api-version=$API_VERSION"
if ! az rest --method put --url "$url" --body "@$body" --headers "Content-Type=application/json" --output none; then
  fail "could not write named value '$APIM_FUNCTION_KEY_NAMED_VALUE' on APIM $APIM_NAME"
fi
log "APIM named value '$APIM_FUNCTION_KEY_NAMED_VALUE' now holds host key '$KEY_NAME' of $AZURE_FUNCTION_NAME"
