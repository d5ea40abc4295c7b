# Shared by the pwsh azd hooks in this folder (dot-sourced). The same steps as lib.sh, which explains
# them: a token from `azd auth token -o json --no-prompt --scope ...`, then ARM / Microsoft Graph REST
# with Invoke-WebRequest; no Azure CLI. Secrets (token, host key) are never written to the console.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ArmScope = 'https://management.azure.com/.default'
$GraphScope = 'https://graph.microsoft.com/.default'
$ArmEndpoint = if ($env:AZD_HOOKS_ARM_ENDPOINT) { $env:AZD_HOOKS_ARM_ENDPOINT } else { 'https://management.azure.com' }
$GraphEndpoint = if ($env:AZD_HOOKS_GRAPH_ENDPOINT) { $env:AZD_HOOKS_GRAPH_ENDPOINT } else { 'https://graph.microsoft.com' }
$RetrySeconds = if ($env:AZD_HOOKS_RETRY_SECONDS) { [int]$env:AZD_HOOKS_RETRY_SECONDS } else { 600 }

function Write-Log([string]$Message) { [Console]::Error.WriteLine("${HookName}: $Message") }
function Stop-Hook([string]$Message) { Write-Log $Message; exit 1 }

foreach ($endpoint in $ArmEndpoint, $GraphEndpoint) {
    if (-not ($endpoint.StartsWith('https://') -or $endpoint.StartsWith('http://127.0.0.1:'))) {
        Stop-Hook "refusing to send a bearer token to $endpoint (https only)"
    }
}
if (-not (Get-Command azd -ErrorAction SilentlyContinue)) { Stop-Hook 'azd is not on PATH' }

function Assert-Env([string[]]$Names) {
    foreach ($name in $Names) {
        if (-not [Environment]::GetEnvironmentVariable($name)) {
            Stop-Hook "$name is not set (run this through azd: azd hooks run $HookName)"
        }
    }
}

function Get-AuthHeader([string]$Scope) {
    $out = azd auth token -o json --no-prompt --scope $Scope 2>&1
    if ($LASTEXITCODE -ne 0) {
        Write-Log "azd auth token failed for ${Scope}: $out"
        Stop-Hook "sign in with 'azd auth login' (a pipeline: azd auth login --federated-credential-provider ...)"
    }
    $token = ($out | Out-String | ConvertFrom-Json).token
    if (-not $token) { Stop-Hook "azd auth token returned no token for $Scope" }
    @{ Authorization = "Bearer $token" }
}

# One call; returns @{ Status; Body } (Status 0 when no HTTP answer). Never throws on an HTTP status.
function Invoke-Azure($Headers, [string]$Method, [string]$Uri, [string]$Body) {
    $params = @{ Method = $Method; Uri = $Uri; Headers = $Headers; ContentType = 'application/json'
        TimeoutSec = 60; SkipHttpErrorCheck = $true; UseBasicParsing = $true }
    if ($Body) { $params.Body = $Body }
    try {
        $r = Invoke-WebRequest @params
        @{ Status = [int]$r.StatusCode; Body = [string]$r.Content }
    } catch {
        @{ Status = 0; Body = $_.Exception.Message }
    }
}

# Retries what time can fix (no answer, 401/403 while roles propagate, 404, 408, 409, 429, 5xx) with
# backoff for up to $RetrySeconds; returns the last answer (check .Status against $Ok).
function Invoke-WithRetry($Headers, [string]$Method, [string]$Uri, [string]$Body, [int[]]$Ok) {
    $waited = 0; $delay = 5
    while ($true) {
        $r = Invoke-Azure $Headers $Method $Uri $Body
        if ($Ok -contains $r.Status) { return $r }
        $retryable = (0, 401, 403, 404, 408, 409, 429) -contains $r.Status -or $r.Status -ge 500
        if (-not $retryable -or $waited -ge $RetrySeconds) { return $r }
        Write-Log "$Method $($Uri.Split('?')[0]): HTTP $($r.Status), retrying in ${delay}s (${waited}s of ${RetrySeconds}s spent)"
        Start-Sleep -Seconds $delay
        $waited += $delay
        $delay = [Math]::Min($delay * 2, 60)
    }
}

# The code and message of an error answer, never the body of a success.
function Get-ErrorSummary($r) {
    try {
        $e = ($r.Body | ConvertFrom-Json).error
        "HTTP $($r.Status) $($e.code) $($e.message)"
    } catch {
        "HTTP $($r.Status) $($r.Body)"
    }
}

function Set-AzdEnv([string]$Name, [string]$Value) {
    azd env set $Name $Value | Out-Null
    if ($LASTEXITCODE -ne 0) { Stop-Hook "azd env set $Name failed" }
}

function New-Suffix { [guid]::NewGuid().ToString('N').Substring(0, 8) }
