# azd postdeploy hook (pwsh): the same steps as postdeploy.sh, which explains them. Only
# functionKeys.default is kept from the listkeys answer; the key is never printed.
$HookName = 'postdeploy'
. "$PSScriptRoot/lib.ps1"

$mode = if ($env:APIM_FUNCTION_AUTH) { $env:APIM_FUNCTION_AUTH } else { 'key' }
if ($mode -ceq 'entra') {
    Write-Log 'APIM_FUNCTION_AUTH=entra: APIM authenticates with its managed identity, no key to copy'
    exit 0
}
if ($mode -cne 'key') { Stop-Hook "APIM_FUNCTION_AUTH must be 'key' or 'entra'; got '$mode'" }
Assert-Env 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_NAME', 'APIM_NAME', 'APIM_FUNCTION_KEY_NAMED_VALUE'

$auth = Get-AuthHeader $ArmScope
$app = $env:AZURE_FUNCTION_NAME
$namedValue = $env:APIM_FUNCTION_KEY_NAMED_VALUE
$providers = "$ArmEndpoint/subscriptions/$($env:AZURE_SUBSCRIPTION_ID)/resourceGroups/$($env:AZURE_RESOURCE_GROUP)/providers"
$keysUrl = "$providers/Microsoft.Web/sites/$app/host/default/listkeys?api-version=2024-11-01"
$namedValueUrl = "$providers/Microsoft.ApiManagement/service/$($env:APIM_NAME)/namedValues/${namedValue}?api-version=2024-05-01"

$waited = 0
while ($true) {
    $r = Invoke-WithRetry $auth POST $keysUrl $null @(200)
    if ($r.Status -ne 200) {
        Stop-Hook "could not read the host keys of ${app}: $(Get-ErrorSummary $r). APIM still sends the old key; re-run 'azd hooks run postdeploy'"
    }
    $keys = $r.Body | ConvertFrom-Json
    $r = $null
    $key = if ($keys.PSObject.Properties['functionKeys'] -and $keys.functionKeys.PSObject.Properties['default']) { [string]$keys.functionKeys.default } else { '' }
    $keys = $null
    if ($key) { break }
    if ($waited -ge $RetrySeconds) { Stop-Hook "$app has no default host key after ${waited}s" }
    Write-Log 'no default host key yet, retrying in 15s'
    Start-Sleep -Seconds 15
    $waited += 15
}
if ($key -notmatch '^[A-Za-z0-9+/=_-]+$') { Stop-Hook "the default host key of $app has unexpected characters" }

$body = @{ properties = @{ displayName = $namedValue; secret = $true; value = $key; tags = @('function-app') } } | ConvertTo-Json -Compress -Depth 4
$key = $null
$r = Invoke-WithRetry $auth PUT $namedValueUrl $body @(200, 201, 202)
$body = $null
if ((200, 201, 202) -notcontains $r.Status) { Stop-Hook "could not write named value $namedValue of $($env:APIM_NAME): $(Get-ErrorSummary $r)" }
if ($r.Status -eq 202) {
    $r = Invoke-WithRetry $auth GET $namedValueUrl $null @(200)
    if ($r.Status -ne 200) { Stop-Hook "named value $namedValue did not appear: $(Get-ErrorSummary $r)" }
}
Set-AzdEnv 'APIM_FUNCTION_KEY_SYNC' 'read'
Write-Log "APIM named value '$namedValue' holds the default host key of $app"
