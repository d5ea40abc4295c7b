#!/bin/sh
# azd preprovision hook: tells Bicep, through the azd environment, what it may do with APIM's
# `function-host-key` named value, so no `azd provision` ever resets a working key (docs/deploy.md#function-key).
#
#   APIM_FUNCTION_KEY_SYNC=read    the Function App has code: Bicep reads its default host key with
#                                  listKeys (reliable only once code is deployed: bicep-types-az#1356,
#                                  azure-functions-host#11379) and writes it into the named value
#   APIM_FUNCTION_KEY_SYNC=create  APIM has no such named value yet: Bicep creates it with a placeholder,
#                                  which the postdeploy hook replaces right after the first deployment
#   APIM_FUNCTION_KEY_SYNC=keep    (also Bicep's default) the named value exists and the app has no code:
#                                  Bicep leaves the named value alone
#
# The state is read from Azure every time, not remembered, so a fresh pipeline runner (whose azd
# environment has no outputs yet) decides the same as a laptop. A probe that fails stops the provision:
# guessing could overwrite a live key. If an azd version did not pick up a value a hook sets before it
# loads the parameters (fixed in Azure/azure-dev#1714, reload made explicit in #6063/#6064), Bicep
# sees its default, `keep`: nothing is overwritten, the worst case is no update of the named value. In Entra mode (APIM_FUNCTION_AUTH=entra) it only makes sure the
# app registration's per-environment suffix exists.
# Reads AZURE_SUBSCRIPTION_ID and AZURE_ENV_NAME (azd sets both), optional AZURE_RESOURCE_GROUP,
# APIM_FUNCTION_AUTH, ENTRA_APP_UNIQUE_SUFFIX.
set -eu
HOOK_NAME=preprovision
. "$(dirname "$0")/lib.sh"

require_env AZURE_SUBSCRIPTION_ID AZURE_ENV_NAME
mode=${APIM_FUNCTION_AUTH:-key}

if [ "$mode" = entra ]; then
  if [ -z "${ENTRA_APP_UNIQUE_SUFFIX:-}" ]; then
    # A fresh suffix on every pipeline run would register a new app each time: CI must carry it.
    if [ "${GITHUB_ACTIONS:-}" = true ] || [ -n "${TF_BUILD:-}" ]; then
      die "ENTRA_APP_UNIQUE_SUFFIX is empty: set it once (azd env set ENTRA_APP_UNIQUE_SUFFIX <8 hex>) and re-run 'azd pipeline config' so the pipeline carries it"
    fi
    # uniqueName must not collide with a soft-deleted app of an earlier environment of the same name.
    suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    azd_env_set ENTRA_APP_UNIQUE_SUFFIX "$suffix"
    log "ENTRA_APP_UNIQUE_SUFFIX set to $suffix (kept in the azd environment)"
  fi
  exit 0
fi
[ "$mode" = key ] || die "APIM_FUNCTION_AUTH must be 'key' or 'entra'; got '$mode'"

sub=$AZURE_SUBSCRIPTION_ID
rg=${AZURE_RESOURCE_GROUP:-rg-$AZURE_ENV_NAME} # infra/main.bicep names it rg-<environment>
auth=$(token_header "$ARM_SCOPE") || exit 1
rg_url="$ARM_ENDPOINT/subscriptions/$sub/resourceGroups/$rg"

# first_resource_name FILTER: the name of the first resource of the group matching an OData $filter
# (https://learn.microsoft.com/rest/api/resources/resources/list-by-resource-group); empty if none.
first_resource_name() {
  call_with_retry "$auth" GET "$rg_url/resources?api-version=2021-04-01&%24filter=$1" "" "200 404" ||
    die "could not list the resources of $rg: $(error_summary)"
  if [ "$status" = 404 ]; then return 0; fi
  json_string "$HOOK_TMP/response.json" name
}

decide() {
  app=$(first_resource_name "tagName%20eq%20%27azd-service-name%27%20and%20tagValue%20eq%20%27api%27") || exit 1
  if [ -n "$app" ]; then
    # The functions the host indexed: empty until code is deployed.
    # https://learn.microsoft.com/rest/api/appservice/web-apps/list-functions
    call_with_retry "$auth" GET "$rg_url/providers/Microsoft.Web/sites/$app/functions?api-version=2024-11-01" "" 200 ||
      die "could not list the functions of $app: $(error_summary)"
    if tr -d '\r\n ' <"$HOOK_TMP/response.json" | grep -q '"type":"Microsoft.Web/sites/functions"'; then
      echo read
      return
    fi
  fi
  apim=$(first_resource_name "resourceType%20eq%20%27Microsoft.ApiManagement%2Fservice%27") || exit 1
  [ -n "$apim" ] || {
    echo create
    return
  }
  named_value=${APIM_FUNCTION_KEY_NAMED_VALUE:-function-host-key}
  # https://learn.microsoft.com/rest/api/apimanagement/named-value/get (metadata only; never listValue)
  call_with_retry "$auth" GET "$rg_url/providers/Microsoft.ApiManagement/service/$apim/namedValues/$named_value?api-version=2024-05-01" "" "200 404" ||
    die "could not read named value $named_value of $apim: $(error_summary)"
  if [ "$status" = 404 ]; then echo create; else echo keep; fi
}

sync=$(decide) || exit 1
azd_env_set APIM_FUNCTION_KEY_SYNC "$sync"
log "APIM_FUNCTION_KEY_SYNC=$sync"
