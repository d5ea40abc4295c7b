#!/bin/sh
# azd postdeploy hook (key mode): copies the Function App's default host key into APIM's secret named
# value `function-host-key`, which the APIM backend sends as x-functions-key, then records in the azd
# environment that Bicep may read the key itself from now on (APIM_FUNCTION_KEY_SYNC=read; see
# preprovision.sh). It fails loudly: a gateway without the key answers 401 to every consumer.
#
# The host key is read with ARM's listkeys (POST .../sites/{app}/host/default/listkeys,
# https://learn.microsoft.com/rest/api/appservice/web-apps/list-host-keys), which answers only once the
# host runs the new code, and written with a PUT of the named value
# (https://learn.microsoft.com/rest/api/apimanagement/named-value/create-or-update). Only
# functionKeys.default is kept from the answer, never the master key; it is never printed and never
# stored in the azd environment. Creating a dedicated key fails on Flex Consumption
# (azure-functions-host#11379), so the host's own `default` key is used.
# Reads AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_FUNCTION_NAME, APIM_NAME,
# APIM_FUNCTION_KEY_NAMED_VALUE (Bicep outputs) and APIM_FUNCTION_AUTH.
set -eu
HOOK_NAME=postdeploy
. "$(dirname "$0")/lib.sh"

mode=${APIM_FUNCTION_AUTH:-key}
if [ "$mode" = entra ]; then
  log "APIM_FUNCTION_AUTH=entra: APIM authenticates with its managed identity, no key to copy"
  exit 0
fi
[ "$mode" = key ] || die "APIM_FUNCTION_AUTH must be 'key' or 'entra'; got '$mode'"
require_env AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_NAME APIM_NAME APIM_FUNCTION_KEY_NAMED_VALUE

auth=$(token_header "$ARM_SCOPE") || exit 1
rg_url="$ARM_ENDPOINT/subscriptions/$AZURE_SUBSCRIPTION_ID/resourceGroups/$AZURE_RESOURCE_GROUP/providers"
keys_url="$rg_url/Microsoft.Web/sites/$AZURE_FUNCTION_NAME/host/default/listkeys?api-version=2024-11-01"
named_value_url="$rg_url/Microsoft.ApiManagement/service/$APIM_NAME/namedValues/$APIM_FUNCTION_KEY_NAMED_VALUE?api-version=2024-05-01"

# functionKeys.default out of {"masterKey": ..., "functionKeys": {"default": ...}, "systemKeys": {...}}.
default_function_key() {
  tr -d '\r\n' <"$HOOK_TMP/response.json" | grep -o '"functionKeys"[[:space:]]*:[[:space:]]*{[^}]*}' |
    grep -o '"default"[[:space:]]*:[[:space:]]*"[^"]*"' | sed 's/^.*:[[:space:]]*"\(.*\)"$/\1/'
}

# The host may still be starting the new code, or answer listkeys without a default key for a moment.
# (key_waited is this loop's own count: call_with_retry keeps its own in `waited`.)
key_waited=0
while :; do
  call_with_retry "$auth" POST "$keys_url" "" 200 ||
    die "could not read the host keys of $AZURE_FUNCTION_NAME: $(error_summary). APIM still sends the old key; re-run 'azd hooks run postdeploy'"
  key=$(default_function_key)
  rm -f "$HOOK_TMP/response.json" # it also held the master key
  [ -z "$key" ] || break
  [ "$key_waited" -lt "$RETRY_SECONDS" ] || die "$AZURE_FUNCTION_NAME has no default host key after ${key_waited}s"
  log "no default host key yet, retrying in 15s"
  sleep 15
  key_waited=$((key_waited + 15))
done
# Host keys are base64 text: nothing in them needs JSON escaping; anything else is not a key.
case "$key" in *[!A-Za-z0-9+/=_-]*) die "the default host key of $AZURE_FUNCTION_NAME has unexpected characters" ;; esac

body="$HOOK_TMP/named-value.json"
printf '{"properties":{"displayName":"%s","secret":true,"value":"%s","tags":["function-app"]}}' \
  "$APIM_FUNCTION_KEY_NAMED_VALUE" "$key" >"$body"
key=""
call_with_retry "$auth" PUT "$named_value_url" "$body" "200 201 202" ||
  die "could not write named value $APIM_FUNCTION_KEY_NAMED_VALUE of $APIM_NAME: $(error_summary)"
rm -f "$body"
if [ "$status" = 202 ]; then
  # Long-running PUT: poll until the named value reports its final state.
  # https://learn.microsoft.com/azure/azure-resource-manager/management/async-operations
  call_with_retry "$auth" GET "$named_value_url" "" 200 ||
    die "named value $APIM_FUNCTION_KEY_NAMED_VALUE did not appear: $(error_summary)"
fi
azd_env_set APIM_FUNCTION_KEY_SYNC read
log "APIM named value '$APIM_FUNCTION_KEY_NAMED_VALUE' holds the default host key of $AZURE_FUNCTION_NAME"
