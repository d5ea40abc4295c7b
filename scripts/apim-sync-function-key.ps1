# azd hook for Windows (pwsh): the same steps as apim-sync-function-key.sh, which explains why they exist.
# Ensures the Function App's dedicated host key `apim` exists and writes it into APIM's secret named value
# (sent by the APIM backend as x-functions-key). Postprovision runs it with -BestEffort, postdeploy strictly.
# The key is never printed, never on a command line (a temp file readable by the user only) and never
# stored in the azd environment. Never the master key.
# az functionapp keys: https://learn.microsoft.com/cli/azure/functionapp/keys
# Named value REST (PUT, 2024-05-01): https://learn.microsoft.com/rest/api/apimanagement/current-ga/named-value/create-or-update
param(
    [switch]$BestEffort
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$KeyName = 'apim'
$ApiVersion = '2024-05-01'

function Write-Log([string]$Message) {
    [Console]::Error.WriteLine("apim-sync-function-key: $Message")
}

function Stop-Hook([string]$Message) {
    Write-Log $Message
    if ($BestEffort) {
        Write-Log 'best effort (postprovision): not fatal, the postdeploy hook sets the key after the code is deployed'
        exit 0
    }
    exit 1
}

foreach ($name in 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_NAME', 'APIM_NAME', 'APIM_FUNCTION_KEY_NAMED_VALUE') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Stop-Hook "$name is not set (run through azd, or set it)"
    }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Stop-Hook 'the Azure CLI (az) is required: https://learn.microsoft.com/cli/azure/install-azure-cli'
}
# azd's own login does not sign in the Azure CLI: say so at once instead of retrying for minutes.
az account show --subscription $env:AZURE_SUBSCRIPTION_ID --output none 2>$null
if ($LASTEXITCODE -ne 0) {
    Stop-Hook "the Azure CLI is not signed in to subscription $($env:AZURE_SUBSCRIPTION_ID): run 'az login', then 'azd hooks run postdeploy'"
}

$sub = $env:AZURE_SUBSCRIPTION_ID
$rg = $env:AZURE_RESOURCE_GROUP
$app = $env:AZURE_FUNCTION_NAME
$apim = $env:APIM_NAME
$namedValue = $env:APIM_FUNCTION_KEY_NAMED_VALUE

function Read-HostKey {
    $value = az functionapp keys list --subscription $sub -g $rg -n $app --query "functionKeys.`"$KeyName`"" -o tsv 2>$null
    if ($LASTEXITCODE -ne 0) { return '' }
    return "$value".Trim()
}

# The host may still be starting after a deployment: retry with backoff (about 4 minutes in all).
# Best effort (postprovision) tries twice: on a first provision there is no code yet, and postdeploy
# follows within minutes anyway.
$maxAttempts = if ($BestEffort) { 2 } else { 8 }
$attempt = 1
$delay = 5
$key = ''
while ($true) {
    $key = Read-HostKey
    if ($key) { break }
    # No --key-value: the Functions host generates the key. `keys set` redacts it in its output.
    az functionapp keys set --subscription $sub -g $rg -n $app --key-type functionKeys --key-name $KeyName --output none 2>$null | Out-Null
    $key = Read-HostKey
    if ($key) { break }
    if ($attempt -ge $maxAttempts) { Stop-Hook "could not read or create host key '$KeyName' on $app" }
    Write-Log "host key not available yet (attempt $attempt), retrying in ${delay}s"
    Start-Sleep -Seconds $delay
    $attempt++
    $delay = [Math]::Min($delay * 2, 60)
}

$body = [System.IO.Path]::GetTempFileName()
try {
    if (-not $IsWindows) {
        # GetTempFileName creates the file with the umask's mode: make it readable by the user only.
        chmod 600 $body
    }
    $payload = @{
        properties = @{
            displayName = $namedValue
            secret      = $true
            value       = $key
            tags        = @('function-app', 'set-by-hook')
        }
    } | ConvertTo-Json -Depth 4 -Compress
    Set-Content -Path $body -Value $payload -NoNewline -Encoding utf8NoBOM

    $url = "/subscriptions/$sub/resourceGroups/$rg/providers/Microsoft.ApiManagement/service/$apim/namedValues/${namedValue}?api-version=$ApiVersion"
    az rest --method put --url $url --body "@$body" --headers 'Content-Type=application/json' --output none
    if ($LASTEXITCODE -ne 0) { Stop-Hook "could not write named value '$namedValue' on APIM $apim" }
}
finally {
    Remove-Item -Path $body -Force -ErrorAction SilentlyContinue
}
Write-Log "APIM named value '$namedValue' now holds host key '$KeyName' of $app"
