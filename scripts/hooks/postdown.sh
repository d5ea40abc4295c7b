#!/bin/sh
# azd postdown hook. `azd down` deletes the resource group; Microsoft Entra objects live outside it.
# Entra mode (APIM_FUNCTION_AUTH=entra): deletes the API's app registration (its service principal goes
# with it) and purges it from the directory's deleted items, with a Microsoft Graph token from azd:
#   DELETE /applications/{id}                 https://learn.microsoft.com/graph/api/application-delete
#   DELETE /directory/deletedItems/{id}       https://learn.microsoft.com/graph/api/directory-deleteditems-delete
# Then it draws a new ENTRA_APP_UNIQUE_SUFFIX, so a re-created environment never meets the old uniqueName.
# Key mode: nothing lives outside the resource group; the next provision starts from
# APIM_FUNCTION_KEY_SYNC=create (a new APIM has no named value).
# Reads APIM_FUNCTION_AUTH, ENTRA_APP_OBJECT_ID (a Bicep output).
set -eu
HOOK_NAME=postdown
. "$(dirname "$0")/lib.sh"

mode=${APIM_FUNCTION_AUTH:-key}
azd_env_set APIM_FUNCTION_KEY_SYNC create
[ "$mode" = entra ] || exit 0

object_id=${ENTRA_APP_OBJECT_ID:-}
if [ -z "$object_id" ]; then
  log "ENTRA_APP_OBJECT_ID is not set: no app registration was provisioned by this environment"
  exit 0
fi
auth=$(token_header "$GRAPH_SCOPE") || exit 1
call_with_retry "$auth" DELETE "$GRAPH_ENDPOINT/v1.0/applications/$object_id" "" "204 404" ||
  die "could not delete app registration $object_id: $(error_summary). Delete it in the Entra admin center (App registrations), then purge it from Deleted applications"
# Deleted applications stay restorable (and keep their uniqueName) for 30 days unless purged.
call_with_retry "$auth" DELETE "$GRAPH_ENDPOINT/v1.0/directory/deletedItems/$object_id" "" "204 404" ||
  die "deleted app registration $object_id but could not purge it: $(error_summary). Purge it under Deleted applications in the Entra admin center"
azd_env_set ENTRA_APP_UNIQUE_SUFFIX "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
log "app registration $object_id deleted and purged; ENTRA_APP_UNIQUE_SUFFIX renewed"
