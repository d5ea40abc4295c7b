# azd postdown hook (pwsh): the same steps as postdown.sh, which explains them.
$HookName = 'postdown'
. "$PSScriptRoot/lib.ps1"

$mode = if ($env:APIM_FUNCTION_AUTH) { $env:APIM_FUNCTION_AUTH } else { 'key' }
Set-AzdEnv 'APIM_FUNCTION_KEY_SYNC' 'create'
if ($mode -cne 'entra') { exit 0 }

$objectId = $env:ENTRA_APP_OBJECT_ID
if (-not $objectId) {
    Write-Log 'ENTRA_APP_OBJECT_ID is not set: no app registration was provisioned by this environment'
    exit 0
}
$auth = Get-AuthHeader $GraphScope
$r = Invoke-WithRetry $auth DELETE "$GraphEndpoint/v1.0/applications/$objectId" $null @(204, 404)
if ((204, 404) -notcontains $r.Status) {
    Stop-Hook "could not delete app registration ${objectId}: $(Get-ErrorSummary $r). Delete it in the Entra admin center (App registrations), then purge it from Deleted applications"
}
$r = Invoke-WithRetry $auth DELETE "$GraphEndpoint/v1.0/directory/deletedItems/$objectId" $null @(204, 404)
if ((204, 404) -notcontains $r.Status) {
    Stop-Hook "deleted app registration $objectId but could not purge it: $(Get-ErrorSummary $r). Purge it under Deleted applications in the Entra admin center"
}
Set-AzdEnv 'ENTRA_APP_UNIQUE_SUFFIX' (New-Suffix)
Write-Log "app registration $objectId deleted and purged; ENTRA_APP_UNIQUE_SUFFIX renewed"
