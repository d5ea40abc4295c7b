# azd preprovision hook (pwsh): the same decision as preprovision.sh, which explains it.
$HookName = 'preprovision'
. "$PSScriptRoot/lib.ps1"

Assert-Env 'AZURE_SUBSCRIPTION_ID', 'AZURE_ENV_NAME'
$mode = if ($env:APIM_FUNCTION_AUTH) { $env:APIM_FUNCTION_AUTH } else { 'key' }

if ($mode -ceq 'entra') {
    if (-not $env:ENTRA_APP_UNIQUE_SUFFIX) {
        if ($env:GITHUB_ACTIONS -eq 'true' -or $env:TF_BUILD) {
            Stop-Hook "ENTRA_APP_UNIQUE_SUFFIX is empty: set it once (azd env set ENTRA_APP_UNIQUE_SUFFIX <8 hex>) and re-run 'azd pipeline config' so the pipeline carries it"
        }
        $suffix = New-Suffix
        Set-AzdEnv 'ENTRA_APP_UNIQUE_SUFFIX' $suffix
        Write-Log "ENTRA_APP_UNIQUE_SUFFIX set to $suffix (kept in the azd environment)"
    }
    exit 0
}
if ($mode -cne 'key') { Stop-Hook "APIM_FUNCTION_AUTH must be 'key' or 'entra'; got '$mode'" }

$rg = if ($env:AZURE_RESOURCE_GROUP) { $env:AZURE_RESOURCE_GROUP } else { "rg-$($env:AZURE_ENV_NAME)" }
$auth = Get-AuthHeader $ArmScope
$rgUrl = "$ArmEndpoint/subscriptions/$($env:AZURE_SUBSCRIPTION_ID)/resourceGroups/$rg"

function Get-FirstResourceName([string]$Filter) {
    $r = Invoke-WithRetry $auth GET "$rgUrl/resources?api-version=2021-04-01&%24filter=$Filter" $null @(200, 404)
    if ($r.Status -eq 404) { return '' }
    if ($r.Status -ne 200) { Stop-Hook "could not list the resources of ${rg}: $(Get-ErrorSummary $r)" }
    $first = @(($r.Body | ConvertFrom-Json).value) | Select-Object -First 1
    if ($first) { $first.name } else { '' }
}

function Get-Decision {
    $app = Get-FirstResourceName 'tagName%20eq%20%27azd-service-name%27%20and%20tagValue%20eq%20%27api%27'
    if ($app) {
        $r = Invoke-WithRetry $auth GET "$rgUrl/providers/Microsoft.Web/sites/$app/functions?api-version=2024-11-01" $null @(200)
        if ($r.Status -ne 200) { Stop-Hook "could not list the functions of ${app}: $(Get-ErrorSummary $r)" }
        if (@(($r.Body | ConvertFrom-Json).value).Count -gt 0) { return 'read' }
    }
    $apim = Get-FirstResourceName 'resourceType%20eq%20%27Microsoft.ApiManagement%2Fservice%27'
    if (-not $apim) { return 'create' }
    $namedValue = if ($env:APIM_FUNCTION_KEY_NAMED_VALUE) { $env:APIM_FUNCTION_KEY_NAMED_VALUE } else { 'function-host-key' }
    $r = Invoke-WithRetry $auth GET "$rgUrl/providers/Microsoft.ApiManagement/service/$apim/namedValues/${namedValue}?api-version=2024-05-01" $null @(200, 404)
    if ($r.Status -eq 404) { return 'create' }
    if ($r.Status -ne 200) { Stop-Hook "could not read named value $namedValue of ${apim}: $(Get-ErrorSummary $r)" }
    'keep'
}

$sync = Get-Decision
Set-AzdEnv 'APIM_FUNCTION_KEY_SYNC' $sync
Write-Log "APIM_FUNCTION_KEY_SYNC=$sync"
